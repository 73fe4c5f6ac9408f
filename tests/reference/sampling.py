"""Pure-numpy twins of the sampling kernels (``densitydp.mechanisms._sampling_kernels``): slow,
plain loops that must agree exactly with the kernels."""

from __future__ import annotations

import numpy as np


def conservative_groups(vectors, k):
    """CusText's conservative mapping, written directly: words in id order; the first word not
    yet grouped leads a group of the ``k`` ungrouped words nearest to it (float64 Euclidean
    distance, ties by smaller id); fewer than ``k`` left: they form the last group.

    Returns ``(group_of (n,), list of member arrays)``."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n_words = len(vectors)
    group_of = np.full(n_words, -1, dtype=np.int64)
    groups = []
    for leader in range(n_words):
        if group_of[leader] >= 0:
            continue
        free = np.flatnonzero(group_of < 0)
        squared = np.zeros(len(free))
        for j in range(vectors.shape[1]):  # summed coordinate by coordinate, as the kernel
            squared += (vectors[leader, j] - vectors[free, j]) ** 2
        order = np.lexsort((free, squared))[:k]  # by distance, then by id
        members = free[order]
        group_of[members] = len(groups)
        groups.append(members)
    return group_of, groups


def sample_from_tables(table_rows, uniforms, cumulative, sizes, candidate_rows, candidates):
    """Inverse-CDF sampling, one token at a time."""
    out = np.empty(len(table_rows), dtype=np.int64)
    for i, row in enumerate(table_rows):
        size = sizes[row]
        weights = cumulative[row, :size]
        index = int(np.searchsorted(weights, uniforms[i] * weights[-1], side="right"))
        out[i] = candidates[candidate_rows[row], min(index, size - 1)]
    return out


def subset_rejection(queries, row_ids, row_distances, reach, base, seeds, vectors, epsilon):
    """Twin of ``sample_subset_by_rejection`` for one token per row: the envelope proposes any
    output uniformly at the bound; row outputs drawn that way are rejected; acceptance as
    ``d < reach - ln(u) / (epsilon / 2)``."""
    from reference.mechanisms import uniform_rejection_draw

    vectors = np.asarray(vectors, dtype=np.float64)
    n_outputs = len(vectors)
    half = epsilon / 2
    out = np.empty(len(queries), dtype=np.int64)
    for i, query in enumerate(queries):
        order = np.argsort(row_ids[i])
        ids = row_ids[i][order]
        cumulative = np.cumsum(np.exp(-half * (row_distances[i][order] - base[i])))
        bound = np.exp(-half * (reach[i] - base[i]))
        grand = cumulative[-1] + n_outputs * bound
        out[i] = uniform_rejection_draw(
            int(seeds[i]), ids, cumulative, grand, reach[i], np.inf, half, query, vectors
        )
    return out
