"""Pure-numpy twins of the exact density-aware Laplace kernels (the section "exact
density-aware Laplace" of ``densitydp.mechanisms._kernels``).

The samplers consume the same random numbers in the same order from a numpy Generator as the
compiled kernels (numba's Generator methods follow numpy's algorithms), so with the same seed
kernel and twin make the same discrete choices (component, number of proposals, acceptance) and
agree on the floats to rounding. The deterministic parts are written independently where that
is cheap: the mode of the mixing law is a Brent root of the derivative of its log density on
the logit scale (the kernel bisects a polynomial), the Hermite interpolant uses the textbook
basis, distances and log-sum-exps are whole-array numpy expressions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from .mcmc import laplace_noise

#: The kernel clips the logit of the mode to this range.
LOGIT_LIMIT = 700.0

#: The quadrature stops this far (nats) below the maximum of the log integrand.
QUADRATURE_DEPTH = 60.0

#: Envelope codes of ``tilted_rejection_task``.


def logit_pair(y):
    """``(s, u) = (1 / (1 + e^-y), 1 / (1 + e^y))``."""
    return float(np.exp(-np.logaddexp(0.0, -y))), float(np.exp(-np.logaddexp(0.0, y)))


def log_slope(y, a, b, k, power):
    """``d/ds ln(s^(-power) u^k e^(-a s - b/s))`` times ``s u`` (same sign), at ``s = logit^-1(y)``:
    ``-power - k e^y - a s + b (1 + e^-y)``, strictly decreasing in ``y``."""
    s, _ = logit_pair(y)
    return -power - k * math.exp(y) - a * s + b * (1.0 + math.exp(-y))


def mixing_mode(a, b, k, power):
    """Mode ``(s, u)`` of ``s^(-power) u^k exp(-a s - b / s)`` on ``(0, 1)`` by Brent's method on
    the logit scale (the boundary of the clipped range when the mode lies beyond it)."""
    if log_slope(LOGIT_LIMIT, a, b, k, power) >= 0.0:
        return logit_pair(LOGIT_LIMIT)
    if log_slope(-LOGIT_LIMIT, a, b, k, power) <= 0.0:
        return logit_pair(-LOGIT_LIMIT)
    y = brentq(
        log_slope, -LOGIT_LIMIT, LOGIT_LIMIT, args=(a, b, k, power), xtol=1e-15, rtol=8.9e-16
    )
    return logit_pair(y)


def log_integrand(y, a, b, k):
    """``ln(s^(-1/2) u^(k+1) exp(-a s - b u / s))`` (the mixing integrand on the logit scale,
    Jacobian ``s u`` included, the factor ``e^b`` folded in), and ``s``."""
    log_s = -float(np.logaddexp(0.0, -y))
    log_u = -float(np.logaddexp(0.0, y))
    s = math.exp(log_s)
    return -0.5 * log_s + (k + 1.0) * log_u - a * s - b * math.exp(-y), s


def log_mixing_integral(a, b, k):
    """``(ln e^b int_0^1 s^(-3/2) (1-s)^k exp(-a s - b/s) ds, E[s])``: the kernel's trapezoidal rule
    on the logit scale (same nodes: centred on the mode, step 1/16 of the local scale capped at
    1/4, walked out until 60 nats below the top)."""
    s_mode, u_mode = mixing_mode(a, b, k + 1.0, 0.5)
    y_mode = math.log(s_mode) - math.log(u_mode)
    top, _ = log_integrand(y_mode, a, b, k)
    probe = 1e-3 * max(1.0, abs(y_mode))
    left, _ = log_integrand(y_mode - probe, a, b, k)
    right, _ = log_integrand(y_mode + probe, a, b, k)
    curvature = (2.0 * top - left - right) / probe**2
    step = min((1.0 / math.sqrt(curvature) if curvature > 0.0 else 1.0) / 16.0, 0.25)
    values, means = [top], [s_mode]
    for direction in (-1.0, 1.0):
        y = y_mode
        while True:
            y += direction * step
            value, s = log_integrand(y, a, b, k)
            values.append(value)
            means.append(s)
            if value < top - QUADRATURE_DEPTH or abs(y) > 800.0:
                break
    terms = np.exp(np.array(values) - top)
    return top + math.log(terms.sum() * step), float(terms @ np.array(means) / terms.sum())


def log_normalizer_nodes(deltas, epsilon, bandwidth, dim):
    """``(ln Z(delta), d ln Z / d delta)`` for each delta, from :func:`log_mixing_integral`."""
    b = 0.5 * (epsilon * bandwidth) ** 2
    k = 0.5 * (dim - 1.0)
    constant = math.log(epsilon * bandwidth / math.sqrt(2.0 * math.pi))
    values, slopes = [], []
    for delta in np.asarray(deltas, dtype=np.float64):
        log_integral, mean_s = log_mixing_integral(0.5 * (delta / bandwidth) ** 2, b, k)
        values.append(constant + log_integral)
        slopes.append(-delta / bandwidth**2 * mean_s)
    return np.array(values), np.array(slopes)


def hermite(deltas, spacing, values, slopes):
    """Cubic Hermite interpolation on the grid ``j * spacing`` (textbook basis ``h00 .. h11``);
    points beyond the last cell are extrapolated from it."""
    position = np.asarray(deltas, dtype=np.float64) / spacing
    j = np.minimum(position.astype(np.int64), len(values) - 2)
    t = position - j
    h00 = 2 * t**3 - 3 * t**2 + 1
    h10 = t**3 - 2 * t**2 + t
    h01 = -2 * t**3 + 3 * t**2
    h11 = t**3 - t**2
    return (
        h00 * values[j]
        + h10 * spacing * slopes[j]
        + h01 * values[j + 1]
        + h11 * spacing * slopes[j + 1]
    )


def squared_distances(center, references):
    return ((np.asarray(references, dtype=np.float64) - center) ** 2).sum(axis=1)


def component_log_weights(center, references, spacing, values, slopes):
    """``(ln Z(||mu_v - c||), ||mu_v - c||^2)`` for every row ``mu_v`` of ``references``."""
    squared = squared_distances(center, references)
    return hermite(np.sqrt(squared), spacing, values, slopes), squared


def mixture_cumulative(center, references, spacing, values, slopes):
    """``(ln sum_v Z_v, cumulative masses relative to the largest, squared distances)``."""
    log_weights, squared = component_log_weights(center, references, spacing, values, slopes)
    top = log_weights.max()
    cumulative = np.cumsum(np.exp(log_weights - top))
    return top + math.log(cumulative[-1]), cumulative, squared


def inverse_gaussian(rng, mean, shape):
    """Michael–Schucany–Haas: one normal, one uniform (the kernel's cancellation-free root)."""
    normal = rng.standard_normal()
    phi = mean * normal**2 / (2.0 * shape)
    x = mean / (1.0 + phi + math.sqrt(phi * (2.0 + phi)))
    return x if rng.random() * (mean + x) <= mean else mean * (mean / x)


def mixing_envelopes(a, b, k):
    """``(s0, u0, log_mass_ig, a_ig, log_mass_gamma, rate)`` of the two rejection envelopes."""
    s0, u0 = mixing_mode(a, b, k, 1.5)
    a_ig = a + k / u0
    log_mass_ig = (
        k * math.log(u0) + k * s0 / u0 + 0.5 * math.log(math.pi / b) - 2.0 * math.sqrt(a_ig * b)
    )
    log_mass_gamma, rate = math.inf, 0.0
    if b >= 0.75:
        rate = b / s0**2 - 1.5 / s0 - a
        if rate > 0.0:
            psi = -1.5 * math.log(s0) + a * u0 - b / s0
            log_mass_gamma = psi + rate * u0 - a + math.lgamma(k + 1.0) - (k + 1.0) * math.log(rate)
    return s0, u0, log_mass_ig, a_ig, log_mass_gamma, rate


def sample_mixing_weight(rng, a, b, k, budget):
    """``(u, proposals, accepted)``: rejection from the smaller envelope; ``budget > 0`` draws
    and counts exactly ``budget`` proposals (no uniform once one was accepted) and returns the
    first accepted one, else the mode ``u0``."""
    s0, u0, log_mass_ig, a_ig, log_mass_gamma, rate = mixing_envelopes(a, b, k)
    use_gamma = log_mass_gamma < log_mass_ig
    psi0 = -1.5 * math.log(s0) + a * u0 - b / s0
    chosen, accepted, proposals = u0, False, 0
    while budget <= 0 or proposals < budget:
        proposals += 1
        if use_gamma:
            u = rng.gamma(k + 1.0, 1.0 / rate)
            s = 1.0 - u
            log_ratio = (
                -1.5 * math.log(s) + a * u - b / s - psi0 + rate * (u - u0)
                if u < 1.0
                else -math.inf
            )
        else:
            if a_ig > 0.0:
                s = inverse_gaussian(rng, math.sqrt(b / a_ig), 2.0 * b)
            else:  # Levy: b / (N^2 / 2)
                s = 2.0 * b / rng.standard_normal() ** 2
            u = 1.0 - s
            log_ratio = (
                k * (math.log1p(-s) - math.log(u0) + (s - s0) / u0) if s < 1.0 else -math.inf
            )
        if not accepted and math.log(rng.random()) < log_ratio:
            chosen, accepted = u, True
            if budget <= 0:
                break
    return chosen, proposals, accepted


def draw_tilt_one(rng, center, references, cumulative, squared, bandwidth, b, k, budget):
    """``(point, proposals, accepted)``: a component by inverse CDF, its mixing weight, normals."""
    target = rng.random() * cumulative[-1]
    v = min(int(np.searchsorted(cumulative, target, side="right")), len(cumulative) - 1)
    u, proposals, accepted = sample_mixing_weight(
        rng, squared[v] / (2.0 * bandwidth**2), b, k, budget
    )
    normals = rng.standard_normal(len(center))
    mu = np.asarray(references[v], dtype=np.float64)
    return center + u * (mu - center) + bandwidth * math.sqrt(u) * normals, proposals, accepted


def tilt_one_task(rng, center, references, bandwidth, epsilon, table, budget, n_tokens):
    """``(points, proposals, failures)`` of ``n_tokens`` exact tilt-1 draws around ``center``;
    ``table = (spacing, values, slopes)``."""
    _, cumulative, squared = mixture_cumulative(center, references, *table)
    b = 0.5 * (epsilon * bandwidth) ** 2
    k = 0.5 * (len(center) - 1.0)
    points = np.empty((n_tokens, len(center)))
    proposals = np.empty(n_tokens, dtype=np.int64)
    failures = np.empty(n_tokens, dtype=bool)
    for i in range(n_tokens):
        points[i], proposals[i], accepted = draw_tilt_one(
            rng, center, references, cumulative, squared, bandwidth, b, k, budget
        )
        failures[i] = not accepted
    return points, proposals, failures


def two_logsumexps(position, references, first_scale, second_scale):
    """``(ln sum_v e^(-first_scale q_v), ln sum_v e^(-second_scale q_v))``,
    ``q_v = ||position - mu_v||^2``."""
    squared = squared_distances(position, references)
    smallest = squared.min()
    return tuple(
        math.log(np.exp(-scale * (squared - smallest)).sum()) - scale * smallest
        for scale in (first_scale, second_scale)
    )


def log_kde(point, references, bandwidth):
    """``ln (1/n) sum_v N(point; mu_v, h^2 I)``."""
    close, _ = two_logsumexps(point, references, 0.5 / bandwidth**2, 0.5 / bandwidth**2)
    return (
        close - math.log(len(references)) - 0.5 * len(point) * math.log(2 * math.pi * bandwidth**2)
    )


def tilted_rejection_task(
    rng, center, references, bandwidth, epsilon, tilt, rhos, tables, log_laplace_mass, n_tokens
):
    """``(points, proposals, r, log_mass)`` of ``n_tokens`` exact draws of
    ``exp(-epsilon ||x - c||) p(x)^tilt`` (``0 < tilt < 1``) by rejection from the envelope of
    smallest mass among ``rho in rhos``: ``mu (tilt-1 law of the prior at bandwidth
    h / sqrt(rho)) + (1 - mu) Laplace``, ``mu = tilt / rho`` (subadditivity, then Young);
    ``tables[r]`` is the ``(spacing, values, slopes)`` of bandwidth ``h / sqrt(rhos[r])``."""
    n_points, dim = references.shape
    log_n = math.log(n_points)
    log_kernel = 0.5 * dim * math.log(2.0 * math.pi * bandwidth**2)

    def log_constant(rho):
        return (1.0 - rho) * (log_n + log_kernel) - 0.5 * dim * math.log(rho)

    masses, log_zs = [], []
    for rho, table in zip(rhos, tables, strict=True):
        log_z = mixture_cumulative(center, references, *table)[0] - log_n
        mu = tilt / rho
        masses.append(mu * (log_constant(rho) + log_z) + (1.0 - mu) * log_laplace_mass)
        log_zs.append(log_z)
    best = int(np.argmin(masses))
    rho = rhos[best]
    mu = tilt / rho
    _, cumulative, squared = mixture_cumulative(center, references, *tables[best])
    wide = bandwidth / math.sqrt(rho)
    k = 0.5 * (dim - 1.0)
    log_kappa = log_zs[best] - log_laplace_mass
    log_wide_kernel = 0.5 * dim * math.log(2.0 * math.pi * wide**2)
    scale = 0.5 / bandwidth**2
    points = np.empty((n_tokens, dim))
    proposals = np.empty(n_tokens, dtype=np.int64)
    for i in range(n_tokens):
        count = 0
        while True:
            count += 1
            if mu >= 1.0 or rng.random() < mu:
                point, _, _ = draw_tilt_one(
                    rng, center, references, cumulative, squared, wide,
                    0.5 * (epsilon * wide) ** 2, k, 0,
                )  # fmt: skip
            else:
                point = center + laplace_noise(rng, dim, epsilon)
            close, far = two_logsumexps(point, references, scale, rho * scale)
            log_p = close - log_n - log_kernel
            log_q = far - log_n - log_wide_kernel
            if mu >= 1.0:
                log_accept = tilt * log_p - log_constant(rho) - log_q
            else:
                log_accept = (
                    tilt * log_p
                    - mu * (log_constant(rho) + log_kappa)
                    - float(np.logaddexp(math.log(mu) + log_q - log_kappa, math.log1p(-mu)))
                )
            if math.log(rng.random()) < log_accept:
                break
        points[i], proposals[i] = point, count
    return points, proposals, best, masses[best]


def _mixture_proposal(rng, center, references, cumulative, squared, bandwidth, epsilon, alpha):
    if alpha >= 1.0 or rng.random() < alpha:
        point, _, _ = draw_tilt_one(
            rng, center, references, cumulative, squared, bandwidth,
            0.5 * (epsilon * bandwidth) ** 2, 0.5 * (len(center) - 1.0), 0,
        )  # fmt: skip
        return point
    return center + laplace_noise(rng, len(center), epsilon)


def mixture_log_weight(point, references, bandwidth, tilt, alpha, log_z1, log_laplace_mass):
    """``tilt ln p(x) - ln(alpha p(x) / Z_1 + (1 - alpha) / L)``."""
    log_p = log_kde(point, references, bandwidth)
    if alpha >= 1.0:
        return tilt * log_p - (math.log(alpha) + log_p - log_z1)
    return tilt * log_p - float(
        np.logaddexp(math.log(alpha) + log_p - log_z1, math.log1p(-alpha) - log_laplace_mass)
    )


def certified_chain_task(
    rng, center, references, bandwidth, epsilon, tilt, alpha, table, log_z1, log_laplace_mass,
    n_steps, n_tokens,
):  # fmt: skip
    """``(points, accepted)``: per token an independence Metropolis–Hastings chain of
    ``n_steps`` steps, proposal ``alpha * (tilt-1 law) + (1 - alpha) * Laplace``, started at a
    draw of that proposal."""
    _, cumulative, squared = mixture_cumulative(center, references, *table)
    points = np.empty((n_tokens, len(center)))
    accepted = np.empty(n_tokens, dtype=np.int64)

    def propose():
        return _mixture_proposal(
            rng, center, references, cumulative, squared, bandwidth, epsilon, alpha
        )

    def weight(x):
        return mixture_log_weight(x, references, bandwidth, tilt, alpha, log_z1, log_laplace_mass)

    for i in range(n_tokens):
        point = propose()
        current = weight(point)
        count = 0
        for _ in range(n_steps):
            proposal = propose()
            candidate = weight(proposal)
            if math.log(rng.random()) < candidate - current:
                point, current = proposal, candidate
                count += 1
        points[i], accepted[i] = point, count
    return points, accepted
