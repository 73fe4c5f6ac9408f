"""Pure-numpy twins of the embedding-noise kernels (``densitydp.mechanisms._embedding_kernels``):
slow loops over points that consume the same uniforms, so kernel and twin must agree exactly."""

from __future__ import annotations

import numpy as np


def vickrey_pick(first, second, d1, d2, uniform, threshold):
    """First with probability (1 - t) d2 / (t d1 + (1 - t) d2), else second; 1 - t when the
    denominator is 0."""
    denominator = threshold * d1 + (1.0 - threshold) * d2
    p_first = (1.0 - threshold) * d2 / denominator if denominator > 0.0 else 1.0 - threshold
    return first if uniform < p_first else second


def squared(point, vector):
    """Squared distance summed coordinate by coordinate in order (float64), as the kernels do."""
    total = 0.0
    for coordinate in range(len(vector)):
        diff = float(point[coordinate]) - float(vector[coordinate])
        total += diff * diff
    return total


def two_nearest(point, candidates, vectors):
    """The two nearest of ``candidates`` to ``point`` (squared distance, then id) and their
    plain distances; the squares summed coordinate by coordinate in order, as the kernels do."""
    vectors = np.asarray(vectors)
    keys = sorted((squared(point, vectors[word]), int(word)) for word in candidates)
    (sq1, first), (sq2, second) = keys[0], keys[1]
    return first, second, float(np.sqrt(sq1)), float(np.sqrt(sq2))


def vickrey_in_rows(points, rows, table_ids, vectors, uniforms, threshold):
    """Vickrey selection between the two nearest words of each point among its row's words."""
    out = np.empty(len(points), dtype=np.int64)
    for i, point in enumerate(points):
        first, second, d1, d2 = two_nearest(point, table_ids[rows[i]], vectors)
        out[i] = vickrey_pick(first, second, d1, d2, uniforms[i], threshold)
    return out


def vickrey_select(points, first, second, vectors, uniforms, threshold):
    """:func:`vickrey_pick` point by point, the distances recomputed as the kernels do."""
    out = np.empty(len(points), dtype=np.int64)
    for i, point in enumerate(points):
        d1 = np.sqrt(squared(point, vectors[first[i]]))
        d2 = np.sqrt(squared(point, vectors[second[i]]))
        out[i] = vickrey_pick(first[i], second[i], d1, d2, uniforms[i], threshold)
    return out


def two_nearest_cascade(queries, slack, words, relative):
    """``(first, second, status)`` as ``two_nearest_cascade`` returns them, with no pruning:
    every word's full float64 squared distance in the kernel's summation order, the two best
    (ties to the smaller index), how many words lie within the margin of the second (-1 above
    the kernel's capacity), -2 when the second is within the margin of the first."""
    from densitydp.mechanisms import _cascade
    from reference.cascade import full_squared, threshold

    first = np.empty(len(queries), dtype=np.int64)
    second = np.empty(len(queries), dtype=np.int64)
    status = np.empty(len(queries), dtype=np.int64)
    words64 = words.astype(np.float64)
    for i, query in enumerate(queries):
        total = full_squared(query, words64)
        order = np.lexsort((np.arange(len(words)), total))
        first[i], second[i] = order[0], order[1]
        within = int(np.sum(total <= threshold(total[order[1]], slack[i], relative)))
        if total[order[1]] <= threshold(total[order[0]], slack[i], relative):
            status[i] = -2
        else:
            status[i] = within if within <= _cascade._CANDIDATES else -1
    return first, second, status


def vickrey_brute_force(points, vectors, uniforms, threshold):
    """Vickrey output over the whole vocabulary (the exact two nearest words by a full scan)."""
    return vickrey_in_rows(
        points,
        np.zeros(len(points), dtype=np.int64),
        np.arange(len(vectors))[None, :],
        vectors,
        uniforms,
        threshold,
    )
