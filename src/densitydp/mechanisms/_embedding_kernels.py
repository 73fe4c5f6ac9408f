"""numba kernels of the embedding-noise mechanisms of the field (Vickrey selection).

Arrays in, arrays out; no validation, no Python objects. The uniforms of the random choice are
drawn by the wrappers with numpy Generators and passed in, so every kernel is a deterministic
function of its inputs and the results do not depend on the number of threads. Pure-numpy
twins live in ``tests/reference/embedding.py``.
"""

from __future__ import annotations

import math

from numba import prange

from .._jit import jit, parallel_jit
from .._kernels import squared_distance


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
def vickrey_select(first, second, d1, d2, uniforms, threshold, out):
    """:func:`vickrey_pick` for points whose two nearest words were found elsewhere (the
    exact full search): ``out[i]`` is ``first[i]`` or ``second[i]``."""
    for i in prange(first.shape[0]):
        out[i] = vickrey_pick(first[i], second[i], d1[i], d2[i], uniforms[i], threshold)
