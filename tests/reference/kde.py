"""Pure-numpy twins of the kernel-density kernels in ``densitydp._kernels``."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp


def log_density(queries, references, bandwidths, exclude=None):
    """``ln (1/n) sum_i N(q; r_i, h_i^2 I)`` for each query (``exclude[j]``: an index left out of
    the sum and the weights renormalised to ``n - 1``), by full float64 differences."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    references = np.asarray(references, dtype=np.float64)
    bandwidths = np.broadcast_to(np.asarray(bandwidths, dtype=np.float64), (len(references),))
    n, dim = references.shape
    out = np.empty(len(queries))
    for j, query in enumerate(queries):
        squared = ((references - query) ** 2).sum(axis=1)
        terms = (
            -squared / (2 * bandwidths**2)
            - dim * np.log(bandwidths)
            - 0.5 * dim * np.log(2 * np.pi)
        )
        keep = np.ones(n, dtype=bool)
        if exclude is not None and exclude[j] >= 0:
            keep[exclude[j]] = False
        out[j] = logsumexp(terms[keep]) - np.log(keep.sum())
    return out


# -- log-sum-exp (``kde_logsumexp``, ``exp_nonpositive``, ``pairwise_sum``) -----------------------

EXP_FLOOR = -40.0
LOG2_E = 1.4426950408889634  # the double nearest log2(e)
ROUNDING_SHIFT = 1.5 * 2.0**52
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")  # fdlibm's split of ln 2
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
EXP_COEFFICIENTS = [1.0 / math.factorial(n) for n in range(14)]  # Taylor, degree 13
NEGLIGIBLE = -37.5


def exp_nonpositive(x):
    """The operations of ``_kernels.exp_nonpositive`` on arrays (same IEEE operations in the same
    order, so the same bits): ``x = k ln 2 + r`` with ``k`` from the ``1.5 * 2**52`` shift,
    Cody-Waite ``r``, ``1 + r + r^2 q(r)`` with ``q`` the Taylor polynomial by Estrin's scheme,
    ``k`` added to the exponent bits. Arguments below -40 are taken as -40."""
    c = EXP_COEFFICIENTS
    a = np.asarray(x, dtype=np.float64)
    a = np.where(a > EXP_FLOOR, a, EXP_FLOOR)
    shifted = a * LOG2_E + ROUNDING_SHIFT
    scale = np.atleast_1d(shifted).view(np.uint64) << np.uint64(52)
    k = shifted - ROUNDING_SHIFT
    r = (a - k * LN2_HI) - k * LN2_LO
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q = (
        ((c[2] + c[3] * r) + (c[4] + c[5] * r) * r2)
        + ((c[6] + c[7] * r) + (c[8] + c[9] * r) * r2) * r4
    ) + ((c[10] + c[11] * r) + (c[12] + c[13] * r) * r2) * r8
    mantissa = np.atleast_1d(1.0 + (r + r2 * q))
    out = (mantissa.view(np.uint64) + scale).view(np.float64)
    return out if np.ndim(x) else float(out[0])


def pairwise_sum(values):
    """``_kernels.pairwise_sum``: ``values[c] += values[half + c]`` while more than one is left
    (``half`` the rounded-up half of the size)."""
    values = np.array(values, dtype=np.float64)
    size = len(values)
    if size == 0:
        return 0.0
    while size > 1:
        half = (size + 1) // 2
        values[: size - half] += values[half:size]
        size = half
    return float(values[0])


def log_terms(position, references_t, log_weights, inv_two_h2, exclude):
    """``log_weights - ||position - r_i||^2 inv_two_h2`` with the kernels' float64 operations:
    squared differences added coordinate by coordinate (``-inf`` at ``exclude``)."""
    position = np.asarray(position, dtype=np.float64)
    dim, n = references_t.shape
    squared = np.zeros(n)
    for j in range(dim):
        difference = position[j] - references_t[j].astype(np.float64)
        squared += difference * difference
    terms = log_weights - squared * inv_two_h2
    if 0 <= exclude < n:
        terms[exclude] = -np.inf
    return terms


def blocked_logsumexp(position, references_t, log_weights, inv_two_h2, exclude, block=512):
    """``_kernels.kde_logsumexp`` in numpy: the log terms (:func:`log_terms`), per block of
    ``block`` references the running maximum and the block's terms within 37.5 nats of it listed
    in index order; at the end each listed term ``v`` gives ``exp_nonpositive(v - M)`` if ``v >=
    M - 37.5`` (``M`` the maximum of all terms), else 0, summed by :func:`pairwise_sum`.
    ``-inf`` for a NaN position or when no term is finite."""
    position = np.asarray(position, dtype=np.float64)
    if np.isnan(position).any():
        return -np.inf
    terms = log_terms(position, references_t, log_weights, inv_two_h2, exclude)
    listed, maximum = [], -np.inf
    for start in range(0, len(terms), block):
        values = terms[start : start + block]
        maximum = max(maximum, float(values.max()))
        listed.append(values[values >= maximum + NEGLIGIBLE])
    if maximum == -np.inf:
        return -np.inf
    values = np.concatenate(listed)
    exponentials = np.where(values >= maximum + NEGLIGIBLE, exp_nonpositive(values - maximum), 0.0)
    return maximum + math.log(pairwise_sum(exponentials))


def plain_logsumexp(position, references_t, log_weights, inv_two_h2, exclude):
    """The plain log-sum-exp of the same log terms, every term kept, in long double (64-bit
    significand where the platform has it): the reference the kernel's accuracy bound is stated
    against."""
    terms = log_terms(position, references_t, log_weights, inv_two_h2, exclude)
    maximum = terms.max()
    if not np.isfinite(maximum):
        return float(maximum) if maximum == -np.inf else np.nan
    shifted = terms.astype(np.longdouble) - np.longdouble(maximum)
    return float(np.longdouble(maximum) + np.log(np.sum(np.exp(shifted))))


# -- supremum bound (``kde_sup_pairs``, ``kde_sup_neighbors``, ``voronoi_cell_bound``) ----------

TINY = np.finfo(np.float64).tiny
ROUNDOFF = 2.0**-53


def _weights(references, bandwidths):
    references = np.asarray(references, dtype=np.float64)
    n, dim = references.shape
    bandwidths = np.broadcast_to(np.asarray(bandwidths, dtype=np.float64), (n,))
    log_weights = -np.log(n) - dim * np.log(bandwidths) - 0.5 * dim * np.log(2 * np.pi)
    return references, bandwidths, log_weights, 0.5 / bandwidths**2


def sup_grid(references, bandwidths, n_cells, sub_bins=4, tail_nats=40.0):
    """Bin width, relative weights (1 when shared) and shared flag of the documented grid:
    ``rho_m^2 = (ln n + 40 + ln(w_max / w_min)) / kappa_min``, ``bin = rho_m / (cells s)``."""
    references, bandwidths, log_weights, kappas = _weights(references, bandwidths)
    n = len(references)
    shared = bool(np.all(bandwidths == bandwidths[0]))
    spread = log_weights.max() - log_weights.min()
    rho_max = np.sqrt((np.log(n) + tail_nats + spread) / kappas.min())
    relative = np.ones(n) if shared else np.maximum(np.exp(log_weights - log_weights.max()), TINY)
    return rho_max / (n_cells * sub_bins), relative, shared


def cell_bound(distances, weights, kappas, own_weight, own_kappa, bin_width, n_cells, sub_bins):
    """Largest cell bound of one Voronoi cell from the (already shrunk) distances of the other
    kernels, by the plain formula: on cell ``i`` a kernel of bin ``j`` is at most
    ``exp(-(bin_width max(i s, j - (i + 1) s))^2 kappa_bin)``, ``kappa_bin`` the smallest
    ``1 / (2 h^2)`` of its bin."""
    n_bins = (2 * n_cells + 1) * sub_bins + 1
    bins = np.minimum(np.floor(np.asarray(distances) / bin_width), n_bins - 1).astype(int)
    bin_weights = np.zeros(n_bins)
    np.add.at(bin_weights, bins, weights)
    bin_kappas = np.full(n_bins, np.inf)
    np.minimum.at(bin_kappas, bins, kappas)
    used = bin_weights > 0
    j = np.arange(n_bins)[used]
    best = 0.0
    for i in range(n_cells):
        own = (i * sub_bins * bin_width) ** 2
        steps = np.maximum(i * sub_bins, j - (i + 1) * sub_bins) * bin_width
        terms = bin_weights[used] * np.maximum(np.exp(-(steps**2) * bin_kappas[used]), TINY)
        total = own_weight * max(np.exp(-own * own_kappa), TINY) + terms.sum()
        best = max(best, total)
    return best


def _finish(values, references, bandwidths, bin_width, n_cells, sub_bins):
    """Per-point log bounds and the log bound (tail cell and rounding allowance included)."""
    references, bandwidths, log_weights, kappas = _weights(references, bandwidths)
    n = len(references)
    shared = bool(np.all(bandwidths == bandwidths[0]))
    relative = np.ones(n) if shared else np.maximum(np.exp(log_weights - log_weights.max()), TINY)
    last = n_cells * sub_bins * bin_width
    tail = np.sum(relative * np.maximum(np.exp(-(last**2) * kappas), TINY))
    n_bins = (2 * n_cells + 1) * sub_bins + 1
    allowance = 1e-9 + 4.0 * (n + n_bins + 64) * ROUNDOFF
    per_point = log_weights.max() + np.log(values) + allowance
    return max(per_point.max(), log_weights.max() + np.log(tail) + allowance), per_point


def sup_bound_pairs(references, bandwidths, n_cells, sub_bins=4):
    """``(log bound, per-point log bounds)`` of the all-pairs pass, by full float64 differences."""
    references, bandwidths, _, kappas = _weights(references, bandwidths)
    n, dim = references.shape
    bin_width, relative, _ = sup_grid(references, bandwidths, n_cells, sub_bins)
    shrink = 1.0 - 2.0 * (dim + 16) * ROUNDOFF
    values = np.empty(n)
    for v in range(n):
        others = np.arange(n) != v
        squared = ((references[others] - references[v]) ** 2).sum(axis=1)
        values[v] = cell_bound(
            np.sqrt(squared * shrink),
            relative[others],
            kappas[others],
            relative[v],
            kappas[v],
            bin_width,
            n_cells,
            sub_bins,
        )
    return _finish(values, references, bandwidths, bin_width, n_cells, sub_bins)


def sup_bound_neighbors(references, bandwidths, n_cells, neighbor_ids, far_distances, sub_bins=4):
    """The same from neighbour rows (column 0: the point itself): listed kernels at their exact
    distances, all others (their total weight, with the margin of ``8 n u`` when the bandwidths
    differ) at ``far_distances`` with the widest bandwidth of the prior."""
    references, bandwidths, _, kappas = _weights(references, bandwidths)
    n, dim = references.shape
    bin_width, relative, shared = sup_grid(references, bandwidths, n_cells, sub_bins)
    total = float(n) if shared else relative.sum() * (1.0 + 8.0 * n * ROUNDOFF)
    shrink = 1.0 - 2.0 * (dim + 16) * ROUNDOFF
    values = np.empty(n)
    for v in range(n):
        listed = np.asarray(neighbor_ids[v][1:], dtype=int)
        squared = ((references[listed] - references[v]) ** 2).sum(axis=1)
        distances = list(np.sqrt(squared * shrink))
        weights, bin_kappas = list(relative[listed]), list(kappas[listed])
        far = total - relative[v] - relative[listed].sum()
        if far > 0:
            distances.append(max(far_distances[v], 0.0))
            weights.append(far)
            bin_kappas.append(kappas.min())
        values[v] = cell_bound(
            distances, weights, bin_kappas, relative[v], kappas[v], bin_width, n_cells, sub_bins
        )
    return _finish(values, references, bandwidths, bin_width, n_cells, sub_bins)


def mean_shift(positions, references, bandwidths, n_iterations):
    """``n_iterations`` steps of ``x <- sum_v a_v r_v / sum_v a_v``, ``a_v = w_v h_v^-2
    exp(-||x - r_v||^2 / (2 h_v^2))``, with every term kept."""
    references, bandwidths, log_weights, kappas = _weights(references, bandwidths)
    out = np.array(positions, dtype=np.float64)
    for row in out:
        for _ in range(n_iterations):
            exponents = (
                log_weights - 2 * np.log(bandwidths) - ((references - row) ** 2).sum(1) * kappas
            )
            coefficients = np.exp(exponents - exponents.max())
            row[:] = coefficients @ references / coefficients.sum()
    return out
