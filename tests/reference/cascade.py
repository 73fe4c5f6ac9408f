"""Pure-numpy twin of the cascade kernel ``densitydp.mechanisms._cascade._search``.

No pruning at all: every word's full float64 squared distance (summed coordinate by coordinate in
the kernel's order, so the values are bitwise the kernel's), the best word (ties to the smaller
index), and how many words lie within the kernel's margin of it.
"""

from __future__ import annotations

import numpy as np

from densitydp.mechanisms import _cascade


def words_of(cascade: _cascade.Cascade) -> np.ndarray:
    """The rotated float32 words, (n_unique, padded dim), unpacked from the blocks."""
    blocks = cascade.blocks
    rows = blocks.transpose(0, 2, 1).reshape(-1, blocks.shape[1])
    return rows[: len(cascade.representatives)]


def threshold(best_squared: float, slack: float, relative: float) -> float:
    bound = np.sqrt(best_squared) * (1.0 + 4.0 * relative) + 2.0 * slack
    return float(bound * bound * (1.0 + 2.0**-40))


def full_squared(query: np.ndarray, words64: np.ndarray) -> np.ndarray:
    """Every word's float64 squared distance to ``query``, summed coordinate by coordinate in
    the kernel's order."""
    total = np.zeros(len(words64))
    for t in range(len(query)):
        diff = query[t] - words64[:, t]
        total += diff * diff
    return total


def search(queries: np.ndarray, slack: np.ndarray, words: np.ndarray, relative: float):
    """``(best, status)`` as the kernel returns them (status -1 when more than the kernel's
    candidate capacity are within the margin)."""
    best = np.empty(len(queries), dtype=np.int64)
    status = np.empty(len(queries), dtype=np.int64)
    words64 = words.astype(np.float64)
    for i, query in enumerate(queries):
        total = full_squared(query, words64)
        winner = int(np.argmin(total))  # the first of equal minima: the smaller index
        best[i] = winner
        within = int(np.sum(total <= threshold(total[winner], slack[i], relative)))
        status[i] = within if within <= _cascade._CANDIDATES else -1
    return best, status
