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


def two_nearest(point, candidates, vectors):
    """The two nearest of ``candidates`` to ``point`` (squared distance, then id) and their
    plain distances; the squares summed coordinate by coordinate in order, as the kernels do."""
    vectors = np.asarray(vectors)
    keys = []
    for word in candidates:
        total = 0.0
        for coordinate in range(vectors.shape[1]):
            diff = float(point[coordinate]) - float(vectors[word, coordinate])
            total += diff * diff
        keys.append((total, int(word)))
    keys.sort()
    (sq1, first), (sq2, second) = keys[0], keys[1]
    return first, second, float(np.sqrt(sq1)), float(np.sqrt(sq2))


def vickrey_in_rows(points, rows, table_ids, vectors, uniforms, threshold):
    """Vickrey selection between the two nearest words of each point among its row's words."""
    out = np.empty(len(points), dtype=np.int64)
    for i, point in enumerate(points):
        first, second, d1, d2 = two_nearest(point, table_ids[rows[i]], vectors)
        out[i] = vickrey_pick(first, second, d1, d2, uniforms[i], threshold)
    return out


def vickrey_select(first, second, d1, d2, uniforms, threshold):
    """:func:`vickrey_pick` point by point."""
    return np.array(
        [
            vickrey_pick(a, b, x, y, u, threshold)
            for a, b, x, y, u in zip(first, second, d1, d2, uniforms, strict=True)
        ],
        dtype=np.int64,
    )


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
