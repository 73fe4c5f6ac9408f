"""numba kernels for exact nearest-neighbour search (used by :mod:`densitydp.neighbors`).

Arrays in, arrays out; no validation here. The search is two-staged:

1. :func:`update_topk` screens a block of float32 BLAS inner products: for each query row it keeps
   the ``kk`` smallest approximate scores ``||y||^2 - 2 q.y`` in a max-heap and the largest score
   seen (for the diameter).
2. :func:`refine_rows` recomputes the candidates' distances exactly in float64, sorts them (the
   query's own word first when given, then by distance, then by id) and certifies the row: the
   top-k is provably exact when no screened-out word can beat the k-th exact distance given the
   float32 error bound. Uncertified rows go to :func:`exact_row`, a full float64 scan.

The screen and the refinement are serial kernels: the wrapper runs one block of rows per Python
thread (numba releases the GIL; BLAS is limited to one thread inside), which keeps BLAS and
numba threads from spinning against each other. The full scan is parallel over rows. Every row
is computed independently, so results do not depend on the number of threads.

Pure-numpy twins live in ``tests/reference/neighbors.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, parallel_jit


@jit
def update_topk(products, column_offset, column_sqnorms, heap_scores, heap_ids, row_max):
    """Merge one block of inner products into the per-row max-heaps.

    ``products[i, j]`` is ``q_i . y_{column_offset + j}`` (float32); the score is
    ``column_sqnorms[j] - 2 products[i, j]``. ``heap_scores[i, 0]`` is the largest kept score.
    A score equal to the heap top is not inserted, so every screened-out column scores at least
    the final heap top.
    """
    n_rows, n_columns = products.shape
    capacity = heap_scores.shape[1]
    for i in range(n_rows):
        top = heap_scores[i, 0]
        largest = row_max[i]
        for j in range(n_columns):
            score = column_sqnorms[j] - 2.0 * products[i, j]
            if score > largest:
                largest = score
            if score < top:
                # replace the root and sift it down
                position = 0
                while True:
                    child = 2 * position + 1
                    if child >= capacity:
                        break
                    if child + 1 < capacity and heap_scores[i, child + 1] > heap_scores[i, child]:
                        child += 1
                    if heap_scores[i, child] <= score:
                        break
                    heap_scores[i, position] = heap_scores[i, child]
                    heap_ids[i, position] = heap_ids[i, child]
                    position = child
                heap_scores[i, position] = score
                heap_ids[i, position] = column_offset + j
                top = heap_scores[i, 0]
        row_max[i] = largest


@jit
def squared_distance(query, vector):
    """Exact float64 squared Euclidean distance, summed in a fixed order."""
    total = 0.0
    for t in range(query.shape[0]):
        diff = query[t] - np.float64(vector[t])
        total += diff * diff
    return total


@jit
def _precedes(self_a, dist_a, id_a, self_b, dist_b, id_b):
    """Sort order of neighbour lists: the query's own word first, then distance, then id."""
    if self_a != self_b:
        return self_a
    if dist_a != dist_b:
        return dist_a < dist_b
    return id_a < id_b


@jit
def refine_rows(
    queries,
    query_sqnorms,
    vectors,
    heap_scores,
    heap_ids,
    self_ids,
    error_bounds,
    k,
    out_ids,
    out_sqdist,
    certified,
):
    """Exact float64 top-k among each row's candidates, and whether it is the true top-k.

    ``self_ids[i]`` is the word of query ``i`` (forced to rank 0) or -1. ``error_bounds[i]``
    bounds the float32 error of every approximate score of row ``i``. A row is certified when
    the heap held every column, or when the smallest possible exact squared distance of a
    screened-out column exceeds the k-th exact squared distance (and the query's own word, if
    any, is among the candidates).
    """
    n_rows, capacity = heap_ids.shape
    n_words = vectors.shape[0]
    for i in range(n_rows):
        cand_ids = np.empty(capacity, np.int64)
        cand_sq = np.empty(capacity, np.float64)
        cand_self = np.zeros(capacity, np.bool_)
        n = 0
        found_self = self_ids[i] < 0
        for c in range(capacity):
            word = heap_ids[i, c]
            if word < 0:
                continue
            cand_ids[n] = word
            cand_sq[n] = squared_distance(queries[i], vectors[word])
            if word == self_ids[i]:
                cand_self[n] = True
                found_self = True
            n += 1
        # insertion sort: capacity is small (k + margin)
        for a in range(1, n):
            s_id = cand_ids[a]
            s_sq = cand_sq[a]
            s_self = cand_self[a]
            b = a - 1
            while b >= 0 and _precedes(s_self, s_sq, s_id, cand_self[b], cand_sq[b], cand_ids[b]):
                cand_ids[b + 1] = cand_ids[b]
                cand_sq[b + 1] = cand_sq[b]
                cand_self[b + 1] = cand_self[b]
                b -= 1
            cand_ids[b + 1] = s_id
            cand_sq[b + 1] = s_sq
            cand_self[b + 1] = s_self
        for r in range(k):
            out_ids[i, r] = cand_ids[r]
            out_sqdist[i, r] = cand_sq[r]
        if n == n_words:
            certified[i] = found_self
        else:
            # every screened-out column j has approximate score >= heap top, so its exact squared
            # distance is >= |q|^2 + heap top - error bound
            floor = query_sqnorms[i] + heap_scores[i, 0] - error_bounds[i]
            kth = cand_sq[k - 1]
            certified[i] = found_self and floor > kth + 1e-9 * kth + 1e-300


@parallel_jit
def exact_rows(queries, vectors, self_ids, k, out_ids, out_sqdist, out_max):
    """Full float64 scan for a few rows: exact top-k (same order as refine_rows; none when
    ``k == 0``) and the largest squared distance of each row."""
    n_rows = queries.shape[0]
    n_words = vectors.shape[0]
    for i in prange(n_rows):
        keys = np.empty(n_words, np.float64)
        largest = 0.0
        for j in range(n_words):
            keys[j] = squared_distance(queries[i], vectors[j])
            if keys[j] > largest:
                largest = keys[j]
        out_max[i] = largest
        if k == 0:
            continue
        own = self_ids[i]
        own_sq = 0.0
        if own >= 0:
            own_sq = keys[own]
            keys[own] = -1.0
        order = np.argsort(keys, kind="mergesort")  # stable: ties keep id order
        for r in range(k):
            word = order[r]
            out_ids[i, r] = word
            out_sqdist[i, r] = own_sq if word == own else keys[word]


# -- Gaussian kernel density -------------------------------------------------------------------

#: Reference points per block of the kernel-density sum (one block of squared distances lives in
#: a 4 KB scratch array).
KDE_BLOCK = 512

#: A term below ``2**-54`` of the running maximum cannot change a sum that is >= 1 in float64;
#: such terms are skipped (the sum is then exact to ``n * 2**-54`` relative).
_NEGLIGIBLE = -37.5


@jit
def block_squared_distances(position, references_t, start, stop, scratch):
    """``scratch[r] = ||position - ref_{start + r}||^2`` for ``start <= start + r < stop``, the
    references being the columns of ``references_t`` (``(dim, n)``): coordinate by coordinate,
    contiguous and vectorised; differences in float64 whatever the dtype of ``references_t``."""
    width = stop - start
    scratch[:width] = 0.0
    for j in range(references_t.shape[0]):
        coordinate = position[j]
        column = references_t[j, start:stop]
        for r in range(width):
            difference = coordinate - np.float64(column[r])
            scratch[r] += difference * difference


@jit
def kde_logsumexp(position, references_t, log_weights, inv_two_h2, exclude):
    """``log sum_i exp(log_weights[i] - ||position - r_i||^2 * inv_two_h2[i])`` over the
    reference points ``r_i`` (the columns of ``references_t``, shape ``(dim, n)``), leaving out
    index ``exclude`` (-1: none).

    Blocked and numerically stable: squared distances of a block of references are accumulated
    coordinate by coordinate (contiguous, vectorised), then merged into a running log-sum-exp.
    Differences are taken in float64 whatever the dtype of ``references_t``.
    """
    n_points = references_t.shape[1]
    scratch = np.empty(KDE_BLOCK)
    running_max = -np.inf
    total = 0.0
    for start in range(0, n_points, KDE_BLOCK):
        stop = min(start + KDE_BLOCK, n_points)
        width = stop - start
        block_squared_distances(position, references_t, start, stop, scratch)
        block_max = -np.inf
        for r in range(width):
            value = log_weights[start + r] - scratch[r] * inv_two_h2[start + r]
            if start + r == exclude:
                value = -np.inf
            scratch[r] = value
            if value > block_max:
                block_max = value
        if block_max == -np.inf:
            continue
        if block_max > running_max:
            total *= math.exp(running_max - block_max)
            running_max = block_max
        cut = running_max + _NEGLIGIBLE
        for r in range(width):
            if scratch[r] > cut:
                total += math.exp(scratch[r] - running_max)
    if total == 0.0:
        return -np.inf
    return running_max + math.log(total)


@parallel_jit
def kde_log_density(queries, references_t, log_weights, inv_two_h2, exclude, out):
    """:func:`kde_logsumexp` for every row of ``queries`` (``exclude[i]`` per query)."""
    for i in prange(queries.shape[0]):
        out[i] = kde_logsumexp(queries[i], references_t, log_weights, inv_two_h2, exclude[i])


@jit
def kde_logdensity(position, prior_args):
    """``ln p(position)`` of a :class:`densitydp.KDEPrior` inside numba code.

    ``prior_args`` is ``prior.numba_args()``. Example of a target for
    :func:`densitydp.run_chains`::

        @numba.njit
        def tilted(position, args):
            prior_args, tilt = args
            return -0.5 * (position**2).sum() + tilt * kde_logdensity(position, prior_args)
    """
    references_t, log_weights, inv_two_h2, mean, components = prior_args
    if components.shape[0] == 0:
        return kde_logsumexp(position, references_t, log_weights, inv_two_h2, -1)
    projected = components @ (position - mean)
    return kde_logsumexp(projected, references_t, log_weights, inv_two_h2, -1)
