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
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import platformdirs
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import _kernels
from ._io import atomic_write
from ._validation import check_word_ids

__all__ = ["DEFAULT_K", "CacheWarning", "NeighborTable", "cache_dir"]

#: Table width built when ``min_distance`` / ``max_distance`` need the all-pairs pass.
DEFAULT_K = 64
#: Bumped whenever the algorithm or the cache format changes; old cache files are then ignored.
_FORMAT_VERSION = 1
#: Rows of queries per task and columns of the space per BLAS tile (tile: 512 x 4096 float32,
#: 8 MB, stays in cache between the product and the screen).
_ROW_BLOCK = 512
_COLUMN_BLOCK = 4096
#: Unit round-off of float32, and the safety factor of the error bound (see ``_error_bounds``).
_FLOAT32_ROUNDOFF = 2.0**-24
#: Largest absolute error of one float32 rounding below the normal range (half the smallest
#: subnormal).
_FLOAT32_UNDERFLOW = 2.0**-150
_SAFETY = 2.0


class CacheWarning(UserWarning):
    """A cache file was unreadable or corrupt and has been rebuilt."""


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


# ----------------------------------------------------------------------------- exact search


def _sqnorms(array: np.ndarray) -> np.ndarray:
    """Row squared norms in float64 (each float32 product is exact in float64)."""
    out = np.empty(array.shape[0], dtype=np.float64)
    for start in range(0, array.shape[0], 65536):
        block = array[start : start + 65536].astype(np.float64)
        out[start : start + 65536] = np.einsum("ij,ij->i", block, block)
    return out


def _screen_scale(max_norm: float) -> tuple[float, float]:
    """``(query_scale, factor)``: the screen multiplies each query by ``query_scale`` before
    rounding it to float32 and scores ``||y||^2 - factor * fl32(q' . y)``.

    Both are powers of two, ``factor = 2 / query_scale``, so the scaling itself is exact. With
    ``max_norm = m 2^e`` (``0.5 <= m < 1``), ``query_scale = 2^(-2e)`` puts the products of a query
    near the space at magnitude about 1 whatever the space's scale: no float32 overflow for
    vectors up to 1e30 and no underflow for vectors down to 1e-30 (vectors of norm 1e-25 made
    every product subnormal, and 1e19 overflowed).
    """
    if not max_norm > 0.0:
        return 0.5, 4.0  # all vectors are zero: any scale
    exponent = math.frexp(max_norm)[1]
    return math.ldexp(1.0, -2 * exponent), math.ldexp(2.0, 2 * exponent)


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
    progress: bool | None = None,
    desc: str = "exact k-NN",
) -> _SearchResult:
    """Exact ``k`` nearest rows of ``vectors`` for each row of ``queries``.

    ``queries`` float64 C-contiguous (n, d); ``vectors`` float32 C-contiguous (V, d); validated
    by the caller. ``self_ids`` (int64, -1 for none) forces each query's own word to rank 0.
    ``column_sqnorms`` are ``_sqnorms(vectors)`` when the caller keeps them. Blocks of
    ``_ROW_BLOCK`` queries run on ``numba.get_num_threads()`` Python threads, each with
    single-threaded BLAS.
    """
    n_queries, dim = queries.shape
    n_words = vectors.shape[0]
    capacity = min(n_words, k + max(8, k // 4))
    if column_sqnorms is None:
        column_sqnorms = _sqnorms(vectors)
    max_norm = math.sqrt(float(column_sqnorms.max()))
    query_scale, factor = _screen_scale(max_norm)
    if self_ids is None:
        self_ids = np.full(n_queries, -1, dtype=np.int64)
    ids = np.empty((n_queries, k), dtype=np.int64)
    sqdist = np.empty((n_queries, k), dtype=np.float64)
    row_max = np.empty(n_queries, dtype=np.float64)
    row_error = np.empty(n_queries, dtype=np.float64)
    certified = np.empty(n_queries, dtype=np.bool_)

    def search_block(start: int) -> int:
        stop = min(start + _ROW_BLOCK, n_queries)
        block = queries[start:stop]
        with np.errstate(over="ignore"):  # beyond float32: inf products, never certified
            block32 = (block * query_scale).astype(np.float32)
        rows = stop - start
        heap_scores = np.full((rows, capacity), np.inf)
        heap_ids = np.full((rows, capacity), -1, dtype=np.int64)
        largest = np.full(rows, -np.inf)
        products = np.empty((rows, _COLUMN_BLOCK), dtype=np.float32)
        for column in range(0, n_words, _COLUMN_BLOCK):
            columns = vectors[column : column + _COLUMN_BLOCK]
            tile = products if len(columns) == _COLUMN_BLOCK else products[:, : len(columns)]
            with np.errstate(over="ignore", invalid="ignore"):
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
    with (
        _progress(n_queries, desc, progress) as bar,
        threadpool_limits(limits=1, user_api="blas"),
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
        progress=progress,
        desc=f"exact {k}-NN rows",
    )
    return NeighborTable(
        ids=result.ids.astype(np.int32),
        distances=np.sqrt(result.sqdist).astype(np.float32),
        word_ids=word_ids,
        n_exact_fallback=result.n_exact_fallback,
    )


def nearest_ids(
    points: np.ndarray,
    vectors: np.ndarray,
    *,
    column_sqnorms: np.ndarray | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Exact nearest word id of each point (ties by smallest id)."""
    result = exact_search(
        points, vectors, 1, column_sqnorms=column_sqnorms, progress=progress, desc="nearest word"
    )
    return result.ids[:, 0]


# ----------------------------------------------------------------------------- disk cache


def fingerprint(vectors: np.ndarray) -> str:
    """sha256 of the float32 C-contiguous vectors, their shape and the format version."""
    digest = hashlib.sha256(f"densitydp-neighbors-v{_FORMAT_VERSION}:{vectors.shape}".encode())
    digest.update(memoryview(np.ascontiguousarray(vectors, dtype=np.float32)).cast("B"))
    return digest.hexdigest()


def _checksum(ids: np.ndarray, distances: np.ndarray) -> str:
    digest = hashlib.sha256(memoryview(np.ascontiguousarray(ids)).cast("B"))
    digest.update(memoryview(np.ascontiguousarray(distances)).cast("B"))
    return digest.hexdigest()


def _table_path(key: str, k: int) -> Path:
    return cache_dir() / f"neighbors-{key[:24]}-k{k}.npz"


def _cached_widths(key: str) -> list[int]:
    folder = cache_dir()
    if not folder.is_dir():
        return []
    prefix = f"neighbors-{key[:24]}-k"
    widths = []
    for path in folder.glob(f"{prefix}*.npz"):
        suffix = path.name[len(prefix) : -len(".npz")]
        if suffix.isdigit():
            widths.append(int(suffix))
    return sorted(widths)


def _read_meta(archive: Any) -> dict[str, Any]:
    return json.loads(bytes(archive["meta"]).decode("utf-8"))


def _load(path: Path, key: str, n_words: int, *, meta_only: bool = False) -> Any:
    """Load and verify one cache file; None (and a CacheWarning, file removed) if it is bad."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = _read_meta(archive)
            if meta.get("fingerprint") != key or meta.get("n_words") != n_words:
                raise ValueError("fingerprint does not match the vectors")
            if meta_only:
                return meta
            ids, distances = archive["ids"], archive["distances"]
        if ids.shape != (n_words, meta["k"]) or distances.shape != ids.shape:
            raise ValueError(f"array shape {ids.shape} does not match the metadata")
        if _checksum(ids, distances) != meta["checksum"]:
            raise ValueError("checksum mismatch")
    except Exception as exc:  # any unreadable file is rebuilt, never trusted
        warnings.warn(
            f"ignoring corrupt neighbour cache {path} ({exc}); it will be rebuilt.",
            CacheWarning,
            stacklevel=3,
        )
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return NeighborTable(
        ids=ids,
        distances=distances,
        min_distance=meta["min_distance"],
        max_distance=meta["max_distance"],
        n_exact_fallback=meta["n_exact_fallback"],
    )


def _save(table: NeighborTable, key: str) -> Path:
    """Write ``table`` atomically (temporary file + rename) into the cache folder."""
    path = _table_path(key, table.k)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "fingerprint": key,
        "n_words": len(table),
        "k": table.k,
        "min_distance": table.min_distance,
        "max_distance": table.max_distance,
        "n_exact_fallback": table.n_exact_fallback,
        "checksum": _checksum(table.ids, table.distances),
        "format_version": _FORMAT_VERSION,
    }
    payload = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path) as stream:
        np.savez(stream, ids=table.ids, distances=table.distances, meta=payload)
    return path


def cached_table(
    vectors: np.ndarray, key: str, k: int, *, cache: bool = True, progress: bool | None = None
) -> NeighborTable:
    """The full table of width ``k``: from the cache (any cached width >= k is sliced, since a
    prefix of an exact table is the exact narrower table), else built and cached."""
    n_words = len(vectors)
    if cache:
        for width in _cached_widths(key):
            if width >= k:
                table = _load(_table_path(key, width), key, n_words)
                if table is not None:
                    return table.narrow(k)
    table = build_table(vectors, max(k, 2), progress=progress)
    if cache:
        _save(table, key)
    return table.narrow(k)


def cached_extremes(vectors: np.ndarray, key: str) -> tuple[float, float] | None:
    """``(min_distance, max_distance)`` from any cached full table of these vectors, or None."""
    for width in _cached_widths(key):
        meta = _load(_table_path(key, width), key, len(vectors), meta_only=True)
        if meta is not None:
            return float(meta["min_distance"]), float(meta["max_distance"])
    return None
