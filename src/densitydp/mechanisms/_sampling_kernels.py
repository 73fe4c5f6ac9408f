"""numba kernels of the sampling mechanisms over output sets (CusText, SanText+).

Arrays in, arrays out; no validation, no Python objects. Randomness arrives as arrays of uniforms
drawn by the wrappers with numpy Generators, so every kernel is a deterministic function of its
inputs and results do not depend on the number of threads. Pure-numpy twins live in
``tests/reference/sampling.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import jit, parallel_jit
from ._kernels import sorted_row_weights, uniform_rejection_draw


@jit
def _insert(best_squared, best_ids, count, k, squared, candidate):
    """Insert ``(squared, candidate)`` into the first ``count`` entries of the increasing
    ``(best_squared, best_ids)`` (ties: the earlier entry stays first); keep at most ``k``.
    Return the new count."""
    if count == k:
        if squared >= best_squared[k - 1]:
            return count
        position = k - 1
    else:
        position = count
        count += 1
    while position > 0 and best_squared[position - 1] > squared:
        best_squared[position] = best_squared[position - 1]
        best_ids[position] = best_ids[position - 1]
        position -= 1
    best_squared[position] = squared
    best_ids[position] = candidate
    return count


@jit
def conservative_groups(vectors, k, group_of, members, sizes):
    """CusText's conservative mapping: shared output sets of ``k`` words.

    Words are taken in id order (the space's row order). The first word not yet in a group
    leads a new group: the ``k`` words nearest to it (exact Euclidean distance, summed in
    float64 coordinate by coordinate; ties broken by the smaller id) among the words not yet in
    a group, itself included (distance 0). When fewer than ``k`` words are left they form the
    last group. Writes ``group_of[word]`` (group index), ``members[g, :sizes[g]]`` (the group's
    words by increasing distance to its leader, the leader first) and ``sizes[g]``; returns the
    number of groups.

    Cost: one pass over the remaining words per group, ``n^2 dim / (2 k)`` multiply-adds in all
    (less: a candidate's sum stops as soon as it exceeds the current ``k``-th best).
    """
    n_words = vectors.shape[0]
    dim = vectors.shape[1]
    remaining = np.arange(n_words)  # the ungrouped words, in increasing id order
    n_remaining = n_words
    best_squared = np.empty(k)
    best_ids = np.empty(k, np.int64)
    query = np.empty(dim)
    n_groups = 0
    for leader in range(n_words):
        if group_of[leader] >= 0:
            continue
        for j in range(dim):
            query[j] = vectors[leader, j]
        count = 0
        for r in range(n_remaining):
            candidate = remaining[r]
            limit = best_squared[k - 1] if count == k else np.inf
            partial = 0.0
            for j in range(dim):
                diff = query[j] - np.float64(vectors[candidate, j])
                partial += diff * diff
                if partial > limit:
                    break
            if partial < limit:
                count = _insert(best_squared, best_ids, count, k, partial, candidate)
        # the leader is at distance 0 and has the smallest id of the remaining words, so it is
        # first unless another word has the very same vector (then the leader is still first:
        # ties keep the smaller id)
        for c in range(count):
            members[n_groups, c] = best_ids[c]
            group_of[best_ids[c]] = n_groups
        sizes[n_groups] = count
        n_groups += 1
        # compact the remaining words (order kept)
        kept = 0
        for r in range(n_remaining):
            if group_of[remaining[r]] < 0:
                remaining[kept] = remaining[r]
                kept += 1
        n_remaining = kept
    return n_groups


@parallel_jit
def sample_from_tables(table_rows, uniforms, cumulative, sizes, candidate_rows, candidates, out):
    """Inverse-CDF sampling from per-word cumulative tables.

    Token ``i`` uses table row ``r = table_rows[i]``: ``cumulative[r, :sizes[r]]`` is the
    increasing cumulative weight of the row's outputs ``candidates[candidate_rows[r], :sizes[r]]``
    (entries beyond ``sizes[r]`` are ignored). The output is the first entry whose cumulative
    weight exceeds ``uniforms[i] * total`` (``total`` the row's last cumulative weight).
    """
    for i in prange(table_rows.shape[0]):
        r = table_rows[i]
        size = sizes[r]
        target = uniforms[i] * cumulative[r, size - 1]
        index = np.searchsorted(cumulative[r, :size], target, side="right")
        out[i] = candidates[candidate_rows[r], min(index, size - 1)]


@parallel_jit
def sample_subset_by_rejection(
    queries, row_ids, row_distances, reach, base, ranges, token_order, seeds, vectors,
    half_epsilon, out
):  # fmt: skip
    """Exact exponential mechanism over a set of output words from query points, by rejection.

    Target for query ``t``: ``P(y) ~ w(y) = exp(-half_epsilon * d(queries[t], y))`` over the
    ``n`` rows of ``vectors`` (SanText+'s sensitive words, as positions ``0..n-1``). Row ``t``
    holds some outputs with their exact distances (entries ``>= n`` are padding with distance
    ``inf``); every output outside the row is at least ``reach[t]`` away. Weights are taken
    relative to ``exp(-half_epsilon * base[t])`` (same law; no underflow of every weight).
    Envelope: the row's outputs with their weights, plus every output proposed uniformly at the
    bound ``exp(-half_epsilon * (reach[t] - base[t]))``; a row output drawn that way is
    rejected, any other accepted with probability ``w(y) / bound``, decided as
    ``d < reach - ln(u) / half_epsilon`` on a squared distance summed coordinate by coordinate
    and stopped as soon as it decides. The accepted draw has exactly the target law. Token
    ``i`` draws from its own SplitMix64 stream seeded by ``seeds[i]``: results do not depend on
    the thread count.
    """
    n_outputs = vectors.shape[0]
    for t in prange(queries.shape[0]):
        sorted_ids, cumulative, total = sorted_row_weights(
            row_ids[t], row_distances[t], half_epsilon, math.inf, base[t]
        )
        floor = reach[t]
        bound = math.exp(-half_epsilon * (floor - base[t]))
        grand = total + n_outputs * bound
        query = queries[t]
        for position in range(ranges[t, 0], ranges[t, 1]):
            token = token_order[position]
            out[token] = uniform_rejection_draw(
                seeds[token],
                sorted_ids,
                cumulative,
                total,
                grand,
                floor,
                math.inf,
                half_epsilon,
                query,
                vectors,
            )
