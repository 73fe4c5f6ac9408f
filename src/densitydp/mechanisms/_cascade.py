"""Exact nearest-word search by a PCA cascade of partial distances (numba kernel + wrappers).

The words are deduplicated (a repeated vector is never the answer: its smallest id ties it and
wins), centred, scaled by a power of two and rotated onto their principal axes, all in float64,
and kept in float32 in blocks of ``BLOCK`` words, coordinate-major within a block (the
coordinates padded with zeros to a multiple of ``STEP``). A rotation is an isometry, so the
partial squared distance over the first ``m`` rotated coordinates is a lower bound of the full
squared distance. With the best full distance found so far as the upper bound, each query meets
each word block ``STEP`` coordinates at a time (float32, loops of constant length vectorised
over the block) until no word of the block is within reach; the words still within reach after
all coordinates get their full distance in float64.

The words are put into blocks by a principal-axis tree (each group split at its median along
its own first principal axis, until it fits a block), so that a block holds nearby words: the words
within reach of a query fall into fewer blocks (GloVe 50k, Laplace noise, 30 queries, with the
final bound: at epsilon 10 the blocks still scanned after the 2nd / 3rd stage go from 83 % /
50 % in id order to 69 % / 31 %, at epsilon 20 after the 1st from 53 % to 34 %).
Each block keeps the bounding box of its words' first ``STEP`` coordinates; a block whose box is
out of reach is skipped without reading its words (see :func:`_block_survivors` for why this
skips exactly the blocks the first stage would have dropped). The order of the words changes
the time only: ties are never decided by the cascade (below).

Rounding is bounded rigorously. Every computed distance ``D`` (partial or full, float32 or
float64, from the float32 rotated words) satisfies ``d_true >= D (1 - R) - A_q / 2`` and, for a
full distance, ``d_true <= D (1 + R) + A_q / 2``, with ``R = max(RELATIVE, (dim' + 2) 2**-22)``
(``dim'`` the padded dimension; 1.2e-5 for 50-d) and ``A_q = SLACK (||q'|| + Y)``, ``SLACK =
2**-21`` (``q'`` the rotated, scaled query, ``Y`` a bound on the largest rotated word norm,
which lies in [1/2, 1]). The errors covered, when the conditions checked by :func:`build` hold
(dimension <= 1024, rotation orthogonal to ``2**-30``):

* centring, scaling and rotating in float64: at most ``(u + sqrt(dim) gamma_dim)(1 + delta)^2``
  times the centred norms, with ``u = 2**-53``, ``gamma_n = n u / (1 - n u)`` (any summation
  order, BLAS included) and ``delta`` the measured departure of the rotation from orthogonality
  (its singular values lie in ``[1 - delta, 1 + delta]``): below ``2**-38 (||q'|| + Y)``
  absolute and ``2**-30`` relative;
* rounding the rotated words and the query to float32: ``2**-24 (||q'|| + Y) = A_q / 8``, plus
  ``2**-149`` per coordinate below the float32 normal range;
* the float32 sums of ``n <= dim' + 2`` rounded terms: ``gamma_n`` (float32) relative on the
  squared distance, ``R / 8`` on the distance; underflowing squares: ``dim' 2**-149``;
* underflow of the power-of-two-scaled query: absolute ``2**-1074`` per coordinate.

A word is dropped when ``D_v > D_best (1 + 4 R) + 2 A_q`` (compared squared, the threshold
raised by ``2**-40`` for its own rounding and by ``2**-20`` when rounded to float32); then
``d_v - d_best >= D_best (2 R - 4 R^2) + A_q (1 - 2 R) > 0``: the nearest word and every word
tied with it are never dropped. A query is *decided* when exactly one word passes the same test
against the final best; otherwise (an exact or near tie within the margin, or a query farther
than ``2**20`` times the size of the space) the caller runs the exact search of
:meth:`~densitydp.EmbeddingSpace.nearest` for it, which breaks ties by the smaller id.

Queries are processed in tasks of at most ``QUERY_BLOCK`` (fewer when there are few queries, so
that every thread gets some: :func:`task_size`), each query with its own bound, scanning the word
blocks in the same order whatever its task: the result does not depend on the grouping, hence
not on the number of threads.

The pure-numpy twin of the kernel is ``tests/reference/cascade.py``.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import prange

from .._jit import jit, parallel_jit
from ..neighbors import one_blas_thread

__all__ = [
    "BLOCK",
    "QUERY_BLOCK",
    "RELATIVE",
    "SLACK",
    "STEP",
    "Cascade",
    "axis_tree_order",
    "build",
    "for_space",
    "nearest",
    "prepare",
    "search",
    "task_size",
]

#: Words per block (a block of 50-d float32 words is 51 kB: it stays in the L2 cache while a
#: task's queries are compared with it; blocks of 64 measured slower in spite of less work).
BLOCK = 256
#: Largest number of queries per parallel task (they share each word block's loads).
QUERY_BLOCK = 16
#: Coordinates per stage: after each, a block goes on only while one of its words is in reach.
STEP = 10
#: Smallest relative margin, and the factor of the absolute one (see the module docstring).
RELATIVE = 2.0**-19
SLACK = 2.0**-21
#: Candidates kept per query for the final decision; more within the margin: undecided.
_CANDIDATES = 8
#: Largest dimension and departure from orthogonality for which the margin is proven.
_MAX_DIM = 1024
_MAX_DELTA = 2.0**-30
#: Queries with a scaled coordinate beyond this (the largest scaled word norm is in [1/2, 1)) are
#: left to the exact search.
_FAR = 2.0**20
#: A block is skipped when its box's squared gap, times ``_BOX_SHRINK`` less ``_BOX_FLOOR``, is
#: beyond reach (see :func:`_block_survivors`).
_BOX_SHRINK = np.float32(1.0 - 2.0**-18)
_BOX_FLOOR = np.float32(2.0**-120)
#: A block's scan turns sparse once at most ``1 / _SPARSE`` of its words are in reach.
_SPARSE = 64
_THRESHOLD_ROUNDING = 1.0 + 2.0**-40
#: Coordinates of the padding words of the last block: their float32 distances overflow to inf.
_PAD = np.finfo(np.float32).max


class Cascade(NamedTuple):
    """The rotated, deduplicated words of a space (see the module docstring)."""

    mean: np.ndarray  # (dim,) float64, subtracted before scaling
    exponent: int  # the scale is 2**exponent
    rotation: np.ndarray  # (dim, dim) float64, columns the principal axes, largest first
    blocks: np.ndarray  # (n_blocks, dim, BLOCK) float32 rotated words; padding is +max float32
    boxes: np.ndarray  # (n_blocks, 2, STEP) float32: min and max of the first STEP coordinates
    representatives: np.ndarray  # (n_unique,) int64: smallest word id of each distinct vector
    units: np.ndarray  # (V,) int64: the index in ``representatives`` of each word's vector
    largest_norm: float  # Y: bound on the largest rotated word norm
    relative: float  # R: the relative margin (see the module docstring)


def build(vectors: np.ndarray) -> Cascade | None:
    """The cascade of ``vectors`` (float32, (V, dim)); None when its margin is not proven
    (dimension above 1024, a rotation not orthogonal to 2**-30) or there is one distinct vector.
    """
    dim = vectors.shape[1]
    if dim > _MAX_DIM or dim < 1:
        return None
    rows = np.ascontiguousarray(vectors, dtype=np.float32).view(np.dtype((np.void, 4 * dim)))
    # bitwise rows: 3x faster than unique(axis=0)
    unique, first, inverse = np.unique(rows.ravel(), return_index=True, return_inverse=True)
    if len(unique) < 2:
        return None
    order = np.argsort(first, kind="stable")
    representatives = first[order].astype(np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    units = rank[inverse.ravel()]
    words = vectors[representatives].astype(np.float64)  # -0.0 and 0.0 apart: a tie, decided later
    mean = words.mean(axis=0)
    centred = words - mean
    largest = float(np.sqrt(np.einsum("ij,ij->i", centred, centred).max()))
    exponent = -int(np.frexp(largest)[1]) if largest > 0.0 else 0
    centred = np.ldexp(centred, exponent)  # exact: largest centred norm in [0.5, 1)
    covariance = centred.T @ centred
    _, axes = np.linalg.eigh(covariance)
    rotation = np.ascontiguousarray(axes[:, ::-1])
    gram = rotation.T @ rotation - np.eye(dim)
    delta = float(np.sqrt(np.sum(gram * gram))) + 2.0 * dim * dim * 2.0**-53
    if not delta <= _MAX_DELTA:
        return None
    rotated = _pad((centred @ rotation).astype(np.float32))
    order = axis_tree_order(rotated.astype(np.float64), BLOCK)
    rotated = rotated[order]
    representatives = representatives[order]
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    units = position[units]
    n_blocks = -(-len(rotated) // BLOCK)
    padded = np.full((n_blocks * BLOCK, rotated.shape[1]), _PAD, dtype=np.float32)
    padded[: len(rotated)] = rotated
    blocks = np.ascontiguousarray(padded.reshape(n_blocks, BLOCK, -1).transpose(0, 2, 1))
    first = np.full((n_blocks * BLOCK, STEP), np.nan, dtype=np.float32)
    first[: len(rotated)] = rotated[:, :STEP]  # padding words take no part in a box
    first = first.reshape(n_blocks, BLOCK, STEP)
    boxes = np.ascontiguousarray(np.stack([np.nanmin(first, axis=1), np.nanmax(first, axis=1)], 1))
    norms = np.sqrt(np.einsum("ij,ij->i", rotated.astype(np.float64), rotated.astype(np.float64)))
    return Cascade(
        mean=mean,
        exponent=exponent,
        rotation=rotation,
        blocks=blocks,
        boxes=boxes,
        representatives=representatives,
        units=units,
        largest_norm=float(norms.max()) * (1.0 + 2.0**-20),
        relative=max(RELATIVE, (rotated.shape[1] + 2) * 2.0**-22),
    )


def axis_tree_order(points: np.ndarray, leaf: int) -> np.ndarray:
    """An order of the rows of ``points`` (float64, (n, d)) in which every run of ``leaf`` rows
    (the last one possibly shorter) is a leaf of a principal-axis tree: each group of rows is
    split, at a multiple of ``leaf`` near its median, along its own first principal axis
    (estimated on at most 4,096 of its rows, evenly spaced). Any order gives the same search
    results; compact leaves make it faster. Deterministic; single-threaded BLAS (a few thousand
    small products: BLAS threads cost more than they gain, 8x on a busy two-core machine).
    """
    pending = [np.arange(len(points))]
    leaves = []
    with one_blas_thread():
        while pending:
            rows = pending.pop()
            if len(rows) <= leaf:
                leaves.append(rows)
                continue
            sample = points[rows[:: max(1, len(rows) // 4096)]]
            sample = sample - sample.mean(axis=0)
            _, axes = np.linalg.eigh(sample.T @ sample)
            projection = points[rows] @ axes[:, -1]
            left = -(-len(rows) // (2 * leaf)) * leaf  # a multiple of leaf: the short leaf last
            split = np.argpartition(projection, left - 1)
            pending.append(rows[split[left:]])  # popped after the left part: leaves in order
            pending.append(rows[split[:left]])
    return np.concatenate(leaves)


#: The cascade of each space, built at its first exact search and shared by every mechanism
#: on that space (dropped with the space).
_BUILT: weakref.WeakKeyDictionary[Any, Cascade | None] = weakref.WeakKeyDictionary()
_BUILD_LOCK = threading.Lock()


def for_space(space: Any) -> Cascade | None:
    """:func:`build` of ``space.vectors``, once per space (``EmbeddingSpace``): every
    mechanism decoding on that space uses it (a new mechanism used to build its own: 4-9 s at
    400,000 words)."""
    with _BUILD_LOCK:
        if space not in _BUILT:
            _BUILT[space] = build(space.vectors)
        return _BUILT[space]


def _pad(array: np.ndarray) -> np.ndarray:
    """Coordinates up to a multiple of ``STEP``: zeros appended to words and queries alike change
    no distance."""
    missing = -array.shape[1] % STEP
    if missing == 0:
        return array
    return np.concatenate([array, np.zeros((len(array), missing), dtype=array.dtype)], axis=1)


def task_size(n_queries: int) -> int:
    """Queries per parallel task: at most ``QUERY_BLOCK``; a call of few queries is cut into a
    multiple of the thread count of tasks (a 17-word sentence: tasks of 9 and 8 on two threads,
    not 16 and 1). Each query's search is independent of its task: this changes the time only.
    """
    n_tasks = max(1, -(-n_queries // QUERY_BLOCK))
    threads = numba.get_num_threads()
    if n_tasks < 4 * threads:
        n_tasks = -(-n_tasks // threads) * threads
    return max(1, -(-n_queries // n_tasks))


def prepare(cascade: Cascade, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(queries, slack, usable)``: the points rotated and padded, their absolute margins
    ``A_q``, and whether the cascade may decide them (points far outside the space may not:
    their coordinates are zeroed)."""
    n_points = len(points)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.ldexp(np.asarray(points, dtype=np.float64) - cascade.mean, cascade.exponent)
        reach = np.abs(scaled).max(axis=1) if scaled.size else np.zeros(n_points)
    usable = np.isfinite(reach) & (reach <= _FAR)  # the largest centred word norm is >= 1/2
    scaled[~usable] = 0.0
    queries = np.ascontiguousarray(_pad(scaled @ cascade.rotation))
    norms = np.sqrt(np.einsum("ij,ij->i", queries, queries))
    return queries, SLACK * (norms + cascade.largest_norm), usable


def search(
    cascade: Cascade, queries: np.ndarray, slack: np.ndarray, seed_units: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(best, status)`` of the kernel for prepared queries (see :func:`_search`)."""
    best = np.full(len(queries), -1, dtype=np.int64)
    status = np.zeros(len(queries), dtype=np.int64)
    _search(
        queries,
        slack,
        cascade.blocks,
        cascade.boxes,
        len(cascade.representatives),
        np.ascontiguousarray(seed_units, dtype=np.int64),
        cascade.relative,
        task_size(len(queries)),
        best,
        status,
    )
    return best, status


def nearest(
    cascade: Cascade, points: np.ndarray, seeds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, decided)``: the exact nearest word id of each point where ``decided`` (ties and
    near ties, and points far outside the space, are not decided: their ids are -1).

    ``seeds`` (n, k) int, optional: word ids whose distances start the upper bound of each point
    (for example its source word's neighbour row); they change the time, never the result.
    """
    queries, slack, usable = prepare(cascade, points)
    if seeds is None:
        seeds = np.zeros((len(points), 0), dtype=np.int64)
    seeds = np.asarray(seeds, dtype=np.int64)
    inside = (seeds >= 0) & (seeds < len(cascade.units))
    seed_units = np.where(inside, cascade.units[np.where(inside, seeds, 0)], -1)
    best, status = search(cascade, queries, slack, seed_units)
    decided = usable & (status == 1)
    ids = np.where(decided, cascade.representatives[np.maximum(best, 0)], -1)
    return ids, decided


@jit
def _threshold(best_squared, slack, relative):
    """Squared distance above which a word is provably farther than the best word."""
    bound = math.sqrt(best_squared) * (1.0 + 4.0 * relative) + 2.0 * slack
    return bound * bound * _THRESHOLD_ROUNDING


@jit
def _full_squared(query, blocks, unit):
    """Float64 squared distance from a rotated query to one rotated word."""
    block = unit // blocks.shape[2]
    column = unit % blocks.shape[2]
    total = 0.0
    for t in range(query.shape[0]):
        diff = query[t] - np.float64(blocks[block, t, column])
        total += diff * diff
    return total


@parallel_jit
def _search(queries, slack, blocks, boxes, n_units, seeds, relative, size, best, status):
    """The cascade for every query (one task per ``size`` queries, see :func:`task_size`).

    ``queries`` are rotated and padded like the words (a multiple of ``STEP`` coordinates).
    Each word block is compared with each query of the task ``STEP`` coordinates at a time
    (float32, vectorised over the block) while one of its words is within reach, then the full
    float64 distance of each word still within reach is computed.
    ``best[i]`` receives the unit (deduplicated word index) of the best word and ``status[i]``
    the number of words within the margin of it (1: decided), or -1 when more than
    ``_CANDIDATES`` were.
    """
    n_queries = queries.shape[0]
    n_blocks, _, width = blocks.shape
    n_tasks = (n_queries + size - 1) // size
    for task in prange(n_tasks):
        start = task * size
        stop = min(start + size, n_queries)
        count = stop - start
        best_sq = np.full(count, np.inf)
        best_unit = np.full(count, -1, np.int64)
        limit = np.full(count, np.inf)
        limit32 = np.full(count, np.inf, np.float32)
        cand_unit = np.full((count, _CANDIDATES), -1, np.int64)
        cand_sq = np.full((count, _CANDIDATES), np.inf)
        overflow = np.zeros(count, np.bool_)
        query32 = _queries32(queries, start, count)
        # seeds: full distances to the given words start the upper bound
        for q in range(count):
            for s in range(seeds.shape[1]):
                unit = seeds[start + q, s]
                if unit < 0:
                    continue
                full = _full_squared(queries[start + q], blocks, unit)
                if full < best_sq[q] or (full == best_sq[q] and unit < best_unit[q]):
                    best_sq[q] = full
                    best_unit[q] = unit
            if best_unit[q] >= 0:
                limit[q] = _threshold(best_sq[q], slack[start + q], relative)
                limit32[q] = _limit32(limit[q])
        partial = np.empty(width, np.float32)
        survivors = np.empty(width, np.int64)
        for b in range(n_blocks):
            for q in range(count):
                reached = _block_survivors(
                    query32[q], blocks, boxes, b, limit32[q], partial, survivors
                )
                for c in range(reached):
                    j = survivors[c]
                    if partial[j] <= limit32[q]:
                        unit = b * width + j
                        if unit >= n_units:
                            continue
                        total = _full_squared(queries[start + q], blocks, unit)
                        if total > limit[q]:
                            continue
                        if total < best_sq[q] or (total == best_sq[q] and unit < best_unit[q]):
                            best_sq[q] = total
                            best_unit[q] = unit
                            limit[q] = _threshold(total, slack[start + q], relative)
                            limit32[q] = _limit32(limit[q])
                        # keep it as a candidate of the final decision
                        if not _keep_candidate(cand_unit[q], cand_sq[q], limit[q], unit, total):
                            overflow[q] = True
        for q in range(count):
            best[start + q] = best_unit[q]
            if overflow[q]:
                status[start + q] = -1
                continue
            within = 0
            seen_best = False
            for c in range(_CANDIDATES):
                if cand_unit[q, c] >= 0 and cand_sq[q, c] <= limit[q]:
                    within += 1
                    seen_best |= cand_unit[q, c] == best_unit[q]
            if not seen_best and best_unit[q] >= 0:
                within += 1  # not reached by the scan (cannot happen: counted to be safe)
            status[start + q] = within


@jit
def _limit32(limit):
    """A float32 at least ``limit`` (rounding to float32 moves it by at most 2**-24)."""
    return np.float32(limit * (1.0 + 2.0**-20))


@jit
def _queries32(queries, start, count):
    """``queries[start:start + count]`` rounded to float32 (the stages' copy of the task)."""
    query32 = np.empty((count, queries.shape[1]), np.float32)
    for q in range(count):
        for t in range(queries.shape[1]):
            query32[q, t] = np.float32(queries[start + q, t])
    return query32


@jit
def _block_survivors(query32, blocks, boxes, b, bound, partial, survivors):
    """The words of block ``b`` that may lie within ``bound`` (float32 squared distance) of
    ``query32``: their count, their indices in ``survivors[:count]`` and their float32 squared
    distances in ``partial``.

    First the block's box: ``g`` = the float32 sum of the squared gaps between the query's first
    ``STEP`` coordinates and the box. Each word's first-stage sum ``P`` satisfies ``P >= g (1 -
    2**-18) - 2**-120`` (the exact gap is at most the exact coordinate difference; the float32
    rounding of the 10-term sums is below ``(STEP + 3) 2**-24`` relative, and subnormal terms
    below ``STEP 2**-149`` absolute), so when that exceeds ``bound`` the first stage would drop
    every word: the block is skipped, with the same outcome. Then the stages run ``STEP``
    coordinates at a time over the whole block (loops of constant length, vectorised over the
    words) while more than ``1 / _SPARSE`` of its words are in reach, then over the words still
    in reach only, dropping each word as soon as its partial sum exceeds ``bound``. A word's sum
    is accumulated in the same order either way (its coordinates in turn), so the words
    returned and their distances do not depend on when the scan turns sparse.
    """
    gap_sum = np.float32(0.0)
    for t in range(STEP):
        low = boxes[b, 0, t] - query32[t]
        high = query32[t] - boxes[b, 1, t]
        gap = max(low, high, np.float32(0.0))
        gap_sum += gap * gap
    if gap_sum * _BOX_SHRINK - _BOX_FLOOR > bound:
        return 0
    width = blocks.shape[2]
    n_coordinates = query32.shape[0]
    for j in range(width):
        partial[j] = np.float32(0.0)
    begin = 0
    while begin < n_coordinates:  # dense stages
        hits = 0
        for j in range(width):
            total = partial[j]
            for t in range(STEP):
                diff = query32[begin + t] - blocks[b, begin + t, j]
                total += diff * diff
            partial[j] = total
        for j in range(width):  # a loop of its own: both vectorise
            hits += partial[j] <= bound
        begin += STEP
        if hits == 0:
            return 0
        if hits * _SPARSE <= width:
            break
    count = 0
    for j in range(width):
        survivors[count] = j
        count += partial[j] <= bound
    while begin < n_coordinates and count > 0:  # sparse stages
        kept = 0
        for c in range(count):
            j = survivors[c]
            total = partial[j]
            for t in range(STEP):
                diff = query32[begin + t] - blocks[b, begin + t, j]
                total += diff * diff
            partial[j] = total
            survivors[kept] = j
            kept += total <= bound
        count = kept
        begin += STEP
    return count


@jit
def _keep_candidate(cand_unit, cand_sq, limit, unit, total):
    """Store ``(unit, total)`` in the first free slot (empty, or beyond ``limit``) of a
    query's candidates; ``False`` when every slot is taken (overflow)."""
    for c in range(cand_unit.shape[0]):
        if cand_unit[c] < 0 or cand_sq[c] > limit:
            cand_unit[c] = unit
            cand_sq[c] = total
            return True
    return False
