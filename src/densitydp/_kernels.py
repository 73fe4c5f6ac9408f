"""numba kernels for exact nearest-neighbour search (used by :mod:`densitydp.neighbors`).

Arrays in, arrays out; no validation here. The search is two-staged:

1. :func:`update_topk` screens a block of float32 BLAS inner products: for each query row it keeps
   the ``kk`` smallest approximate scores ``||y||^2 - 2 q.y`` in a max-heap and the largest score
   seen (for the diameter).
2. :func:`refine_rows` recomputes the candidates' distances exactly in float64, sorts them (the
   query's own word first when given, then by distance, then by id) and certifies the row: the
   top-k is provably exact when no screened-out word can beat the k-th exact distance given the
   float32 error bound. Uncertified rows go to :func:`exact_row`, a full float64 scan.

The screen and the refinement are serial kernels: the wrapper runs one block of rows per Python
thread (numba releases the GIL; BLAS is limited to one thread inside), which keeps BLAS and
numba threads from spinning against each other. The full scan is parallel over rows. Every row
is computed independently, so results do not depend on the number of threads.

Pure-numpy twins live in ``tests/reference/neighbors.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, parallel_jit


@jit
def update_topk(products, factor, column_offset, column_sqnorms, heap_scores, heap_ids, row_max):
    """Merge one block of inner products into the per-row max-heaps.

    ``products[i, j]`` is ``q'_i . y_{column_offset + j}`` (float32) for the query scaled by
    ``2 / factor`` (a power of two); the score is ``column_sqnorms[j] - factor * products[i, j]``.
    ``heap_scores[i, 0]`` is the largest kept score. A score equal to the heap top is not
    inserted, so every screened-out column scores at least the final heap top. A product that
    overflowed (inf or NaN) scores ``-inf``: the column becomes a candidate (its distance is
    recomputed exactly) and the row's largest score ``+inf`` (the diameter rescans it).
    """
    n_rows, n_columns = products.shape
    capacity = heap_scores.shape[1]
    for i in range(n_rows):
        top = heap_scores[i, 0]
        largest = row_max[i]
        for j in range(n_columns):
            score = column_sqnorms[j] - factor * products[i, j]
            if not math.isfinite(score):
                score = -np.inf
                largest = np.inf
            if score > largest:
                largest = score
            if score < top:
                # replace the root and sift it down
                position = 0
                while True:
                    child = 2 * position + 1
                    if child >= capacity:
                        break
                    if child + 1 < capacity and heap_scores[i, child + 1] > heap_scores[i, child]:
                        child += 1
                    if heap_scores[i, child] <= score:
                        break
                    heap_scores[i, position] = heap_scores[i, child]
                    heap_ids[i, position] = heap_ids[i, child]
                    position = child
                heap_scores[i, position] = score
                heap_ids[i, position] = column_offset + j
                top = heap_scores[i, 0]
        row_max[i] = largest


@jit
def squared_distance(query, vector):
    """Exact float64 squared Euclidean distance, summed in a fixed order."""
    total = 0.0
    for t in range(query.shape[0]):
        diff = query[t] - np.float64(vector[t])
        total += diff * diff
    return total


@jit
def _precedes(self_a, dist_a, id_a, self_b, dist_b, id_b):
    """Sort order of neighbour lists: the query's own word first, then distance, then id."""
    if self_a != self_b:
        return self_a
    if dist_a != dist_b:
        return dist_a < dist_b
    return id_a < id_b


#: Coordinates per inner loop of :func:`screen_blocked` (a constant length: the loop over the
#: words of a block then vectorises); blocked vectors are padded with zeros to a multiple of it.
SCREEN_STEP = 10


@jit
def screen_blocked(
    queries32, blocks, n_words, factor, column_sqnorms, heap_scores, heap_ids, row_max
):
    """:func:`update_topk` of every word for a few queries, the float32 products computed here.

    ``blocks`` (n_blocks, d', width) float32 holds the words coordinate-major per block of
    ``width`` (``d'`` a multiple of ``SCREEN_STEP``, padded with zeros, as are ``queries32``,
    (n, d')); words beyond ``n_words`` are padding. Each product is summed over the coordinates
    in order (float32), vectorised over the words of a block: 0.23 / 0.34 ms for 2 / 3 queries
    on 50,000 x 50 words here, where BLAS took 0.37 / 0.58 ms. The screen's error bound covers
    any summation order.
    """
    n_queries, dim = queries32.shape
    n_blocks, _, width = blocks.shape
    products = np.empty((n_queries, width), np.float32)
    for b in range(n_blocks):
        start = b * width
        valid = min(width, n_words - start)
        for i in range(n_queries):
            for j in range(width):
                products[i, j] = np.float32(0.0)
            for begin in range(0, dim, SCREEN_STEP):
                for j in range(width):
                    total = products[i, j]
                    for t in range(SCREEN_STEP):
                        total += queries32[i, begin + t] * blocks[b, begin + t, j]
                    products[i, j] = total
        update_topk(
            products[:, :valid],
            factor,
            start,
            column_sqnorms[start : start + valid],
            heap_scores,
            heap_ids,
            row_max,
        )


@jit
def refine_rows(
    queries,
    query_sqnorms,
    vectors,
    heap_scores,
    heap_ids,
    self_ids,
    error_bounds,
    k,
    out_ids,
    out_sqdist,
    certified,
):
    """Exact float64 top-k among each row's candidates, and whether it is the true top-k.

    ``self_ids[i]`` is the word of query ``i`` (forced to rank 0) or -1. ``error_bounds[i]``
    bounds the float32 error of every approximate score of row ``i``. A row is certified when
    the heap held every column, or when the smallest possible exact squared distance of a
    screened-out column exceeds the k-th exact squared distance (and the query's own word, if
    any, is among the candidates).
    """
    n_rows, capacity = heap_ids.shape
    n_words = vectors.shape[0]
    for i in range(n_rows):
        cand_ids = np.empty(capacity, np.int64)
        cand_sq = np.empty(capacity, np.float64)
        cand_self = np.zeros(capacity, np.bool_)
        n = 0
        found_self = self_ids[i] < 0
        for c in range(capacity):
            word = heap_ids[i, c]
            if word < 0:
                continue
            cand_ids[n] = word
            cand_sq[n] = squared_distance(queries[i], vectors[word])
            if word == self_ids[i]:
                cand_self[n] = True
                found_self = True
            n += 1
        # insertion sort: capacity is small (k + margin)
        for a in range(1, n):
            s_id = cand_ids[a]
            s_sq = cand_sq[a]
            s_self = cand_self[a]
            b = a - 1
            while b >= 0 and _precedes(s_self, s_sq, s_id, cand_self[b], cand_sq[b], cand_ids[b]):
                cand_ids[b + 1] = cand_ids[b]
                cand_sq[b + 1] = cand_sq[b]
                cand_self[b + 1] = cand_self[b]
                b -= 1
            cand_ids[b + 1] = s_id
            cand_sq[b + 1] = s_sq
            cand_self[b + 1] = s_self
        for r in range(k):
            out_ids[i, r] = cand_ids[r]
            out_sqdist[i, r] = cand_sq[r]
        if n == n_words:
            certified[i] = found_self
        else:
            # every screened-out column j has approximate score >= heap top, so its exact squared
            # distance is >= |q|^2 + heap top - error bound
            floor = query_sqnorms[i] + heap_scores[i, 0] - error_bounds[i]
            kth = cand_sq[k - 1]
            certified[i] = found_self and floor > kth + 1e-9 * kth + 1e-300


@parallel_jit
def exact_rows(queries, vectors, self_ids, k, out_ids, out_sqdist, out_max):
    """Full float64 scan for a few rows: exact top-k (same order as refine_rows; none when
    ``k == 0``) and the largest squared distance of each row."""
    n_rows = queries.shape[0]
    n_words = vectors.shape[0]
    for i in prange(n_rows):
        keys = np.empty(n_words, np.float64)
        largest = 0.0
        for j in range(n_words):
            keys[j] = squared_distance(queries[i], vectors[j])
            if keys[j] > largest:
                largest = keys[j]
        out_max[i] = largest
        if k == 0:
            continue
        own = self_ids[i]
        own_sq = 0.0
        if own >= 0:
            own_sq = keys[own]
            keys[own] = -1.0
        order = np.argsort(keys, kind="mergesort")  # stable: ties keep id order
        for r in range(k):
            word = order[r]
            out_ids[i, r] = word
            out_sqdist[i, r] = own_sq if word == own else keys[word]


# -- Gaussian kernel density -------------------------------------------------------------------
#
# log sum_i exp(v_i), v_i = log_weights[i] - ||x - r_i||^2 inv_two_h2[i], in one pass over the
# reference points, block by block: a block's squared distances are accumulated coordinate by
# coordinate (contiguous, vectorised), its log terms and their maximum (on order-preserving integer
# keys: a vectorised integer max) finished in the last coordinate's loop, and the terms that
# can still count (within 37.5 nats of the running maximum) listed by one branch-free pass. After
# the last block the listed terms are exponentiated by :func:`exp_nonpositive` (a polynomial exp
# whose loop vectorises: numba's ``math.exp`` is a scalar libm call here) and summed pairwise.
# Pure-numpy twin: ``tests/reference/kde.py`` (``blocked_logsumexp``, ``exp_nonpositive``).

#: Reference points per block of the kernel-density sum (one block of squared distances lives in
#: a 4 KB scratch array).
KDE_BLOCK = 512

#: Terms more than 37.5 nats below the maximum (below ``e^-37.5 = 5.2e-17 < 2**-54`` of the
#: largest term, so of the sum) are skipped: the sum is then exact to ``n * 5.2e-17`` relative.
_NEGLIGIBLE = -37.5

# exp_nonpositive: x = k ln 2 + r, k = round(x / ln 2) by the 1.5 * 2**52 shift (its low bits are
# k), r by Cody-Waite with fdlibm's split of ln 2 (k * _LN2_HI is exact for |k| < 2**20, and
# x - k * _LN2_HI is exact), exp(r) = 1 + r + r^2 q(r) with q the Taylor polynomial of degree 11
# (|r| <= ln 2 / 2 + 2**-40: truncation below 5e-18), evaluated by Estrin's scheme, and 2**k
# added to the exponent bits as an integer. Valid for x in [_EXP_FLOOR, 0].
_EXP_FLOOR = -40.0
_LOG2_E = 1.4426950408889634
_ROUNDING_SHIFT = 6755399441055744.0  # 1.5 * 2**52
_LN2_HI = 6.93147180369123816490e-01  # 0x1.62e42fee00000p-1
_LN2_LO = 1.90821492927058770002e-10  # 0x1.a39ef35793c76p-33
_EXP_2, _EXP_3, _EXP_4, _EXP_5, _EXP_6, _EXP_7 = (1.0 / math.factorial(n) for n in range(2, 8))
_EXP_8, _EXP_9, _EXP_10, _EXP_11, _EXP_12, _EXP_13 = (1.0 / math.factorial(n) for n in range(8, 14))
_EXPONENT_SHIFT = np.uint64(52)

# Order-preserving integer keys of float64 values (NaN excluded): a value's bits when it is
# positive, its bits with the 63 low bits flipped when negative (both as int64). The map is its
# own inverse.
_MAGNITUDE_BITS = np.int64(0x7FFFFFFFFFFFFFFF)


@jit
def block_squared_distances(position, references_t, start, stop, scratch):
    """``scratch[r] = ||position - ref_{start + r}||^2`` for ``start <= start + r < stop``, the
    references being the columns of ``references_t`` (``(dim, n)``): coordinate by coordinate,
    contiguous and vectorised; differences in float64 whatever the dtype of ``references_t``."""
    width = stop - start
    scratch[:width] = 0.0
    for j in range(references_t.shape[0]):
        coordinate = position[j]
        column = references_t[j, start:stop]
        for r in range(width):
            difference = coordinate - np.float64(column[r])
            scratch[r] += difference * difference


@jit
def exp_nonpositive(x):
    """``exp(x)`` for ``-40 <= x <= 0``, within 1 ulp of ``math.exp`` (tested over the whole
    range), from operations that vectorise: a loop over this function compiles to SIMD code
    where ``math.exp`` stays a scalar libm call. Arguments below -40 are taken as -40 (the
    caller discards those results). IEEE operations only (no fused multiply-add, no fastmath),
    so its numpy twin gives the same bits."""
    a = x if x > _EXP_FLOOR else _EXP_FLOOR
    shifted = a * _LOG2_E + _ROUNDING_SHIFT
    scale = np.float64(shifted).view(np.uint64) << _EXPONENT_SHIFT  # k in the exponent field
    k = shifted - _ROUNDING_SHIFT
    r = (a - k * _LN2_HI) - k * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q = (
        ((_EXP_2 + _EXP_3 * r) + (_EXP_4 + _EXP_5 * r) * r2)
        + ((_EXP_6 + _EXP_7 * r) + (_EXP_8 + _EXP_9 * r) * r2) * r4
    ) + ((_EXP_10 + _EXP_11 * r) + (_EXP_12 + _EXP_13 * r) * r2) * r8
    mantissa = 1.0 + (r + r2 * q)
    return np.uint64(np.float64(mantissa).view(np.uint64) + scale).view(np.float64)


@jit
def _order_key(value):
    """The int64 key of a float64 value (not NaN): keys order as the values do."""
    bits = np.float64(value).view(np.int64)
    return bits ^ ((bits >> 63) & _MAGNITUDE_BITS)


@jit
def _order_value(key):
    """The float64 value of a key of :func:`_order_key` (the map is its own inverse)."""
    return np.int64(key ^ ((key >> 63) & _MAGNITUDE_BITS)).view(np.float64)


@jit
def block_log_terms(
    position, references_t, log_weights, inv_two_h2, start, stop, exclude, out, uniform=False
):
    """``out[r] = log_weights[i] - ||position - ref_i||^2 inv_two_h2[i]`` for ``i = start + r``
    in ``[start, stop)`` (``-inf`` for ``i == exclude``), and the largest of them. With
    ``uniform`` (every weight and every ``inv_two_h2`` equal, as with one bandwidth) the first
    entries are used for all: the same operations on the same values, without reading two
    arrays per point (about 5 % of a step of a chain on 10,000 points).

    The squared distances are those of :func:`block_squared_distances` (the same sums in the
    same order; the first coordinate is written instead of added to zero, which is the same
    value); the log term and the running maximum (on :func:`_order_key`, an integer max that
    vectorises where a float max does not without fastmath) are finished in the last
    coordinate's loop. ``position`` must not hold NaN (the keys do not order NaN)."""
    width = stop - start
    last = references_t.shape[0] - 1
    if last >= 1:
        coordinate = position[0]
        column = references_t[0, start:stop]
        for r in range(width):
            difference = coordinate - np.float64(column[r])
            out[r] = difference * difference
        for j in range(1, last):
            coordinate = position[j]
            column = references_t[j, start:stop]
            for r in range(width):
                difference = coordinate - np.float64(column[r])
                out[r] += difference * difference
    else:
        out[:width] = 0.0
    if start <= exclude < stop:
        out[exclude - start] = np.inf  # its log term is -inf
    weights = log_weights[start:stop]
    scales = inv_two_h2[start:stop]
    top = _order_key(-np.inf)  # an empty block's maximum is -inf
    if last >= 0 and uniform:
        coordinate = position[last]
        column = references_t[last, start:stop]
        weight = log_weights[0]
        scale = inv_two_h2[0]
        for r in range(width):
            difference = coordinate - np.float64(column[r])
            value = weight - (out[r] + difference * difference) * scale
            out[r] = value
            key = _order_key(value)
            top = key if key > top else top
    elif last >= 0:
        coordinate = position[last]
        column = references_t[last, start:stop]
        for r in range(width):
            difference = coordinate - np.float64(column[r])
            value = weights[r] - (out[r] + difference * difference) * scales[r]
            out[r] = value
            key = _order_key(value)
            top = key if key > top else top
    else:
        for r in range(width):
            value = weights[r] - out[r] * scales[r]
            out[r] = value
            key = _order_key(value)
            top = key if key > top else top
    return _order_value(top)


@jit
def pairwise_sum(values, count):
    """``sum(values[:count])`` by halving (``values[c] += values[half + c]``, ``half`` the
    upper half of the size), which vectorises and adds at most ``ceil(log2 count)`` roundings to
    each term; overwrites ``values``."""
    if count == 0:
        return 0.0
    size = count
    while size > 1:
        half = (size + 1) // 2
        for c in range(size - half):
            values[c] += values[half + c]
        size = half
    return values[0]


@jit
def kde_logsumexp(position, references_t, log_weights, inv_two_h2, exclude, uniform=False):
    """``log sum_i exp(log_weights[i] - ||position - r_i||^2 * inv_two_h2[i])`` over the
    reference points ``r_i`` (the columns of ``references_t``, shape ``(dim, n)``), leaving out
    index ``exclude`` (-1: none); ``-inf`` when ``position`` holds NaN or no term is finite.
    ``uniform``: see :func:`block_log_terms` (the result is the same bits either way).

    One pass over the references, block by block (:func:`block_log_terms`: squared distances
    coordinate by coordinate, float64 differences whatever the dtype of ``references_t``, log
    terms, block maximum); after each block one branch-free pass lists the block's terms within
    ``-_NEGLIGIBLE`` = 37.5 nats of the running maximum. At the end, with the maximum ``M`` of
    all terms, each listed term ``v >= M - 37.5`` contributes :func:`exp_nonpositive` ``(v -
    M)`` (the others, listed before the maximum rose, contribute 0), summed by
    :func:`pairwise_sum` in index order; the result is ``M + log(sum)``.

    Accuracy: each term is within 1 ulp (``2**-52`` relative) of ``exp(v - M)`` and the pairwise
    sum adds at most ``ceil(log2 n)`` roundings of ``2**-53``, so the sum is within
    ``(ceil(log2 n) + 2) * 2**-53`` relative of the exact sum of the kept terms; the skipped
    terms are below ``n e^-37.5 = n * 5.2e-17`` of it. The log density therefore differs from
    the plain log-sum-exp of the same log terms (every term, exact arithmetic) by at most
    ``n * 5.2e-17 + (ceil(log2 n) + 2) * 2**-53`` nats plus the rounding of the final log and
    sum (2 ulps of the result): 5.2e-13 + 1.8e-15 nats for ``n = 10,000``, of which the skipped
    terms' part is a worst case (every skipped term just below the cut) and is unchanged from
    the sequential formulation this replaced. It is not bitwise that formulation (libm ``exp``,
    sums in index order rescaled as the maximum rose): the tests bound the difference by the
    above, and compare with a numpy twin of this one to the last bit.
    """
    n_points = references_t.shape[1]
    for j in range(position.shape[0]):
        if position[j] != position[j]:
            return -np.inf  # every term is NaN
    scratch = np.empty(KDE_BLOCK)
    listed = np.empty(n_points)
    count = 0
    maximum = -np.inf
    for start in range(0, n_points, KDE_BLOCK):
        stop = min(start + KDE_BLOCK, n_points)
        block_max = block_log_terms(
            position, references_t, log_weights, inv_two_h2, start, stop, exclude, scratch, uniform
        )
        maximum = max(maximum, block_max)
        cut = maximum + _NEGLIGIBLE
        for r in range(stop - start):
            value = scratch[r]
            listed[count] = value
            count += value >= cut
    if maximum == -np.inf:
        return -np.inf
    # >=: far from every point (|log| > 1e19) the cut rounds to the maximum itself, which must
    # still count
    cut = maximum + _NEGLIGIBLE
    for c in range(count):
        value = listed[c]
        term = exp_nonpositive(value - maximum)
        listed[c] = term if value >= cut else 0.0
    return maximum + math.log(pairwise_sum(listed, count))


@jit
def kde_logsumexp_bounded(position, references_t, log_weights, inv_two_h2, exclude, bounds):
    """:func:`kde_logsumexp`; ``bounds`` (``[max, min]`` of ``log_weights`` then of
    ``inv_two_h2``, part of ``KDEPrior.numba_args()``) tells whether they are uniform."""
    uniform = bounds[0] == bounds[1] and bounds[2] == bounds[3]
    return kde_logsumexp(position, references_t, log_weights, inv_two_h2, exclude, uniform)


@parallel_jit
def kde_log_density(queries, references_t, log_weights, inv_two_h2, exclude, out):
    """:func:`kde_logsumexp` for every row of ``queries`` (``exclude[i]`` per query)."""
    for i in prange(queries.shape[0]):
        out[i] = kde_logsumexp(queries[i], references_t, log_weights, inv_two_h2, exclude[i])


@jit
def kde_logdensity(position, prior_args):
    """``ln p(position)`` of a :class:`densitydp.KDEPrior` inside numba code.

    ``prior_args`` is ``prior.numba_args()``. Example of a target for
    :func:`densitydp.run_chains`::

        @numba.njit
        def tilted(position, args):
            prior_args, tilt = args
            return -0.5 * (position**2).sum() + tilt * kde_logdensity(position, prior_args)
    """
    references_t, log_weights, inv_two_h2, mean, components, bounds = prior_args
    if components.shape[0] == 0:
        return kde_logsumexp_bounded(position, references_t, log_weights, inv_two_h2, -1, bounds)
    projected = components @ (position - mean)
    return kde_logsumexp_bounded(projected, references_t, log_weights, inv_two_h2, -1, bounds)


# -- rigorous bound on the supremum of the Gaussian kernel density -----------------------------
#
# The bound (derivation in :meth:`densitydp.KDEPrior.log_sup_bound`): every x lies in the Voronoi
# cell of its nearest reference point v*; with rho = ||x - r_v*|| and D_v = ||r_v - r_v*||,
# ||x - r_v|| >= max(rho, D_v - rho) for every v. The rho axis is cut into ``cells`` cells of width
# ``sub_bins * bin_width`` and the distances D_v are floored to multiples of ``bin_width``
# (``bin j`` holds the v with ``j bin_width <= D_v``), so that on cell i every kernel of bin j is
# at most ``exp(-(bin_width * max(i s, j - (i + 1) s))^2 * kappa)`` (s = sub_bins, kappa =
# 1 / (2 h^2)). Values are kept relative to the largest kernel weight (``relative_weights`` <= 1,
# kernel peaks); every factor is clamped below at the smallest normal double, so an underflow can
# only round a bound up.

#: Rows (Voronoi centres) per task of the all-pairs bound: their distances to one block of
#: reference points share the loads of that block.
SUP_TILE = 8

_TINY = 2.2250738585072014e-308


@jit
def voronoi_cell_bound(
    weights, kappas, own_weight, own_kappa, shared, table, bin_width, cells, sub_bins
):
    """Largest cell bound of one Voronoi cell (relative to the largest kernel weight).

    ``weights[j]`` is the total relative weight of the kernels in distance bin ``j`` (the centre's
    own kernel excluded; the last bin also holds every farther kernel) and ``kappas[j]`` the
    smallest ``1 / (2 h^2)`` among them. With ``shared`` (one bandwidth for all kernels) the
    factors come from ``table[q] = exp(-(q bin_width)^2 kappa)``; otherwise they are computed per
    bin. Returns ``max_i`` of the cell-``i`` bound for ``i < cells`` (the cell ``rho >=
    cells * sub_bins * bin_width`` is bounded by the caller).
    """
    n_bins = weights.shape[0]
    nonzero = np.empty(n_bins, np.int64)
    count = 0
    for j in range(n_bins):
        if weights[j] > 0.0:
            nonzero[count] = j
            count += 1
    best = 0.0
    inner = 0  # bins nonzero[:inner] satisfy j <= (2 i + 1) s: their bound uses rho_i
    inner_weight = 0.0
    for i in range(cells):
        own_q = i * sub_bins
        limit = (2 * i + 1) * sub_bins
        shift = (i + 1) * sub_bins
        while inner < count and nonzero[inner] <= limit:
            inner_weight += weights[nonzero[inner]]
            inner += 1
        if shared:
            total = table[own_q] * (own_weight + inner_weight)
            for c in range(inner, count):
                j = nonzero[c]
                total += weights[j] * table[j - shift]
        else:
            rho = own_q * bin_width
            rho2 = rho * rho
            total = own_weight * max(math.exp(-rho2 * own_kappa), _TINY)
            for c in range(inner):
                j = nonzero[c]
                total += weights[j] * max(math.exp(-rho2 * kappas[j]), _TINY)
            for c in range(inner, count):
                j = nonzero[c]
                distance = (j - shift) * bin_width
                total += weights[j] * max(math.exp(-distance * distance * kappas[j]), _TINY)
        if total > best:
            best = total
    return best


@jit
def _distance_bin(squared, shrink, inverse_width, last_bin):
    """Bin of a distance whose computed square is ``squared``: ``j <= D / bin_width`` for the
    true distance ``D`` (``shrink`` < 1 absorbs the rounding of the square, root and product)."""
    scaled = math.sqrt(squared * shrink) * inverse_width
    if scaled >= last_bin:
        return last_bin
    return int(scaled)


@parallel_jit
def kde_sup_pairs(
    rows,
    references_t,
    relative_weights,
    inv_two_h2,
    shared,
    bin_width,
    shrink,
    cells,
    sub_bins,
    table,
    out,
):
    """:func:`voronoi_cell_bound` of the Voronoi cell of each reference point in ``rows``, with
    the distances to all reference points (columns of ``references_t``, ``(dim, n)``) computed
    exactly in float64, ``SUP_TILE`` rows per task, blocked like :func:`kde_logsumexp`."""
    dim, n_points = references_t.shape
    n_bins = (2 * cells + 1) * sub_bins + 1
    last_bin = n_bins - 1
    inverse_width = 1.0 / bin_width
    n_rows = rows.shape[0]
    n_tiles = (n_rows + SUP_TILE - 1) // SUP_TILE
    for tile in prange(n_tiles):
        first = tile * SUP_TILE
        count = min(SUP_TILE, n_rows - first)
        centres = np.empty((SUP_TILE, dim))
        for t in range(count):
            for j in range(dim):
                centres[t, j] = np.float64(references_t[j, rows[first + t]])
        weights = np.zeros((SUP_TILE, n_bins))
        kappas = np.full((SUP_TILE, n_bins), np.inf)
        scratch = np.empty((SUP_TILE, KDE_BLOCK))
        for start in range(0, n_points, KDE_BLOCK):
            stop = min(start + KDE_BLOCK, n_points)
            width = stop - start
            scratch[:, :width] = 0.0
            for j in range(dim):
                column = references_t[j, start:stop]
                for t in range(count):
                    coordinate = centres[t, j]
                    for r in range(width):
                        difference = coordinate - np.float64(column[r])
                        scratch[t, r] += difference * difference
            for t in range(count):
                own = rows[first + t]
                for r in range(width):
                    v = start + r
                    if v == own:
                        continue
                    b = _distance_bin(scratch[t, r], shrink, inverse_width, last_bin)
                    weights[t, b] += relative_weights[v]
                    if inv_two_h2[v] < kappas[t, b]:
                        kappas[t, b] = inv_two_h2[v]
        for t in range(count):
            own = rows[first + t]
            out[first + t] = voronoi_cell_bound(
                weights[t],
                kappas[t],
                relative_weights[own],
                inv_two_h2[own],
                shared,
                table,
                bin_width,
                cells,
                sub_bins,
            )


@parallel_jit
def kde_sup_neighbors(
    rows,
    neighbor_ids,
    far_distances,
    references_t,
    relative_weights,
    inv_two_h2,
    total_weight,
    far_kappa,
    shared,
    bin_width,
    shrink,
    cells,
    sub_bins,
    table,
    out,
):
    """Like :func:`kde_sup_pairs` from exact neighbour lists: the kernels of ``neighbor_ids[i]``
    (column 0, the centre itself, skipped) enter with their exact float64 distances; all the
    others, ``total_weight`` minus the listed ones in relative weight, are put at
    ``far_distances[i]`` (a lower bound on their distances) with the bandwidth ``far_kappa``
    (the smallest ``1 / (2 h^2)`` of the prior)."""
    dim = references_t.shape[0]
    n_bins = (2 * cells + 1) * sub_bins + 1
    last_bin = n_bins - 1
    inverse_width = 1.0 / bin_width
    k = neighbor_ids.shape[1]
    for i in prange(rows.shape[0]):
        own = rows[i]
        weights = np.zeros(n_bins)
        kappas = np.full(n_bins, np.inf)
        listed = relative_weights[own]
        for c in range(1, k):
            v = neighbor_ids[i, c]
            squared = 0.0
            for j in range(dim):
                difference = np.float64(references_t[j, own]) - np.float64(references_t[j, v])
                squared += difference * difference
            b = _distance_bin(squared, shrink, inverse_width, last_bin)
            weights[b] += relative_weights[v]
            listed += relative_weights[v]
            if inv_two_h2[v] < kappas[b]:
                kappas[b] = inv_two_h2[v]
        # total_weight carries a margin larger than the rounding of this difference
        far_weight = total_weight - listed
        if far_weight > 0.0:
            distance = max(far_distances[i], 0.0)
            b = _distance_bin(distance * distance, 1.0, inverse_width, last_bin)
            weights[b] += far_weight
            if far_kappa < kappas[b]:
                kappas[b] = far_kappa
        out[i] = voronoi_cell_bound(
            weights,
            kappas,
            relative_weights[own],
            inv_two_h2[own],
            shared,
            table,
            bin_width,
            cells,
            sub_bins,
        )


@parallel_jit
def kde_mean_shift(
    positions, references_t, log_coefficients, inv_two_h2, max_iterations, tolerance, out
):
    """Mean-shift (fixed-point) iterations ``x <- sum_v a_v(x) r_v / sum_v a_v(x)`` from each row
    of ``positions``, with ``ln a_v(x) = log_coefficients[v] - ||x - r_v||^2 inv_two_h2[v]``
    (``log_coefficients = ln w_v - 2 ln h_v``: a zero of the gradient of the density is a fixed
    point). Stops after ``max_iterations`` or when a step is shorter than ``tolerance``; the
    final positions go to ``out``."""
    dim, n_points = references_t.shape
    for i in prange(positions.shape[0]):
        position = positions[i].copy()
        scratch = np.empty(KDE_BLOCK)
        moved = np.empty(dim)
        for _ in range(max_iterations):
            running_max = -np.inf
            total = 0.0
            moved[:] = 0.0
            for start in range(0, n_points, KDE_BLOCK):
                stop = min(start + KDE_BLOCK, n_points)
                width = stop - start
                block_squared_distances(position, references_t, start, stop, scratch)
                block_max = -np.inf
                for r in range(width):
                    value = log_coefficients[start + r] - scratch[r] * inv_two_h2[start + r]
                    scratch[r] = value
                    if value > block_max:
                        block_max = value
                if block_max > running_max:
                    rescale = math.exp(running_max - block_max)
                    total *= rescale
                    for j in range(dim):
                        moved[j] *= rescale
                    running_max = block_max
                for r in range(width):
                    value = scratch[r] - running_max
                    scratch[r] = math.exp(value) if value > _NEGLIGIBLE else 0.0
                    total += scratch[r]
                for j in range(dim):
                    column = references_t[j, start:stop]
                    accumulated = 0.0
                    for r in range(width):
                        accumulated += scratch[r] * np.float64(column[r])
                    moved[j] += accumulated
            step = 0.0
            for j in range(dim):
                updated = moved[j] / total
                step += (updated - position[j]) ** 2
                position[j] = updated
            if math.sqrt(step) <= tolerance:
                break
        out[i] = position


# -- farthest word -----------------------------------------------------------------------------
#
# The farthest word from q, by triangle-inequality pruning around the centroid c: the words are
# scanned by decreasing r_v = ||v - c||; since d(q, v) <= ||q - c|| + r_v, the scan stops at the
# first word whose bound (times a rounding ``slack`` >= 1) cannot beat the best distance found.
# Pure-numpy twin (brute force) in ``tests/reference/neighbors.py``.


@parallel_jit
def centre_distances(vectors, centre, out):
    """``out[v] = ||vectors[v] - centre||`` in float64 (``centre`` float64)."""
    for v in prange(vectors.shape[0]):
        out[v] = math.sqrt(squared_distance(centre, vectors[v]))


@parallel_jit
def farthest_distances(word_ids, vectors, centre, order, radii, slack, out, out_ids, scanned):
    """``out[i] = max_v ||vectors[word_ids[i]] - vectors[v]||`` (float64, exact) and
    ``out_ids[i]`` a word at that distance (the first met in ``order``).

    ``order`` lists the words by decreasing distance to ``centre``, ``radii`` those distances in
    the same order (float64). ``scanned[i]`` counts the words whose distance was computed. One
    task per query word: results do not depend on the number of threads.
    """
    n_words, dim = vectors.shape
    for i in prange(word_ids.shape[0]):
        query = np.empty(dim)
        for t in range(dim):
            query[t] = np.float64(vectors[word_ids[i], t])
        query_radius = math.sqrt(squared_distance(centre, vectors[word_ids[i]]))
        best = 0.0  # squared
        best_distance = 0.0
        best_id = word_ids[i]
        count = 0
        for j in range(n_words):
            if (query_radius + radii[j]) * slack <= best_distance:
                break
            squared = squared_distance(query, vectors[order[j]])
            count += 1
            if squared > best:
                best = squared
                best_distance = math.sqrt(best)
                best_id = order[j]
        out[i] = best_distance
        out_ids[i] = best_id
        scanned[i] = count


# -- neighbour cache validation ----------------------------------------------------------------
#
# A table read from disk is checked against the vectors before any kernel reads its ids (see
# ``neighbors._validate``). Status codes of ``check_table_rows`` / ``check_table_symmetry``: 0 row
# valid, 1 column 0 is not the row's word, 2 id out of range, 3 distances not non-decreasing (or
# NaN), 4 a distance differs from its pair's exact distance, 5 an id repeated, 6 a word closer
# than another word's last neighbour is missing from that word's row.


@parallel_jit
def check_table_rows(ids, distances, vectors, out_status):
    """Validate each row of a full table: ids in range, the row's word first, ids distinct,
    distances non-decreasing and each equal to ``float32(sqrt(squared_distance))`` of its pair
    (the exact value the search stores)."""
    n_rows, k = ids.shape
    n_words = vectors.shape[0]
    for i in prange(n_rows):
        status = 0
        if ids[i, 0] != i:
            status = 1
        previous = np.float32(0.0)
        for j in range(k):
            if status != 0:
                break
            word = ids[i, j]
            if word < 0 or word >= n_words:
                status = 2
                break
            stored = distances[i, j]
            if not stored >= previous:
                status = 3
                break
            if np.float32(math.sqrt(squared_distance(vectors[i], vectors[word]))) != stored:
                status = 4
                break
            # a repeated id has the same exact distance: look back over the equal run only
            back = j - 1
            while back >= 0 and distances[i, back] == stored:
                if ids[i, back] == word:
                    status = 5
                back -= 1
            previous = stored
        out_status[i] = status


@parallel_jit
def check_table_symmetry(ids, distances, out_status):
    """For a table whose rows passed :func:`check_table_rows`: word ``i`` listed in row ``i``
    at a distance below the last distance of the neighbour's own row must be listed in that row
    (it is strictly closer than the neighbour's k-th neighbour). Status 6 when it is not."""
    n_rows, k = ids.shape
    for i in prange(n_rows):
        status = 0
        for j in range(1, k):
            other = ids[i, j]
            stored = distances[i, j]
            if stored < distances[other, k - 1]:
                low = 0
                high = k
                while low < high:
                    middle = (low + high) // 2
                    if distances[other, middle] < stored:
                        low = middle + 1
                    else:
                        high = middle
                found = False
                while low < k and distances[other, low] == stored:
                    if ids[other, low] == i:
                        found = True
                        break
                    low += 1
                if not found:
                    status = 6
                    break
        out_status[i] = status


@parallel_jit
def grid_closest_pairs(
    vectors, order, cell_starts, cell_keys, cell_ranks, widths, offsets, out_sq, out_pairs
):
    """Smallest squared distance between a word of each occupied grid cell and a word of the
    same cell or of a neighbour cell listed in ``offsets`` (rank steps per grid axis).

    Words ``order[cell_starts[c]:cell_starts[c + 1]]`` fill cell ``c`` whose packed key is
    ``cell_keys[c]`` (sorted) and ranks ``cell_ranks[c]``. ``out_sq[c]`` is inf when no pair was
    met; ``out_pairs[c]`` the two word ids.
    """
    n_cells = cell_keys.shape[0]
    n_axes = widths.shape[0]
    for c in prange(n_cells):
        best = np.inf
        first = -1
        second = -1
        for o in range(offsets.shape[0]):
            key = 0
            inside = True
            for t in range(n_axes):
                rank = cell_ranks[c, t] + offsets[o, t]
                if rank < 0 or rank >= widths[t]:
                    inside = False
                    break
                key = key * widths[t] + rank
            if not inside:
                continue
            low = 0
            high = n_cells
            while low < high:
                middle = (low + high) // 2
                if cell_keys[middle] < key:
                    low = middle + 1
                else:
                    high = middle
            if low == n_cells or cell_keys[low] != key:
                continue
            for a in range(cell_starts[c], cell_starts[c + 1]):
                start = a + 1 if low == c else cell_starts[low]
                for b in range(start, cell_starts[low + 1]):
                    squared = squared_distance(vectors[order[a]], vectors[order[b]])
                    if squared < best:
                        best = squared
                        first = order[a]
                        second = order[b]
        out_sq[c] = best
        out_pairs[c, 0] = first
        out_pairs[c, 1] = second
