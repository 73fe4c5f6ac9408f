"""Exact nearest neighbours in an embedding space: tables, batched search, cached on disk.

Everything here is exact. Candidates are screened with float32 BLAS products and then re-ranked
with float64 distances; a row is accepted only when a rigorous bound on the float32 error proves
that no screened-out word can enter its top-k, and rows that cannot be certified are recomputed by
a full float64 scan (see :mod:`densitydp._kernels`). Distances are true Euclidean distances, not
squared ones. Ties are broken by word id; in a table the query's own word is always rank 0.

One blocked pass over all pairs gives the k-NN table, the smallest distance between two distinct
words and the diameter of the space together; the result is cached on disk, keyed by a hash of the
vectors and ``k``, in ``$DENSITYDP_CACHE`` (default: the user cache directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import stat
import tempfile
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import platformdirs
from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm

from . import _kernels
from ._validation import check_word_ids

__all__ = ["DEFAULT_K", "CacheWarning", "NeighborTable", "cache_dir"]

#: Table width built when ``min_distance`` / ``max_distance`` need the all-pairs pass.
DEFAULT_K = 64
#: Bumped whenever the algorithm or the cache format changes; old cache files are then ignored.
_FORMAT_VERSION = 2
#: Rows of queries per task and columns of the space per BLAS tile (tile: 512 x 4096 float32,
#: 8 MB, stays in cache between the product and the screen).
_ROW_BLOCK = 512
_COLUMN_BLOCK = 4096
#: Below this many queries a block is screened by ``screen_blocked`` when the caller gives the
#: blocked words, else by a words x queries BLAS product.
SCREEN_ROWS = 16
#: Unit round-off of float32, and the safety factor of the error bound (see ``_error_bounds``).
_FLOAT32_ROUNDOFF = 2.0**-24
#: Largest absolute error of one float32 rounding below the normal range (half the smallest
#: subnormal).
_FLOAT32_UNDERFLOW = 2.0**-150
_SAFETY = 2.0


class CacheWarning(UserWarning):
    """The neighbour cache was not used: a cache file failed validation (it is rebuilt), or the
    cache folder is unsafe or unwritable (the table is computed and returned, not cached)."""


def cache_dir() -> Path:
    """The cache folder: ``$DENSITYDP_CACHE`` if set, else the user cache dir of densitydp."""
    configured = os.environ.get("DENSITYDP_CACHE")
    return Path(configured) if configured else Path(platformdirs.user_cache_dir("densitydp"))


@dataclass(frozen=True, repr=False, eq=False)
class NeighborTable:
    """The exact ``k`` nearest neighbours of a set of words.

    Attributes
    ----------
    ids : ndarray of int32, shape (n_rows, k)
        Neighbour word ids; column 0 is the word itself, then by increasing distance, ties by id.
    distances : ndarray of float32, shape (n_rows, k)
        Euclidean distances (not squared) matching ``ids``, computed in float64.
    word_ids : ndarray of int64 or None
        The word of each row; None for a full table, whose row ``i`` belongs to word ``i``.
    min_distance, max_distance : float or None
        For a full table: the smallest distance between two distinct words and the diameter of
        the space (both exact). None for a partial table.
    n_exact_fallback : int
        Rows the float32 screen could not certify and that were recomputed by a full scan.
    """

    ids: np.ndarray
    distances: np.ndarray
    word_ids: np.ndarray | None = None
    min_distance: float | None = None
    max_distance: float | None = None
    n_exact_fallback: int = 0
    _row_of: dict[int, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.ids.ndim != 2 or self.distances.shape != self.ids.shape:
            raise ValueError(
                f"`ids` and `distances` must be (n_rows, k) arrays; got {self.ids.shape}."
            )
        if self.word_ids is None and self.ids.size:
            # a full table: kernels index the vectors with these ids, so they must be in range
            if self.ids.min() < 0 or self.ids.max() >= len(self.ids):
                raise ValueError("a full table's neighbour ids must lie in [0, n_rows).")
            if not np.array_equal(self.ids[:, 0], np.arange(len(self.ids))):
                raise ValueError("a full table's row i must start with word i.")
        for array in (self.ids, self.distances, self.word_ids):
            if array is not None:
                array.setflags(write=False)
        if self.word_ids is not None:
            self._row_of.update((int(w), r) for r, w in enumerate(self.word_ids))

    @property
    def k(self) -> int:
        """Neighbours per row, the word itself included."""
        return int(self.ids.shape[1])

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        kind = "full" if self.word_ids is None else "partial"
        extra = ""
        if self.min_distance is not None:
            extra = f", min_distance={self.min_distance:.6g}, max_distance={self.max_distance:.6g}"
        return f"NeighborTable({kind}, n_rows={len(self)}, k={self.k}{extra})"

    def rows(self, word_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(ids, distances)`` rows of the given words, shape ``(len(word_ids), k)``."""
        if self.word_ids is None:
            positions = check_word_ids(word_ids, len(self))
        else:
            wanted = np.atleast_1d(np.asarray(word_ids, dtype=np.int64))
            missing = [int(w) for w in wanted if int(w) not in self._row_of]
            if missing:
                raise KeyError(f"word id {missing[0]} has no row in this partial table.")
            positions = np.array([self._row_of[int(w)] for w in wanted], dtype=np.int64)
        return self.ids[positions], self.distances[positions]

    def narrow(self, k: int) -> NeighborTable:
        """The first ``k`` columns: the exact ``k``-NN table (ranks do not depend on width)."""
        if not 1 <= k <= self.k:
            raise ValueError(f"`k` must be an int in [1, {self.k}]; got {k}.")
        if k == self.k:
            return self
        return NeighborTable(
            ids=np.ascontiguousarray(self.ids[:, :k]),
            distances=np.ascontiguousarray(self.distances[:, :k]),
            word_ids=self.word_ids,
            min_distance=self.min_distance,
            max_distance=self.max_distance,
            n_exact_fallback=self.n_exact_fallback,
        )

    def merge(self, other: NeighborTable) -> NeighborTable:
        """A partial table holding the rows of both partial tables (same width, rows by id)."""
        if self.word_ids is None or other.word_ids is None or self.k != other.k:
            raise ValueError("only partial tables of the same width can be merged.")
        word_ids = np.concatenate([self.word_ids, other.word_ids])
        order = np.argsort(word_ids, kind="stable")
        return NeighborTable(
            ids=np.concatenate([self.ids, other.ids])[order],
            distances=np.concatenate([self.distances, other.distances])[order],
            word_ids=word_ids[order],
            n_exact_fallback=self.n_exact_fallback + other.n_exact_fallback,
        )

    def kth_distance(self, k: int | None = None) -> np.ndarray:
        """Distance from each row's word to its ``k``-th neighbour (default: the last column).

        ``k`` counts neighbours other than the word itself, so it is in ``[1, self.k - 1]``. A
        small value means a dense neighbourhood: this is the usual k-NN local density radius.
        """
        column = self.k - 1 if k is None else int(k)
        if not 1 <= column < self.k:
            raise ValueError(f"`k` must be an int in [1, {self.k - 1}]; got {k}.")
        return self.distances[:, column]


class RowStore:
    """Rows of some words of a space at one ``width``: int32 ids and distances (``dtype``),
    appended as words are first stored; ``slots[word]`` is the row of ``word`` (-1: none).

    The buffers grow geometrically: adding ``n`` rows costs ``O(n width)`` amortised and a
    look-up ``O(rows asked)``, whatever the number of rows kept (merging immutable tables copied
    the whole store on each call: a loop of small calls was quadratic). Used for the lazy
    neighbour rows of :meth:`densitydp.EmbeddingSpace.neighbors` and the mechanisms' row caches.
    """

    def __init__(self, n_words: int, width: int, dtype: Any = np.float32) -> None:
        self.width = width
        self.slots = np.full(n_words, -1, dtype=np.int64)
        self.ids = np.empty((0, width), dtype=np.int32)
        self.distances = np.empty((0, width), dtype=dtype)
        self.size = 0

    @property
    def word_ids(self) -> np.ndarray:
        """The words that have a row, sorted."""
        return np.flatnonzero(self.slots >= 0)

    def missing(self, word_ids: np.ndarray) -> np.ndarray:
        """Those of ``word_ids`` without a row."""
        return word_ids[self.slots[word_ids] < 0]

    def add(self, words: np.ndarray, ids: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """Store the rows of ``words`` (distinct, without a row yet); return their slots."""
        stop = self.size + len(words)
        if stop > len(self.ids):
            capacity = max(stop, 2 * len(self.ids), 256)
            for name in ("ids", "distances"):
                old = getattr(self, name)
                grown = np.empty((capacity, self.width), dtype=old.dtype)
                grown[: self.size] = old[: self.size]
                setattr(self, name, grown)
        self.ids[self.size : stop] = ids
        self.distances[self.size : stop] = distances
        slots = np.arange(self.size, stop, dtype=np.int64)
        self.slots[words] = slots
        self.size = stop
        return slots

    def rows(self, word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, distances)`` of words that have a row (fresh arrays)."""
        positions = self.slots[word_ids]
        if positions.size and positions.min() < 0:
            missing = int(word_ids[np.argmax(positions < 0)])
            raise KeyError(f"word id {missing} has no row yet.")
        return self.ids[positions], self.distances[positions]


# ----------------------------------------------------------------------------- exact search


def _sqnorms(array: np.ndarray) -> np.ndarray:
    """Row squared norms in float64 (each float32 product is exact in float64)."""
    out = np.empty(array.shape[0], dtype=np.float64)
    for start in range(0, array.shape[0], 65536):
        block = array[start : start + 65536].astype(np.float64)
        out[start : start + 65536] = np.einsum("ij,ij->i", block, block)
    return out


def _screen_factor(max_norm: float) -> float:
    """``factor``: the screen multiplies each query by ``2 / factor`` before rounding it to
    float32 and scores ``||y||^2 - factor * fl32(q' . y)``.

    A power of two, so the scaling itself is exact. With ``max_norm = m 2^e``
    (``0.5 <= m < 1``), the query scale ``2 / factor = 2^(-2e)`` puts the products of a query
    near the space at magnitude about 1 whatever the space's scale: no float32 overflow for
    vectors up to 1e30 and no underflow for vectors down to 1e-30 (vectors of norm 1e-25 made
    every product subnormal, and 1e19 overflowed).
    """
    if not max_norm > 0.0:
        return 4.0  # all vectors are zero: any scale
    return math.ldexp(2.0, 2 * math.frexp(max_norm)[1])


def _error_bounds(
    query_sqnorms: np.ndarray, max_norm: float, dim: int, factor: float
) -> np.ndarray:
    """Bound on |approximate score - exact score| for each query row.

    The screen computes ``||y||^2 - factor fl32(fl32(q') . y)`` with ``q' = 2 q / factor``.
    Rounding ``q'`` to float32 and any float32 dot product of length ``dim`` (any summation
    order, with or without FMA) err by at most ``(dim + 2) u ||q'|| ||y||`` relative terms with
    ``u = 2**-24`` (Higham, Accuracy and Stability, 3.1) plus, where values fall below the
    float32 normal range, an absolute ``eta = 2**-150`` per rounded entry and per product
    (additions of subnormals are exact): ``eta (sqrt(dim) ||y|| + dim)``. Times ``factor``, the
    relative term is ``2 (dim + 2) u ||q|| ||y||``. A further factor ``_SAFETY`` covers the
    lower-order terms.
    """
    relative = 2.0 * (dim + 2) * _FLOAT32_ROUNDOFF * np.sqrt(query_sqnorms) * max_norm
    underflow = factor * _FLOAT32_UNDERFLOW * (math.sqrt(dim) * max_norm + dim)
    return _SAFETY * (relative + underflow)


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict[str, Any] = {"users": 0, "limiter": None, "controller": None}


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run BLAS on one thread inside the block (the package's searches run their own threads or
    are too small to share: a few-query product on two BLAS threads took 10x longer whenever the
    other core was busy). Re-entrant and thread-safe: the first block entered sets the limit,
    the last one left restores the previous setting. It limits the BLAS libraries loaded when
    it was first used (numpy's, which the searches call). Only the main thread changes the setting
    (OpenBLAS ignores a change made from another thread, and restoring from one can leave the
    process at one thread); elsewhere the block changes nothing. The BLAS libraries are found
    once (``threadpoolctl.ThreadpoolController``: 9 us per block instead of 175 us)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            if _BLAS_STATE["controller"] is None:
                _BLAS_STATE["controller"] = ThreadpoolController()
            _BLAS_STATE["limiter"] = _BLAS_STATE["controller"].limit(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None


def _progress(total: int, desc: str, progress: bool | None) -> tqdm:
    # None: let tqdm decide (shown on a terminal, hidden in logs); True / False force it.
    disable = None if progress is None else not progress
    return tqdm(total=total, desc=desc, unit="word", disable=disable, leave=False)


@dataclass
class _SearchResult:
    ids: np.ndarray  # (n, k) int64
    sqdist: np.ndarray  # (n, k) float64, exact
    row_max: np.ndarray  # (n,) approximate largest squared distance of each row
    row_error: np.ndarray  # (n,) bound on the error of row_max
    n_exact_fallback: int


def exact_search(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    *,
    self_ids: np.ndarray | None = None,
    column_sqnorms: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    progress: bool | None = None,
    desc: str = "exact k-NN",
) -> _SearchResult:
    """Exact ``k`` nearest rows of ``vectors`` for each row of ``queries``.

    ``queries`` float64 C-contiguous (n, d); ``vectors`` float32 C-contiguous (V, d); validated
    by the caller. ``self_ids`` (int64, -1 for none) forces each query's own word to rank 0.
    ``column_sqnorms`` are ``_sqnorms(vectors)`` when the caller keeps them, ``blocks``
    :func:`screen_blocks` of ``vectors`` (a search of fewer than ``SCREEN_ROWS`` queries then
    screens with :func:`densitydp._kernels.screen_blocked` instead of BLAS). Blocks of
    ``_ROW_BLOCK`` queries run on ``numba.get_num_threads()`` Python threads, each with
    single-threaded BLAS.
    """
    n_queries, dim = queries.shape
    n_words = vectors.shape[0]
    capacity = min(n_words, k + max(8, k // 4))
    if column_sqnorms is None:
        column_sqnorms = _sqnorms(vectors)
    max_norm = math.sqrt(float(column_sqnorms.max()))
    factor = _screen_factor(max_norm)
    if self_ids is None:
        self_ids = np.full(n_queries, -1, dtype=np.int64)
    ids = np.empty((n_queries, k), dtype=np.int64)
    sqdist = np.empty((n_queries, k), dtype=np.float64)
    row_max = np.empty(n_queries, dtype=np.float64)
    row_error = np.empty(n_queries, dtype=np.float64)
    certified = np.empty(n_queries, dtype=np.bool_)

    def screen(
        block32: np.ndarray, heap_scores: np.ndarray, heap_ids: np.ndarray, largest: np.ndarray
    ) -> None:
        """The BLAS screen of a block of queries, a column block at a time; a few queries as
        words x queries (a tall product: 14-32 % less time than the wide one for 2 to 16
        queries on 50,000 x 50 words here), read transposed by the kernel."""
        tall = len(block32) < SCREEN_ROWS
        shape = (_COLUMN_BLOCK, len(block32)) if tall else (len(block32), _COLUMN_BLOCK)
        products = np.empty(shape, dtype=np.float32)
        for column in range(0, n_words, _COLUMN_BLOCK):
            columns = vectors[column : column + _COLUMN_BLOCK]
            with np.errstate(over="ignore", invalid="ignore"):
                if tall:
                    tile = products[: len(columns)]
                    np.matmul(columns, block32.T, out=tile)
                    tile = tile.T
                else:
                    tile = products[:, : len(columns)]
                    np.matmul(block32, columns.T, out=tile)
            _kernels.update_topk(
                tile,
                factor,
                column,
                column_sqnorms[column : column + _COLUMN_BLOCK],
                heap_scores,
                heap_ids,
                largest,
            )

    def search_block(start: int) -> int:
        stop = min(start + _ROW_BLOCK, n_queries)
        block = queries[start:stop]
        with np.errstate(over="ignore"):  # beyond float32: inf products, never certified
            block32 = (block * (2.0 / factor)).astype(np.float32)
        rows = stop - start
        heap_scores = np.full((rows, capacity), np.inf)
        heap_ids = np.full((rows, capacity), -1, dtype=np.int64)
        largest = np.full(rows, -np.inf)
        if rows < SCREEN_ROWS and blocks is not None:
            padded = np.zeros((rows, blocks.shape[1]), dtype=np.float32)
            padded[:, :dim] = block32
            _kernels.screen_blocked(
                padded, blocks, n_words, factor, column_sqnorms, heap_scores, heap_ids, largest
            )
        else:
            screen(block32, heap_scores, heap_ids, largest)
        query_sqnorms = _sqnorms(block)
        errors = _error_bounds(query_sqnorms, max_norm, dim, factor)
        _kernels.refine_rows(
            block,
            query_sqnorms,
            vectors,
            heap_scores,
            heap_ids,
            self_ids[start:stop],
            errors,
            k,
            ids[start:stop],
            sqdist[start:stop],
            certified[start:stop],
        )
        row_max[start:stop] = query_sqnorms + largest
        row_error[start:stop] = errors
        return rows

    starts = range(0, n_queries, _ROW_BLOCK)
    workers = max(1, min(numba.get_num_threads(), len(starts)))
    if workers == 1:  # one block (a few new words): inline, no thread pool
        with _progress(n_queries, desc, progress) as bar, one_blas_thread():
            for start in starts:
                bar.update(search_block(start))
    else:
        with (
            _progress(n_queries, desc, progress) as bar,
            one_blas_thread(),
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            for rows in pool.map(search_block, starts):
                bar.update(rows)

    failed = np.flatnonzero(~certified)
    if failed.size:
        fixed_ids = np.empty((failed.size, k), dtype=np.int64)
        fixed_sq = np.empty((failed.size, k), dtype=np.float64)
        _kernels.exact_rows(
            np.ascontiguousarray(queries[failed]),
            vectors,
            self_ids[failed],
            k,
            fixed_ids,
            fixed_sq,
            np.empty(failed.size),
        )
        ids[failed] = fixed_ids
        sqdist[failed] = fixed_sq
    return _SearchResult(ids, sqdist, row_max, row_error, int(failed.size))


def screen_blocks(vectors: np.ndarray, width: int = 256) -> np.ndarray:
    """The words of ``vectors`` (float32, (V, d)) for :func:`densitydp._kernels.screen_blocked`:
    (ceil(V / width), d', width) float32, coordinate-major per block of ``width`` words, the
    coordinates padded with zeros to a multiple of ``SCREEN_STEP`` (4 bytes per word and
    coordinate: 10 MB for 50,000 50-d words)."""
    n_words, dim = vectors.shape
    step = _kernels.SCREEN_STEP
    padded_dim = -(-dim // step) * step
    n_blocks = -(-n_words // width)
    padded = np.zeros((n_blocks * width, padded_dim), dtype=np.float32)
    padded[:n_words, :dim] = vectors
    return np.ascontiguousarray(padded.reshape(n_blocks, width, padded_dim).transpose(0, 2, 1))


def exact_diameter(vectors: np.ndarray, row_max: np.ndarray, row_error: np.ndarray) -> float:
    """Exact largest distance, given every row's approximate largest squared distance.

    Row ``r*`` with the largest approximate value ``A*`` holds a pair whose exact squared distance
    is at least ``A* - e*``; a row with ``A_r + e_r < A* - e*`` cannot hold the diameter. Only the
    remaining rows (usually a handful) are rescanned exactly in float64.
    """
    best = int(np.argmax(row_max))
    floor = row_max[best] - row_error[best]
    rows = np.flatnonzero(row_max + row_error >= floor)
    largest = np.empty(rows.size)
    _kernels.exact_rows(
        np.ascontiguousarray(vectors[rows], dtype=np.float64),
        vectors,
        np.full(rows.size, -1, dtype=np.int64),
        0,
        np.empty((rows.size, 0), dtype=np.int64),
        np.empty((rows.size, 0)),
        largest,
    )
    return math.sqrt(float(largest.max()))


def build_table(vectors: np.ndarray, k: int, *, progress: bool | None = None) -> NeighborTable:
    """The full exact table of width ``k`` (>= 2) with the min and max distances."""
    result = exact_search(
        vectors.astype(np.float64),
        vectors,
        k,
        self_ids=np.arange(len(vectors), dtype=np.int64),
        progress=progress,
        desc=f"exact {k}-NN table",
    )
    return NeighborTable(
        ids=result.ids.astype(np.int32),
        distances=np.sqrt(result.sqdist).astype(np.float32),
        min_distance=math.sqrt(float(result.sqdist[:, 1].min())),
        max_distance=exact_diameter(vectors, result.row_max, result.row_error),
        n_exact_fallback=result.n_exact_fallback,
    )


def partial_table(
    vectors: np.ndarray,
    word_ids: np.ndarray,
    k: int,
    *,
    column_sqnorms: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    progress: bool | None = None,
) -> NeighborTable:
    """Exact neighbour rows for ``word_ids`` only (the lazy mode: no all-pairs pass)."""
    word_ids = np.unique(word_ids)
    result = exact_search(
        vectors[word_ids].astype(np.float64),
        vectors,
        k,
        self_ids=word_ids,
        column_sqnorms=column_sqnorms,
        blocks=blocks,
        progress=progress,
        desc=f"exact {k}-NN rows",
    )
    return NeighborTable(
        ids=result.ids.astype(np.int32),
        distances=np.sqrt(result.sqdist).astype(np.float32),
        word_ids=word_ids,
        n_exact_fallback=result.n_exact_fallback,
    )


#: A query farther than ``2**_FAR_EXPONENT`` times the largest vector norm (or from an all-zero
#: space) is answered by :func:`_far_nearest`: there the float64 distances of the search lose
#: the vectors' digits (``(1e19 - v)**2`` is ``1e38`` for every ``v`` of norm 1: every word
#: ties and id 0 won) or overflow (beyond 1.3e154).
_FAR_EXPONENT = 20
#: Queries and words per block of the far screen's float64 matrix product (16 x 400,000 scores:
#: 51 MB; 16,384 words in float64: 39 MB for dim 300).
_FAR_ROWS = 16
_FAR_COLUMNS = 16_384
_FLOAT64_ROUNDOFF = 2.0**-53
_FLOAT64_UNDERFLOW = 2.0**-1074


def nearest_ids(
    points: np.ndarray,
    vectors: np.ndarray,
    *,
    column_sqnorms: np.ndarray | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Exact nearest word id of each point (ties by smallest id), at every finite magnitude."""
    if column_sqnorms is None:
        column_sqnorms = _sqnorms(vectors)
    ranked, decided = _ranked(points, vectors, column_sqnorms, 1, progress, "nearest word")
    ids = ranked[:, 0].copy()
    rows = np.flatnonzero(~decided)
    if rows.size:
        ids[rows] = _far_nearest(points[rows], vectors, column_sqnorms)
    return ids


def two_nearest_ids(
    points: np.ndarray,
    vectors: np.ndarray,
    *,
    column_sqnorms: np.ndarray | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest and second-nearest word ids of each point (ties by smallest id), at every
    finite magnitude: :func:`nearest_ids`'s rule for both (far points, or distances within
    their float64 rounding of the next one, are decided by :func:`_far_nearest`, the second
    with the first left out). ``vectors`` must hold at least 2 words."""
    if column_sqnorms is None:
        column_sqnorms = _sqnorms(vectors)
    ranked, decided = _ranked(points, vectors, column_sqnorms, 2, progress, "two nearest words")
    first, second = ranked[:, 0].copy(), ranked[:, 1].copy()
    rows = np.flatnonzero(~decided)
    if rows.size:
        chosen = _far_nearest(points[rows], vectors, column_sqnorms)
        first[rows] = chosen
        second[rows] = _far_nearest(points[rows], vectors, column_sqnorms, exclude=chosen)
    return first, second


def _ranked(
    points: np.ndarray,
    vectors: np.ndarray,
    column_sqnorms: np.ndarray,
    ranks: int,
    progress: bool | None,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, decided)``: the first ``ranks`` ids of each point by :func:`exact_search` (one
    more rank when the vocabulary allows, to check the last gap), and whether that decides them:
    not for points farther than ``2**_FAR_EXPONENT`` times the largest vector norm (their
    float64 distances lose the vectors' digits) nor where one of the first ``ranks`` distances
    is within its float64 rounding of the next."""
    max_norm = math.sqrt(float(column_sqnorms.max()))
    with np.errstate(over="ignore"):
        reach = np.abs(points).max(axis=1) if points.size else np.zeros(len(points))
    far = reach > math.ldexp(max(max_norm, math.ldexp(1.0, -1000)), _FAR_EXPONENT)
    ids = np.full((len(points), ranks), -1, dtype=np.int64)
    near = np.flatnonzero(~far)
    if near.size:
        k = min(ranks + 1, vectors.shape[0])
        result = exact_search(
            np.ascontiguousarray(points[near]),
            vectors,
            k,
            column_sqnorms=column_sqnorms,
            progress=progress,
            desc=desc,
        )
        ids[near] = result.ids[:, :ranks]
        dim = vectors.shape[1]
        for rank in range(min(ranks, k - 1)):  # within rounding of the next: decided exactly
            gap = result.sqdist[:, rank + 1] - result.sqdist[:, rank]
            tolerance = 4.0 * (dim + 4) * _FLOAT64_ROUNDOFF * result.sqdist[:, rank + 1]
            far[near[gap <= tolerance + 8.0 * (dim + 2) * _FLOAT64_UNDERFLOW]] = True
    return ids, ~far


def _far_nearest(
    points: np.ndarray,
    vectors: np.ndarray,
    column_sqnorms: np.ndarray,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Exact nearest ids of points far outside the space (``||q|| >> max ||v||``), or whose
    two nearest float64 distances are within their rounding of each other; ``exclude[i]`` (a
    word id) is left out for point ``i``.

    The nearest word minimises ``||v||^2 - 2 q . v`` (``||q - v||^2`` less the common
    ``||q||^2``). Each query is scaled by a power of two (exact) to ``q' = q 2^-e`` with
    ``|q'_i| < 1``, and the float64 score ``2 q' . v - ||v||^2 2^-e`` (to maximise) is
    computed for every word with a bound ``E_v`` on its rounding error (Higham 3.1:
    ``(dim + 4) u (2 ||q'|| ||v|| + ||v||^2 2^-e)`` with ``u = 2^-53``, doubled, plus the
    underflow of products below the normal range). Every word whose score plus ``E_v`` reaches
    the largest score less its bound is a candidate; among them the score is compared
    exactly, in rational arithmetic on the floats' exact values (float32 vectors, float64
    queries), so the answer is the exact nearest word, ties by smallest id.
    """
    n_words, dim = vectors.shape
    word_norms = np.sqrt(column_sqnorms) * (1.0 + 4.0 * dim * _FLOAT64_ROUNDOFF)  # bounds
    ids = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), _FAR_ROWS):
        block = points[start : start + _FAR_ROWS]
        exponents = np.frexp(np.abs(block).max(axis=1))[1].astype(np.int64)
        scaled = np.ldexp(block, -exponents[:, None])  # exact: |q'_i| < 1
        shrink = np.ldexp(1.0, -exponents)  # 2^-e (underflows to 0 far out: within the bound)
        scores = np.empty((len(block), n_words))
        for column in range(0, n_words, _FAR_COLUMNS):  # float64 words, a block at a time
            words = vectors[column : column + _FAR_COLUMNS].astype(np.float64)
            np.matmul(scaled, words.T, out=scores[:, column : column + len(words)])
        scores *= 2.0
        scores -= shrink[:, None] * column_sqnorms[None, :]
        if exclude is not None:
            scores[np.arange(len(block)), exclude[start : start + _FAR_ROWS]] = -np.inf
        norms = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        for row in range(len(block)):
            relative = 2.0 * norms[row] * word_norms + column_sqnorms * shrink[row]
            errors = 2.0 * (dim + 4) * _FLOAT64_ROUNDOFF * relative + 4.0 * (dim + 2) * (
                _FLOAT64_UNDERFLOW
            )
            floor = float((scores[row] - errors).max())  # the best word scores at least this
            candidates = np.flatnonzero(scores[row] + errors >= floor)
            ids[start + row] = (
                int(candidates[0])
                if candidates.size == 1
                else _exact_argmin(block[row], vectors, candidates)
            )
    return ids


def _exact_argmin(query: np.ndarray, vectors: np.ndarray, candidates: np.ndarray) -> int:
    """The candidate minimising ``||v||^2 - 2 q . v`` in exact rational arithmetic (the
    float32 and float64 values are dyadic rationals); ties by smallest id."""
    from fractions import Fraction

    twice = [2 * Fraction(float(value)) for value in query]
    best_id, best = -1, None
    for word in candidates:  # increasing ids: a tie keeps the first
        score = sum(
            (
                Fraction(float(value)) * (Fraction(float(value)) - twice[axis])
                for axis, value in enumerate(vectors[word])
            ),
            Fraction(0),
        )
        if best is None or score < best:
            best_id, best = int(word), score
    return best_id


# ----------------------------------------------------------------------------- disk cache
#
# Threat model (docs/neighbors.md, "Cache and threat model"): only the user may write the cache
# folder; a folder that others can write, or that another user owns, is refused. A file that is
# not a regular file owned by the user, is truncated, foreign or tampered with is detected: every
# id and every distance is checked against the vectors, a fresh OS-random sample of rows is
# recomputed exactly, and the min / max distance are certified exactly from witness pairs. No
# field of a file is used unless it is validated or harmless.

#: Rows recomputed exactly at every load, chosen afresh from OS entropy (a forger cannot know
#: which): a forgery of a fraction ``f`` of the rows escapes with probability below
#: ``(1 - f) ** _VERIFIED_ROWS`` (``exp(-10.2)``, 3.6e-5, for ``f = 1 %``).
_VERIFIED_ROWS = 1024
#: Grid axes of the closest-pair certificate: at least 3, more (up to 6) while the grid spans
#: fewer than 64 cells per word (measured: 3 axes suit all 400,000 GloVe words, min distance
#: 0.0054; 5 the 20,000 most frequent, min distance 0.35, 3x faster there than 3 axes).
_GRID_AXES = (3, 6)
_ARRAYS = ("ids", "distances", "meta")
_STATUS = {
    1: "column 0 is not the row's word",
    2: "neighbour id out of range",
    3: "distances not non-decreasing",
    4: "a distance differs from its pair's exact distance",
    5: "a neighbour id repeated",
    6: "a closer word missing from its neighbour's row",
}
#: Extremes already certified in this process, by fingerprint (they depend only on the vectors).
_CERTIFIED: dict[str, tuple[float, float]] = {}


class _Rejected(ValueError):
    """A cache file that must not be used (the message says why)."""


def fingerprint(vectors: np.ndarray) -> str:
    """sha256 of the float32 C-contiguous vectors, their shape and the format version."""
    digest = hashlib.sha256(f"densitydp-neighbors-v{_FORMAT_VERSION}:{vectors.shape}".encode())
    digest.update(memoryview(np.ascontiguousarray(vectors, dtype=np.float32)).cast("B"))
    return digest.hexdigest()


def _warn(message: str) -> None:
    warnings.warn(message, CacheWarning, stacklevel=4)


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` and every missing parent with mode 0700 (``mkdir(parents=True)`` would
    give the parents 0777 less the umask: with ``DENSITYDP_CACHE=/a/new/b``, ``/a/new`` 0755)."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another process
            candidate.mkdir(mode=0o700)


def _cache_folder(*, create: bool) -> Path | None:
    """The cache folder if it is safe to use, else None (with a CacheWarning unless it simply
    does not exist yet and ``create`` is False).

    Safe: a directory owned by the current user that neither group nor others can write. It is
    created with mode 0700.
    """
    folder = cache_dir()
    try:
        if create:
            _make_private_folder(folder)
        info = folder.stat()
    except FileNotFoundError:
        if create:
            _warn(f"neighbour cache folder {folder} cannot be created; the cache is not used.")
        return None
    except OSError as exc:
        _warn(f"neighbour cache folder {folder} is unusable ({exc}); the cache is not used.")
        return None
    if not stat.S_ISDIR(info.st_mode):
        reason = "is not a directory"
    elif hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        reason = f"is owned by another user (uid {info.st_uid})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        reason = f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    else:
        return folder
    _warn(f"neighbour cache folder {folder} {reason}; the cache is not used.")
    return None


def _table_path(folder: Path, key: str, k: int) -> Path:
    return folder / f"neighbors-{key[:24]}-k{k}.npz"


def _cached_widths(key: str, folder: Path | None = None) -> list[int]:
    if folder is None:
        folder = _cache_folder(create=False)
    if folder is None:
        return []
    prefix = f"neighbors-{key[:24]}-k"
    widths = []
    for path in folder.glob(f"{prefix}*.npz"):
        suffix = path.name[len(prefix) : -len(".npz")]
        if suffix.isdigit() and not suffix.startswith("0"):
            widths.append(int(suffix))
    return sorted(widths)


def _read(
    path: Path, key: str, n_words: int, k: int, *, arrays: bool = True
) -> tuple[dict[str, Any], Any]:
    """Open one cache file safely: a regular file (never a symlink, a directory or a FIFO)
    owned by the user, of a plausible size, holding exactly the expected arrays. Returns the
    metadata and ``(ids, distances)`` (None when ``arrays`` is False)."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise _Rejected("not a regular file (a symlink, directory or device)")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise _Rejected(f"owned by another user (uid {info.st_uid})")
    limit = n_words * k * 8 + (1 << 20)  # the two arrays plus headers and metadata
    if info.st_size > limit:
        raise _Rejected(f"{info.st_size} bytes, more than a table of this size needs")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(path, flags)
    with os.fdopen(descriptor, "rb") as stream:
        opened = os.fstat(stream.fileno())
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise _Rejected("replaced while being opened")
        with np.load(stream, allow_pickle=False) as archive:
            members = {entry.filename: entry.file_size for entry in archive.zip.infolist()}
            if sorted(members) != sorted(f"{name}.npy" for name in _ARRAYS):
                raise _Rejected(f"unexpected members {sorted(members)}")
            if max(members.values()) > limit:
                raise _Rejected("a member larger than a table of this size")
            meta = json.loads(bytes(archive["meta"]).decode("utf-8"))
            if not isinstance(meta, dict):
                raise _Rejected("metadata is not a mapping")
            if meta.get("format_version") != _FORMAT_VERSION:
                raise _Rejected(f"format version {meta.get('format_version')!r}")
            if meta.get("fingerprint") != key or meta.get("n_words") != n_words:
                raise _Rejected("fingerprint does not match the vectors")
            if meta.get("k") != k:
                raise _Rejected(f"width {meta.get('k')!r} does not match the file name (k{k})")
            if not arrays:
                return meta, None
            ids, distances = archive["ids"], archive["distances"]
    return meta, (ids, distances)


def _exact_distance(vectors: np.ndarray, first: int, second: int) -> float:
    """The exact float64 distance of a pair, computed as the search computes it."""
    return math.sqrt(
        float(_kernels.squared_distance(vectors[first].astype(np.float64), vectors[second]))
    )


def _witness(meta: dict[str, Any], name: str, n_words: int) -> tuple[int, int, float]:
    pair = meta.get(f"{name}_pair")
    value = meta.get(name)
    if (
        not isinstance(pair, list)
        or len(pair) != 2
        or not all(type(word) is int and 0 <= word < n_words for word in pair)
        or pair[0] == pair[1]
    ):
        raise _Rejected(f"{name} witness pair {pair!r} is not two distinct word ids")
    if type(value) is not float or not math.isfinite(value):
        raise _Rejected(f"{name} {value!r} is not a finite float")
    return pair[0], pair[1], value


def _closest_pair(vectors: np.ndarray, bound: float) -> tuple[float, int, int]:
    """``(d, a, b)``: the exact smallest distance among the pairs that may be closer than
    ``bound`` (inf, -1, -1 when no pair is). Every pair at distance below ``bound`` differs by
    less than ``bound`` on each coordinate, so it lies in the same or adjacent cells of a grid
    of side ``bound`` over a few coordinates (``_GRID_AXES``); only those pairs are computed.
    Cells are ranked per axis (adjacent cells get adjacent ranks), so the grid is exact whatever the
    coordinates' range; axes whose values are too large against ``bound`` for ``floor`` to be
    exact are skipped (no axis left: every pair is a candidate)."""
    n_words = len(vectors)
    side = bound * (1.0 + 1e-9)  # margin over the rounding of x / side
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        spans = (vectors.max(axis=0).astype(np.float64) - vectors.min(axis=0)) / side
        largest = np.abs(vectors).max(axis=0).astype(np.float64) / side
    usable = np.flatnonzero(np.isfinite(largest) & (largest < 2.0**50))
    axes = usable[np.argsort(-spans[usable], kind="stable")][: _GRID_AXES[1]]
    ranks: list[np.ndarray] = []
    widths: list[int] = []
    packed = 1
    for axis in axes:
        if len(widths) >= _GRID_AXES[0] and packed >= 64 * n_words:
            break
        cells = np.floor(vectors[:, axis].astype(np.float64) / side)
        rank = np.unique(cells, return_inverse=True)[1].astype(np.int64).ravel()
        width = int(rank.max()) + 1
        if packed * width >= 2**62:
            break
        packed *= width
        ranks.append(rank)
        widths.append(width)
    keys = np.zeros(n_words, dtype=np.int64)
    for rank, width in zip(ranks, widths, strict=True):
        keys = keys * width + rank
    order = np.argsort(keys, kind="stable").astype(np.int64)
    cell_keys, cell_starts = np.unique(keys[order], return_index=True)
    cell_starts = np.append(cell_starts, n_words).astype(np.int64)
    cell_ranks = np.empty((len(cell_keys), len(widths)), dtype=np.int64)
    remaining = cell_keys.copy()
    for t in range(len(widths) - 1, -1, -1):
        cell_ranks[:, t] = remaining % widths[t]
        remaining //= widths[t]
    steps = [s for s in itertools.product((-1, 0, 1), repeat=len(widths)) if s >= (0,) * len(s)]
    offsets = np.array(steps, dtype=np.int64).reshape(len(steps), len(widths))
    best = np.empty(len(cell_keys))
    pairs = np.empty((len(cell_keys), 2), dtype=np.int64)
    _kernels.grid_closest_pairs(
        vectors,
        order,
        cell_starts,
        cell_keys,
        cell_ranks,
        np.array(widths, dtype=np.int64),
        offsets,
        best,
        pairs,
    )
    cell = int(np.argmin(best))
    if not np.isfinite(best[cell]):
        return math.inf, -1, -1
    return math.sqrt(float(best[cell])), int(pairs[cell, 0]), int(pairs[cell, 1])


def _farthest_pair(vectors: np.ndarray, bound: float) -> tuple[float, int, int]:
    """``(d, a, b)``: the exact largest distance among the pairs that may be farther than
    ``bound`` (``bound`` a distance achieved by some pair). With ``c`` the centroid and ``r``
    the distances to it, ``d(u, v) <= r_u + max r``: only words with ``r_u + max r >= bound``
    can be in a farther pair, and each one's farthest word is found by the pruned scan of
    :func:`densitydp._kernels.farthest_distances`."""
    dim = vectors.shape[1]
    slack = 1.0 + 4.0 * (dim + 8) * 2.0**-53  # rounding of the radii, as farthest_distance
    centre = vectors.mean(axis=0, dtype=np.float64)
    radii = np.empty(len(vectors))
    _kernels.centre_distances(vectors, centre, radii)
    order = np.argsort(-radii, kind="stable").astype(np.int64)
    sorted_radii = np.ascontiguousarray(radii[order])
    candidates = order[(sorted_radii + sorted_radii[0]) * slack >= bound]
    if candidates.size == 0:
        return -math.inf, -1, -1
    farthest = np.empty(candidates.size)
    farthest_ids = np.empty(candidates.size, dtype=np.int64)
    _kernels.farthest_distances(
        candidates,
        vectors,
        centre,
        order,
        sorted_radii,
        slack,
        farthest,
        farthest_ids,
        np.empty(candidates.size, dtype=np.int64),
    )
    best = int(np.argmax(farthest))
    return float(farthest[best]), int(candidates[best]), int(farthest_ids[best])


def _certify_extremes(vectors: np.ndarray, key: str, meta: dict[str, Any]) -> tuple[float, float]:
    """Check the metadata's min and max distance exactly against the vectors.

    Each value must be the exact distance of its stored witness pair; no pair may be closer than
    the min (grid certificate) and none farther than the max (centroid certificate).
    """
    n_words = len(vectors)
    low_a, low_b, low = _witness(meta, "min_distance", n_words)
    high_a, high_b, high = _witness(meta, "max_distance", n_words)
    if _exact_distance(vectors, low_a, low_b) != low:
        raise _Rejected("min_distance is not the distance of its witness pair")
    if _exact_distance(vectors, high_a, high_b) != high:
        raise _Rejected("max_distance is not the distance of its witness pair")
    if _CERTIFIED.get(key) == (low, high):
        return low, high
    if low > 0.0 and _closest_pair(vectors, low)[0] < low:
        raise _Rejected("a pair is closer than min_distance")
    if _farthest_pair(vectors, high)[0] > high:
        raise _Rejected("a pair is farther than max_distance")
    _CERTIFIED[key] = (low, high)
    return low, high


def _validate(
    vectors: np.ndarray, key: str, meta: dict[str, Any], ids: np.ndarray, distances: np.ndarray
) -> NeighborTable:
    """The table of a cache file once every check passed (see the module's threat model)."""
    n_words = len(vectors)
    k = meta["k"]
    if ids.dtype != np.int32 or distances.dtype != np.float32:
        raise _Rejected(f"array dtypes {ids.dtype} / {distances.dtype}")
    if ids.shape != (n_words, k) or distances.shape != ids.shape or not 2 <= k <= n_words:
        raise _Rejected(f"array shape {ids.shape} does not match the metadata")
    fallback = meta.get("n_exact_fallback")
    if type(fallback) is not int or not 0 <= fallback <= n_words:
        raise _Rejected(f"n_exact_fallback {fallback!r}")
    ids = np.ascontiguousarray(ids)
    distances = np.ascontiguousarray(distances)
    status = np.empty(n_words, dtype=np.int8)
    for check in (
        lambda: _kernels.check_table_rows(ids, distances, vectors, status),
        lambda: _kernels.check_table_symmetry(ids, distances, status),
    ):
        check()
        bad = np.flatnonzero(status)
        if bad.size:
            raise _Rejected(f"row {bad[0]}: {_STATUS.get(int(status[bad[0]]), 'invalid')}")
    # a fresh OS-random sample of rows, recomputed exactly
    sample = np.random.default_rng().choice(n_words, min(n_words, _VERIFIED_ROWS), replace=False)
    if sample.size:
        exact = partial_table(vectors, sample, k, progress=False)
        rows = exact.word_ids
        if not (
            np.array_equal(exact.ids, ids[rows])
            and np.array_equal(exact.distances, distances[rows])
        ):
            raise _Rejected("a sampled row differs from its exact recomputation")
    low, high = _certify_extremes(vectors, key, meta)
    if np.float32(low) != distances[:, 1].min() or np.float32(high) < distances[:, -1].max():
        raise _Rejected("min_distance / max_distance disagree with the table")
    return NeighborTable(
        ids=ids,
        distances=distances,
        min_distance=low,
        max_distance=high,
        n_exact_fallback=fallback,
    )


def _discard(path: Path, reason: str) -> None:
    _warn(f"ignoring corrupt neighbour cache {path} ({reason}); it will be rebuilt.")
    with contextlib.suppress(OSError):
        if not path.is_dir() or path.is_symlink():
            path.unlink()  # a symlink is removed itself, never its target


def _load(path: Path, vectors: np.ndarray, key: str, k: int, *, extremes_only: bool = False) -> Any:
    """A validated table (or its certified ``(min, max)``) from one cache file; None, with a
    CacheWarning and the file removed, if the file fails any check."""
    try:
        meta, tables = _read(path, key, len(vectors), k, arrays=not extremes_only)
        if extremes_only:
            return _certify_extremes(vectors, key, meta)
        return _validate(vectors, key, meta, *tables)
    except Exception as exc:  # any unreadable or invalid file is rebuilt, never trusted
        _discard(path, str(exc) or type(exc).__name__)
        return None


def _witnesses(vectors: np.ndarray, table: NeighborTable) -> tuple[list[int], list[int]]:
    """Pairs at the table's min and max distance (exact), stored so a load can check them."""
    assert table.min_distance is not None and table.max_distance is not None
    rows = np.flatnonzero(table.distances[:, 1] == np.float32(table.min_distance))
    low = next(
        [int(row), int(table.ids[row, 1])]
        for row in rows
        if _exact_distance(vectors, int(row), int(table.ids[row, 1])) == table.min_distance
    )
    value, first, second = _farthest_pair(vectors, table.max_distance)
    if value != table.max_distance:
        raise RuntimeError(f"diameter {value!r} differs from the table's {table.max_distance!r}")
    return low, [first, second]


def _save(table: NeighborTable, vectors: np.ndarray, key: str) -> Path | None:
    """Write ``table`` into the cache folder: a private temporary file (mode 0600) renamed over
    the final name, so a partial file is never visible and a symlink planted at that name is
    replaced, never written through. Any failure warns and returns None."""
    folder = _cache_folder(create=True)
    if folder is None:
        return None
    path = _table_path(folder, key, table.k)
    temporary = None
    try:
        low, high = _witnesses(vectors, table)
        meta = {
            "fingerprint": key,
            "n_words": len(table),
            "k": table.k,
            "min_distance": table.min_distance,
            "max_distance": table.max_distance,
            "min_distance_pair": low,
            "max_distance_pair": high,
            "n_exact_fallback": table.n_exact_fallback,
            "format_version": _FORMAT_VERSION,
        }
        payload = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
        with os.fdopen(descriptor, "wb") as stream:
            np.savez(stream, ids=table.ids, distances=table.distances, meta=payload)
        os.replace(temporary, path)
        temporary = None
    except (OSError, RuntimeError, StopIteration) as exc:
        # the reason without the file name: an OSError's str names the temporary file
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _warn(f"could not save the neighbour cache {path} ({reason}); the table is not cached.")
        return None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    assert table.min_distance is not None and table.max_distance is not None
    _CERTIFIED[key] = (table.min_distance, table.max_distance)
    return path


def cached_table(
    vectors: np.ndarray, key: str, k: int, *, cache: bool = True, progress: bool | None = None
) -> NeighborTable:
    """The full table of width ``k``: from the cache (any cached width >= k is sliced, since a
    prefix of an exact table is the exact narrower table) once validated, else built and
    cached. A cache that cannot be read or written warns (CacheWarning) and is skipped."""
    if cache:
        folder = _cache_folder(create=False)
        for width in _cached_widths(key, folder):
            if width >= k:
                assert folder is not None
                table = _load(_table_path(folder, key, width), vectors, key, width)
                if table is not None:
                    return table.narrow(k)
    table = build_table(vectors, max(k, 2), progress=progress)
    if cache:
        _save(table, vectors, key)
    return table.narrow(k)


def cached_extremes(vectors: np.ndarray, key: str) -> tuple[float, float] | None:
    """``(min_distance, max_distance)`` from a cached full table of these vectors, certified
    exactly against the vectors (the table itself is not read), or None."""
    if key in _CERTIFIED:
        return _CERTIFIED[key]
    folder = _cache_folder(create=False)
    for width in _cached_widths(key, folder):
        assert folder is not None
        found = _load(_table_path(folder, key, width), vectors, key, width, extremes_only=True)
        if found is not None:
            return found
    return None
