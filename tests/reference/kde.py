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


def blocked_logsumexp(position, references_t, log_weights, inv_two_h2, exclude, block=512):
    """The plain formulation of ``_kernels.kde_logsumexp_bounded``, in numpy and Python floats:
    per block of ``block`` references, every squared distance (coordinate by coordinate, float64
    differences) and every log term, the block maximum over all of them, the running sum rescaled
    when the maximum rises, and ``exp(term - max)`` added in index order for every term not more
    than 37.5 nats below the running maximum (``exclude``: -1 or an index left out)."""
    position = np.asarray(position, dtype=np.float64)
    n = references_t.shape[1]
    running_max, total = -np.inf, 0.0
    for start in range(0, n, block):
        stop = min(start + block, n)
        squared = np.zeros(stop - start)
        for j in range(references_t.shape[0]):
            difference = position[j] - references_t[j, start:stop].astype(np.float64)
            squared += difference * difference
        terms = log_weights[start:stop] - squared * inv_two_h2[start:stop]
        if start <= exclude < stop:
            terms[exclude - start] = -np.inf
        finite = terms[~np.isnan(terms)]
        block_max = float(finite.max()) if finite.size else -np.inf
        if block_max == -np.inf:
            continue
        if block_max > running_max:
            total *= math.exp(running_max - block_max)
            running_max = block_max
        cut = running_max - 37.5
        for value in terms:
            if value >= cut:
                total += math.exp(float(value) - running_max)
    return -np.inf if total == 0.0 else running_max + math.log(total)


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
