"""Pure-numpy twins of the mechanism kernels (``densitydp.mechanisms._kernels``): slow loops over
tokens that consume the same uniforms, so kernel and twin must agree exactly."""

from __future__ import annotations

import numpy as np


def clipped_exponential(word_ids, u_choice, u_fallback, vectors, epsilon, gamma):
    """Exponential mechanism with distances clipped at gamma (TEM; inf: plain EM), by
    inverse CDF over the inside words in id order, then the bottom element."""
    vectors = np.asarray(vectors, dtype=np.float64)
    out = np.empty(len(word_ids), dtype=np.int64)
    for i, word in enumerate(word_ids):
        distances = np.sqrt(((vectors - vectors[word]) ** 2).sum(axis=1))
        inside = np.flatnonzero(distances <= gamma)  # increasing ids
        weights = np.exp(-epsilon / 2 * distances[inside])
        outside = np.flatnonzero(distances > gamma)
        bottom = len(outside) * np.exp(-epsilon / 2 * gamma) if len(outside) else 0.0
        target = u_choice[i] * (weights.sum() + bottom)
        cumulative = np.cumsum(weights)
        if target < cumulative[-1] or not len(outside):
            out[i] = inside[min(np.searchsorted(cumulative, target, side="right"), len(inside) - 1)]
        else:
            out[i] = outside[min(int(u_fallback[i] * len(outside)), len(outside) - 1)]
    return out


def truncated_gumbel(candidate_ids, candidate_distances, counts, uniforms, scale, bound):
    """Truncated Gumbel selection per token (rows already per token)."""
    lower = np.exp(-np.exp(bound / scale))
    width = np.exp(-np.exp(-bound / scale)) - lower
    out = np.empty(len(counts), dtype=np.int64)
    start = 0
    for i, count in enumerate(counts):
        u = lower + width * uniforms[start : start + count]
        noise = np.clip(-scale * np.log(-np.log(u)), -bound, bound)
        noisy = candidate_distances[i, :count] + noise
        out[i] = candidate_ids[i, int(np.argmin(noisy))] if count else candidate_ids[i, 0]
        start += count
    return out


def nearest(points, vectors):
    """Brute-force exact nearest word (ties: smallest id)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    out = np.empty(len(points), dtype=np.int64)
    for i, point in enumerate(points):
        distances = ((vectors - point) ** 2).sum(axis=1)
        out[i] = int(np.flatnonzero(distances == distances.min())[0])
    return out
