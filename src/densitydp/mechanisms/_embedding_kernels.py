"""numba kernels of the embedding-noise mechanisms of the field (Vickrey selection).

Arrays in, arrays out; no validation, no Python objects. The uniforms of the random choice are
drawn by the wrappers with numpy Generators and passed in, so every kernel is a deterministic
function of its inputs and the results do not depend on the number of threads. Pure-numpy
twins live in ``tests/reference/embedding.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import jit, parallel_jit
from .._kernels import squared_distance
from ._cascade import (
    _CANDIDATES,
    _block_survivors,
    _full_squared,
    _keep_candidate,
    _limit32,
    _queries32,
    _threshold,
)


@jit
def vickrey_pick(first, second, d1, d2, uniform, threshold):
    """``first`` with probability ``(1 - t) d2 / (t d1 + (1 - t) d2)``, else ``second``.

    ``d1 <= d2`` are the plain (not squared) distances of the noisy point to its first and
    second nearest words, ``t = threshold`` in [0, 1] and ``uniform`` in [0, 1). When the
    denominator is 0 (``d1 = d2 = 0``, or ``t = 1`` and ``d1 = 0``: events of probability zero
    under continuous noise) the probability of ``first`` is ``1 - t``, its limit along
    ``d1 = d2`` (for ``t = 1, d1 = 0 < d2`` also the limit as ``d1 -> 0``).
    """
    denominator = threshold * d1 + (1.0 - threshold) * d2
    p_first = (1.0 - threshold) * d2 / denominator if denominator > 0.0 else 1.0 - threshold
    return first if uniform < p_first else second


@parallel_jit
def vickrey_in_rows(points, rows, table_ids, vectors, uniforms, threshold, out):
    """Vickrey selection between the two nearest words of each point, searched in its row.

    The first and second nearest words of ``points[i]`` among the words of
    ``table_ids[rows[i]]`` (order: squared distance, then smaller id), then
    :func:`vickrey_pick` with ``uniforms[i]``. Exact for the whole vocabulary when the caller
    has checked that both lie in the row (see ``densitydp.mechanisms.vickrey``).
    """
    width = table_ids.shape[1]
    for i in prange(points.shape[0]):
        row = rows[i]
        best = math.inf
        runner = math.inf
        first = -1
        second = -1
        for j in range(width):
            word = table_ids[row, j]
            distance = squared_distance(points[i], vectors[word])
            if distance < best or (distance == best and word < first):
                runner = best
                second = first
                best = distance
                first = word
            elif distance < runner or (distance == runner and word < second):
                runner = distance
                second = word
        out[i] = vickrey_pick(
            first, second, math.sqrt(best), math.sqrt(runner), uniforms[i], threshold
        )


@parallel_jit
def vickrey_select(points, first, second, vectors, uniforms, threshold, out):
    """:func:`vickrey_pick` for points whose two nearest words ``first[i]``, ``second[i]`` were
    found elsewhere (the cascade or the exact full search); the distances are recomputed here in
    float64, summed as everywhere else (:func:`squared_distance`), or scaled by their largest
    coordinate when a square overflows (points beyond about 1e154: both were inf, the
    probability NaN, and the second word always chosen)."""
    for i in prange(first.shape[0]):
        d1 = _distance(points[i], vectors[first[i]])
        d2 = _distance(points[i], vectors[second[i]])
        out[i] = vickrey_pick(first[i], second[i], d1, d2, uniforms[i], threshold)


@jit
def _distance(point, vector):
    """``||point - vector||`` in float64: from :func:`squared_distance`, or, when that
    overflows, as ``m sqrt(sum((diff / m)^2))`` with ``m`` the largest ``|diff|``."""
    squared = squared_distance(point, vector)
    if squared < np.inf:
        return math.sqrt(squared)
    largest = 0.0
    for t in range(point.shape[0]):
        largest = max(largest, abs(point[t] - np.float64(vector[t])))
    total = 0.0
    for t in range(point.shape[0]):
        scaled = (point[t] - np.float64(vector[t])) / largest
        total += scaled * scaled
    return largest * math.sqrt(total)


@jit
def _insert_top_two(top_sq, top_unit, total, unit):
    """Keep the two smallest ``(squared distance, unit)`` pairs; a unit already held is not
    entered twice (the seeds are met again by the scan)."""
    if unit == top_unit[0] or unit == top_unit[1]:
        return
    if total < top_sq[0] or (total == top_sq[0] and unit < top_unit[0]):
        top_sq[1] = top_sq[0]
        top_unit[1] = top_unit[0]
        top_sq[0] = total
        top_unit[0] = unit
    elif total < top_sq[1] or (total == top_sq[1] and unit < top_unit[1]):
        top_sq[1] = total
        top_unit[1] = unit


@parallel_jit
def two_nearest_cascade(
    queries, slack, blocks, boxes, n_units, seeds, relative, size, first, second, status
):
    """The exact PCA cascade of ``densitydp.mechanisms._cascade`` for the two nearest words.

    The same stages and rounding margins as ``_cascade._search``, with the upper bound taken
    from the *second* best full distance: a word is dropped only when it is provably farther
    than the second best word, hence (the margin being increasing in the distance) than both
    kept words, so neither of the two nearest words is ever dropped. ``first[i]``,
    ``second[i]`` receive the units (deduplicated words) of the two best; ``status[i]`` the
    number of words within the margin of the second (2: decided), -1 when more than the
    candidate capacity were, -2 when the second is within the margin of the first (their order
    is not proven). Queries are grouped into tasks of ``size`` (``_cascade.task_size``); each
    query's search is independent of its task: the result does not depend on the number of
    threads.
    """
    n_queries = queries.shape[0]
    n_blocks, _, width = blocks.shape
    n_tasks = (n_queries + size - 1) // size
    for task in prange(n_tasks):
        start = task * size
        stop = min(start + size, n_queries)
        count = stop - start
        top_sq = np.full((count, 2), np.inf)
        top_unit = np.full((count, 2), -1, np.int64)
        limit = np.full(count, np.inf)
        limit32 = np.full(count, np.inf, np.float32)
        cand_unit = np.full((count, _CANDIDATES), -1, np.int64)
        cand_sq = np.full((count, _CANDIDATES), np.inf)
        overflow = np.zeros(count, np.bool_)
        query32 = _queries32(queries, start, count)
        for q in range(count):
            for s in range(seeds.shape[1]):
                unit = seeds[start + q, s]
                if unit < 0:
                    continue
                full = _full_squared(queries[start + q], blocks, unit)
                _insert_top_two(top_sq[q], top_unit[q], full, unit)
            if top_unit[q, 1] >= 0:
                limit[q] = _threshold(top_sq[q, 1], slack[start + q], relative)
                limit32[q] = _limit32(limit[q])
        partial = np.empty(width, np.float32)
        survivors = np.empty(width, np.int64)
        for b in range(n_blocks):
            for q in range(count):
                reached = _block_survivors(
                    query32[q], blocks, boxes, b, limit32[q], partial, survivors
                )
                for c in range(reached):
                    j = survivors[c]
                    if partial[j] <= limit32[q]:
                        unit = b * width + j
                        if unit >= n_units:
                            continue
                        total = _full_squared(queries[start + q], blocks, unit)
                        if total > limit[q]:
                            continue
                        _insert_top_two(top_sq[q], top_unit[q], total, unit)
                        if top_unit[q, 1] >= 0:
                            limit[q] = _threshold(top_sq[q, 1], slack[start + q], relative)
                            limit32[q] = _limit32(limit[q])
                        if not _keep_candidate(cand_unit[q], cand_sq[q], limit[q], unit, total):
                            overflow[q] = True
        for q in range(count):
            first[start + q] = top_unit[q, 0]
            second[start + q] = top_unit[q, 1]
            if overflow[q]:
                status[start + q] = -1
                continue
            within = 0
            seen_first = False
            seen_second = False
            for c in range(_CANDIDATES):
                if cand_unit[q, c] >= 0 and cand_sq[q, c] <= limit[q]:
                    within += 1
                    seen_first |= cand_unit[q, c] == top_unit[q, 0]
                    seen_second |= cand_unit[q, c] == top_unit[q, 1]
            if not seen_first and top_unit[q, 0] >= 0:
                within += 1  # not reached by the scan (cannot happen: counted to be safe)
            if not seen_second and top_unit[q, 1] >= 0:
                within += 1
            if top_sq[q, 1] <= _threshold(top_sq[q, 0], slack[start + q], relative):
                status[start + q] = -2
            else:
                status[start + q] = within
