"""Pure-numpy twins of the kernels in ``densitydp._kernels`` and of the whole search.

Slow and obviously correct: full float64 distances, explicit sorting. Used only by tests.
"""

from __future__ import annotations

import numpy as np


def squared_distances(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Exact float64 squared distances, (n, V), by explicit differences."""
    queries = np.asarray(queries, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    out = np.empty((len(queries), len(vectors)))
    for i, query in enumerate(queries):
        diff = vectors - query
        out[i] = np.einsum("ij,ij->i", diff, diff)
    return out


def order_row(sq_row: np.ndarray, k: int, self_id: int = -1) -> np.ndarray:
    """The first k ids of one row in table order: own word first, then distance, then id."""
    ids = np.arange(len(sq_row))
    is_other = ids != self_id
    return np.lexsort((ids, sq_row, is_other))[:k]


def knn(queries: np.ndarray, vectors: np.ndarray, k: int, self_ids=None):
    """Twin of ``exact_search`` / ``exact_rows``: (ids, distances, row max squared distance)."""
    sq = squared_distances(queries, vectors)
    self_ids = np.full(len(sq), -1) if self_ids is None else np.asarray(self_ids)
    ids = np.stack([order_row(row, k, s) for row, s in zip(sq, self_ids, strict=True)])
    return ids, np.sqrt(np.take_along_axis(sq, ids, axis=1)), sq.max(axis=1)


def table(vectors: np.ndarray, k: int):
    """Full table, min distance between distinct words, diameter."""
    ids, distances, row_max = knn(vectors, vectors, k, self_ids=np.arange(len(vectors)))
    sq = squared_distances(vectors, vectors)
    np.fill_diagonal(sq, np.inf)
    return ids, distances, float(np.sqrt(sq.min())), float(np.sqrt(row_max.max()))


def update_topk(products, factor, column_offset, column_sqnorms, capacity):
    """Twin of ``update_topk`` on one tile from empty heaps: the ``capacity`` smallest scores of
    each row (as a sorted array) and the largest score (non-finite scores: -inf kept, +inf
    largest)."""
    with np.errstate(invalid="ignore", over="ignore"):
        scores = column_sqnorms[None, :] - factor * products.astype(np.float64)
    bad = ~np.isfinite(scores)
    scores[bad] = -np.inf
    kept = np.sort(scores, axis=1)[:, :capacity]
    largest = scores.max(axis=1)
    largest[bad.any(axis=1)] = np.inf
    return kept, largest


def blocked_products(queries32: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Twin of ``screen_blocked``'s float32 products: each summed over the coordinates in order,
    one float32 multiply and one float32 add per coordinate (bitwise the kernel's)."""
    queries32 = np.asarray(queries32, dtype=np.float32)
    vectors = np.asarray(vectors, dtype=np.float32)
    total = np.zeros((len(queries32), len(vectors)), dtype=np.float32)
    for t in range(vectors.shape[1]):
        total = total + queries32[:, t : t + 1] * vectors[None, :, t]
    return total


def refine_rows(queries, vectors, candidate_ids, self_ids, k):
    """Twin of ``refine_rows`` without certification: exact order among the candidates."""
    out_ids = np.empty((len(queries), k), dtype=np.int64)
    out_sq = np.empty((len(queries), k))
    for i, (query, candidates) in enumerate(zip(queries, candidate_ids, strict=True)):
        candidates = candidates[candidates >= 0]
        sq = squared_distances(query[None, :], vectors[candidates])[0]
        is_other = candidates != self_ids[i]
        order = np.lexsort((candidates, sq, is_other))[:k]
        out_ids[i], out_sq[i] = candidates[order], sq[order]
    return out_ids, out_sq


def blocked_table(vectors: np.ndarray, k: int, block: int = 1000):
    """Exact table for a larger space (e.g. 20k GloVe words) without a (V, V) matrix: float64
    expansion to shortlist the k + 16 closest (far beyond its 1e-9 error), then explicit
    differences and a lexsort on the shortlist."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.einsum("ij,ij->i", array, array)
    ids = np.empty((len(array), k), dtype=np.int64)
    distances = np.empty((len(array), k))
    for start in range(0, len(array), block):
        rows = array[start : start + block]
        approx = norms[start : start + block, None] + norms[None, :] - 2.0 * rows @ array.T
        shortlist = np.argpartition(approx, k + 16, axis=1)[:, : k + 16]
        self_ids = np.arange(start, start + len(rows))
        ids[start : start + block], sq = refine_rows(rows, array, shortlist, self_ids, k)
        distances[start : start + block] = np.sqrt(sq)
    return ids, distances


def farthest_distances(vectors: np.ndarray, word_ids) -> np.ndarray:
    """Twin of ``farthest_distances``: brute force over all words in float64, same shape as
    ``word_ids``. Squares are summed coordinate by coordinate, in the kernel's order, so the
    results agree to the last bit."""
    array = np.asarray(vectors, dtype=np.float64)
    ids = np.asarray(word_ids, dtype=np.int64)
    out = np.empty(ids.shape)
    for position, word in np.ndenumerate(ids):
        total = np.zeros(len(array))
        for t in range(array.shape[1]):
            total += (array[word, t] - array[:, t]) ** 2
        out[position] = np.sqrt(total.max())
    return out
