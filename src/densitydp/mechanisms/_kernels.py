"""numba kernels of the mechanisms. Arrays in, arrays out; no validation, no Python objects.

All randomness is drawn by the wrappers with numpy Generators (one spawned child per batch of
tokens) and passed in as arrays of uniforms, so every kernel is a deterministic function of its
inputs and the results do not depend on the number of threads. Pure-numpy twins live in
``tests/reference/mechanisms.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import jit, parallel_jit
from .._kernels import squared_distance


@jit
def distance_row(query, vectors, out):
    """Exact float64 Euclidean distance from ``query`` to every row of ``vectors``."""
    for j in range(vectors.shape[0]):
        out[j] = math.sqrt(squared_distance(query, vectors[j]))


@jit
def _nth_outside(sorted_inside, position):
    """The ``position``-th id (0-based, increasing) that is not in ``sorted_inside``."""
    candidate = position
    for member in sorted_inside:
        if member <= candidate:
            candidate += 1
        else:
            break
    return candidate


@parallel_jit
def sample_clipped_exponential(
    words,
    use_table,
    table_ids,
    token_order,
    starts,
    u_choice,
    u_fallback,
    vectors,
    half_epsilon,
    gamma,
    out,
):
    """Exponential mechanism with distances clipped at ``gamma`` (TEM; ``inf``: plain EM).

    For input word ``w``: ``P(y) ~ exp(-half_epsilon * d(w, y))`` for ``d <= gamma`` (the set
    L_w) and the bottom element gets ``|W \\ L_w| * exp(-half_epsilon * gamma)``, after which a
    uniform word of ``W \\ L_w`` is returned. One task per distinct input word ``words[t]``; its
    tokens are ``token_order[starts[t]:starts[t + 1]]``, sampled by inverse CDF with
    ``u_choice`` and, for the bottom element, ``u_fallback``. When ``use_table[t]`` the table
    row ``table_ids[t]`` holds all of L_w (its distances are recomputed in float64); otherwise
    the whole vocabulary is scanned.
    """
    n_words = vectors.shape[0]
    for t in prange(words.shape[0]):
        query = vectors[words[t]].astype(np.float64)
        if use_table[t]:  # noqa: SIM108 (one array type for numba)
            candidates = table_ids[t].astype(np.int64)
        else:
            candidates = np.arange(n_words)
        distances = np.empty(candidates.shape[0])
        for c in range(candidates.shape[0]):
            distances[c] = math.sqrt(squared_distance(query, vectors[candidates[c]]))
        inside = np.flatnonzero(distances <= gamma)
        inside_ids = np.sort(candidates[inside])
        cumulative = np.empty(inside.shape[0])
        # candidates are in id order when scanning, in table order otherwise: sort by id
        order = np.argsort(candidates[inside])
        total = 0.0
        for c in range(inside.shape[0]):
            total += math.exp(-half_epsilon * distances[inside[order[c]]])
            cumulative[c] = total
        n_outside = n_words - inside.shape[0]
        bottom = n_outside * math.exp(-half_epsilon * gamma) if n_outside > 0 else 0.0
        grand = total + bottom
        for position in range(starts[t], starts[t + 1]):
            token = token_order[position]
            target = u_choice[token] * grand
            if target < total or n_outside == 0:
                index = np.searchsorted(cumulative, target, side="right")
                if index >= inside_ids.shape[0]:
                    index = inside_ids.shape[0] - 1
                out[token] = inside_ids[index]
            else:
                pick = min(int(u_fallback[token] * n_outside), n_outside - 1)
                out[token] = _nth_outside(inside_ids, pick)


@parallel_jit
def truncated_gumbel_select(
    token_rows,
    candidate_ids,
    candidate_distances,
    counts,
    offsets,
    uniforms,
    lower,
    width,
    scale,
    bound,
    out,
):
    """Truncated Gumbel kNN selection for each token.

    Token ``i`` has ``counts[i]`` candidates (row ``token_rows[i]`` of the candidate arrays, the
    word itself first). Each gets Gumbel(0, scale) noise truncated to ``[-bound, bound]``, drawn
    by inverse CDF from ``uniforms[offsets[i]:]`` mapped into ``[lower, lower + width]``
    (``lower = F(-bound)``, ``width = F(bound) - F(-bound)``); the smallest noisy distance wins
    (the earlier rank on a tie). ``counts[i] <= 1`` returns the word itself.
    """
    for i in prange(token_rows.shape[0]):
        row = token_rows[i]
        count = counts[i]
        best = np.inf
        chosen = 0
        for j in range(count):
            u = lower + width * uniforms[offsets[i] + j]
            if u <= 0.0:
                noise = -bound
            elif u >= 1.0:
                noise = bound
            else:
                noise = min(max(-scale * math.log(-math.log(u)), -bound), bound)
            noisy = candidate_distances[row, j] + noise
            if noisy < best:
                best = noisy
                chosen = j
        out[i] = candidate_ids[row, chosen]


@parallel_jit
def decode_in_rows(points, rows, table_ids, vectors, out):
    """Exact nearest word of each point among the words of its table row (ties: smaller id).

    Exact for the whole vocabulary when the caller has checked that every word outside the row
    is farther from the row's word than twice the noise radius.
    """
    for i in prange(points.shape[0]):
        row = rows[i]
        best = np.inf
        chosen = -1
        for j in range(table_ids.shape[1]):
            word = table_ids[row, j]
            distance = squared_distance(points[i], vectors[word])
            if distance < best or (distance == best and word < chosen):
                best = distance
                chosen = word
        out[i] = chosen


@parallel_jit
def row_distances(words, candidate_ids, vectors, out):
    """Exact float64 distances from each word to the candidates of its row."""
    for t in prange(words.shape[0]):
        query = vectors[words[t]].astype(np.float64)
        for j in range(candidate_ids.shape[1]):
            out[t, j] = math.sqrt(squared_distance(query, vectors[candidate_ids[t, j]]))
