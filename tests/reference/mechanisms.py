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


MASK = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, float]:
    """Python-int twin of ``_kernels.splitmix64``."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    z ^= z >> 31
    return state, (z >> 11) / 9007199254740992.0


def uniform_rejection(words, row_ids, row_distances, reach, seeds, vectors, epsilon, gamma):
    """Twin of ``sample_by_uniform_rejection`` for one token per entry of ``words`` (row ``i``):
    the envelope proposes any word uniformly at the bound; row words drawn that way are
    rejected; acceptance as ``min(d, gamma) < min(reach, gamma) - ln(u) / (epsilon / 2)``."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n_words = len(vectors)
    out = np.empty(len(words), dtype=np.int64)
    half = epsilon / 2
    for i, word in enumerate(words):
        order = np.argsort(row_ids[i])
        ids = row_ids[i][order]
        cumulative = np.cumsum(np.exp(-half * np.minimum(row_distances[i][order], gamma)))
        floor = min(reach[i], gamma)
        bound = np.exp(-half * floor) if len(ids) < n_words else 0.0
        grand = cumulative[-1] + n_words * bound
        out[i] = uniform_rejection_draw(
            int(seeds[i]), ids, cumulative, grand, floor, gamma, half, vectors[word], vectors
        )
    return out


def uniform_rejection_draw(state, ids, cumulative, grand, floor, gamma, half, query, vectors):
    """One token of the uniform-envelope rejection (``sample_by_uniform_rejection``,
    ``sample_subset_by_rejection``): a row entry by inverse CDF below ``cumulative[-1]``, else
    any row of ``vectors`` uniformly, rejected when in ``ids``, accepted when
    ``d < floor - ln(u) / half`` (always when that exceeds ``gamma``)."""
    n_words = len(vectors)
    while True:
        state, u = splitmix64(state)
        if u * grand < cumulative[-1]:
            index = np.searchsorted(cumulative, u * grand, side="right")
            return ids[min(index, len(ids) - 1)]
        state, u = splitmix64(state)
        candidate = min(int(u * n_words), n_words - 1)
        if candidate in set(ids.tolist()):
            continue
        state, u = splitmix64(state)
        if u <= 0.0:
            return candidate
        threshold = floor - np.log(u) / half
        if threshold > gamma:
            return candidate
        squared = 0.0
        for diff in query - vectors[candidate]:
            squared += diff * diff  # the kernel's order of summation
        if squared < threshold * threshold:
            return candidate


def truncated_gumbel_race(candidate_ids, candidate_distances, counts, draws, scale, bound, spread):
    """Twin of ``truncated_gumbel_select`` (rows already per token): the largest
    ``(L + E) * exp(-d / scale)``, ``L = exp(-bound / scale)``; ``E`` is ``draws`` itself
    (``spread == 0``) or ``-log1p(-u * spread)``."""
    low = np.exp(-bound / scale)
    out = np.empty(len(counts), dtype=np.int64)
    start = 0
    for i, count in enumerate(counts):
        drawn = draws[start : start + count]
        race = low + drawn if spread == 0 else low - np.log1p(-spread * drawn)
        keys = race * np.exp(-candidate_distances[i, :count] / scale)
        out[i] = candidate_ids[i, int(np.argmax(keys))] if count else candidate_ids[i, 0]
        start += count
    return out
