"""Exact density-aware Laplace (``densitydp.mechanisms.tilted`` and the kernels of the section
"exact density-aware Laplace" of ``densitydp.mechanisms._kernels``).

* every kernel against its pure-numpy twin (``tests/reference/tilted.py``): the same discrete
  choices draw for draw, floats to 1e-12;
* ``ln Z(delta) = ln E[exp(-epsilon ||delta e_1 + h G||)]`` (quadrature and table) against an
  independent two-dimensional quadrature of the definition and against Monte Carlo;
* the samplers against the exact laws: the mixing weight ``u`` (both envelopes), the inverse
  Gaussian, one component of the tilt-1 target in 2-D and 3-D, the whole tilt-1 target and the
  0 < tilt < 1 rejection sampler in 2-D (both envelopes);
* the budget semantics of the mixing-weight sampler.

Statistical tests use fixed seeds; Kolmogorov–Smirnov p-values must exceed ``P_MIN`` and
frequencies must lie within ``Z_BOUND`` standard errors.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammaln, ive, logsumexp

from densitydp.mechanisms import _kernels
from densitydp.mechanisms.tilted import (
    LogNormalizerTable,
    log_laplace_mass,
    log_normalizer,
    mixing_acceptance,
    stack_tables,
)
from reference import tilted as twin

#: Smallest accepted p-value of a goodness-of-fit test at a fixed seed.
P_MIN = 1e-4

#: Standard errors allowed between a measured frequency and its prediction.
Z_BOUND = 4.0

#: Relative tolerance between a kernel and its twin on floats (rounding only).
TWIN_RTOL = 1e-12

#: Relative accuracy requested from every scipy quadrature below.
QUAD_RTOL = 1e-12

#: ``(a, b, k)`` of the mixing law ``s^(-3/2) u^k exp(-a s - b/s)`` and the envelope that
#: ``sample_mixing_weight`` uses (the one of smaller mass). ``b = 16.5, k = 24.5`` is GloVe-like
#: (epsilon 10, h 0.574, d 50): the inverse Gaussian envelope is the smaller one there; the
#: gamma envelope takes over for larger ``b``.
MIXING_CASES = {
    "ig-d3": (2.0, 0.3, 1.0, "ig"),
    "ig-d1": (1.0, 0.5, 0.0, "ig"),
    "exponential-d1-mode-at-u0": (0.0, 2.0, 0.0, "gamma"),  # no interior mode: u0 = e^-700
    "levy-a0-d1": (0.0, 0.4, 0.0, "ig"),
    "ig-a0-d5": (0.0, 0.5, 2.0, "ig"),
    "ig-glove-a0": (0.0, 16.5, 24.5, "ig"),
    "ig-glove": (30.0, 16.5, 24.5, "ig"),
    "gamma-a0-d3": (0.0, 4.5, 1.0, "gamma"),
    "gamma-a0-d50": (0.0, 50.0, 24.5, "gamma"),
    "gamma-d50": (10.0, 50.0, 24.5, "gamma"),
    "gamma-small-u": (0.0, 200.0, 1.0, "gamma"),
}


def _envelope(a: float, b: float, k: float) -> str:
    _, _, log_mass_ig, _, log_mass_gamma, _ = _kernels.mixing_envelopes(a, b, k)
    return "gamma" if log_mass_gamma < log_mass_ig else "ig"


@functools.cache
def _table(epsilon: float, bandwidth: float, dim: int, max_distance: float) -> LogNormalizerTable:
    return LogNormalizerTable(epsilon, bandwidth, dim, max_distance)


def _transpose(references: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(references.T)


def _interpolated_cdf(grid: np.ndarray, density: np.ndarray):
    """CDF on ``grid`` by the cumulative trapezoidal rule, linear in between."""
    cumulative = integrate.cumulative_trapezoid(density, grid, initial=0.0)
    cumulative /= cumulative[-1]
    return lambda x: np.interp(x, grid, cumulative)


# -- independent references --------------------------------------------------------------------


@functools.cache
def direct_log_normalizer(delta: float, epsilon: float, bandwidth: float, dim: int) -> float:
    """``ln E[exp(-epsilon ||delta e_1 + h G||)]``, ``G ~ N(0, I_dim)``, integrating the
    definition ``int exp(-epsilon ||y||) N(y; delta e_1, h^2 I) dy`` directly with scipy.

    Coordinates: ``y = (r cos theta, r sin theta omega)`` with ``omega`` on the unit sphere of
    the ``n = dim - 1`` perpendicular dimensions (area ``2 pi^(n/2) / Gamma(n/2)``), so
    ``dy = r^n sin^(n-1) theta dr dtheta domega``: a smooth two-dimensional integrand over
    ``(r, theta)`` (the cone point of ``||y||`` sits at ``r = 0``). ``dim = 1``: one quad with
    a break at the cone point. The integrand is scaled by its maximum on a grid first.
    """
    h2 = bandwidth * bandwidth
    if dim == 1:

        def log_f1(x):
            return (
                -0.5 * math.log(2 * math.pi * h2) - (x - delta) ** 2 / (2 * h2) - epsilon * abs(x)
            )

        low, high = delta - 15 * bandwidth, delta + 15 * bandwidth
        top = max(log_f1(x) for x in np.linspace(low, high, 3001))
        value, _ = integrate.quad(
            lambda x: math.exp(log_f1(x) - top), low, high, points=[0.0] if low < 0 else None,
            epsabs=0.0, epsrel=QUAD_RTOL, limit=200,
        )  # fmt: skip
        return top + math.log(value)
    n = dim - 1
    constant = (
        math.log(2.0)
        + 0.5 * n * math.log(math.pi)
        - gammaln(0.5 * n)
        - 0.5 * dim * math.log(2 * math.pi * h2)
    )

    def log_f(theta, r):
        return (
            constant + n * math.log(r) + (n - 1) * math.log(math.sin(theta)) - epsilon * r
            - (r * r - 2 * r * delta * math.cos(theta) + delta * delta) / (2 * h2)
        )  # fmt: skip

    r_high = delta + bandwidth * (math.sqrt(dim) + 15.0)
    top = max(
        log_f(theta, r)
        for theta in np.linspace(1e-3, math.pi - 1e-3, 200)
        for r in np.linspace(1e-3, r_high, 400)
    )
    options = {"epsabs": 0.0, "epsrel": QUAD_RTOL, "limit": 200}
    value, _ = integrate.nquad(
        lambda theta, r: math.exp(log_f(theta, r) - top),
        [[0.0, math.pi], [0.0, r_high]],
        opts=[options, options],
    )
    return top + math.log(value)


def mixing_law_cdf(a: float, b: float, k: float):
    """CDF of ``u`` with density proportional to ``s^(-3/2) u^k exp(-a s - b/s)``, ``s = 1 - u``.

    The density of ``y = ln(s / u)`` is ``s^(-1/2) u^(k+1) exp(-a s - b/s)``; it is integrated
    on 200,001 points of the interval where it exceeds e^-50 of its maximum (cumulative
    trapezoidal rule). The normaliser is checked against scipy's ``quad`` on ``s``.
    """

    def log_density_y(y):
        log_s, log_u = -np.logaddexp(0.0, -y), -np.logaddexp(0.0, y)
        return -0.5 * log_s + (k + 1.0) * log_u - a * np.exp(log_s) - b * np.exp(-log_s)

    coarse = np.linspace(-60.0, 120.0, 18001)
    log_coarse = log_density_y(coarse)
    top = log_coarse.max()
    inside = coarse[log_coarse > top - 50.0]
    grid = np.linspace(inside[0] - 0.05, inside[-1] + 0.05, 200_001)
    density = np.exp(log_density_y(grid) - top)
    cumulative = integrate.cumulative_trapezoid(density, grid, initial=0.0)
    mode = grid[np.argmax(density)]
    s_mode = 1.0 / (1.0 + math.exp(-mode))
    total, _ = integrate.quad(
        lambda s: math.exp(-1.5 * math.log(s) + k * math.log1p(-s) - a * s - b / s - top),
        0.0, 1.0, points=[s_mode], epsabs=0.0, epsrel=1e-10, limit=400,
    )  # fmt: skip
    assert cumulative[-1] == pytest.approx(total, rel=1e-7)
    cumulative /= cumulative[-1]

    def cdf(u):
        u = np.asarray(u, dtype=np.float64)
        with np.errstate(divide="ignore"):
            y = np.log1p(-u) - np.log(u)
        return 1.0 - np.interp(y, grid, cumulative)

    return cdf


def component_marginal_cdfs(epsilon: float, bandwidth: float, dim: int, delta: float):
    """CDFs of ``t = (x - c) . e`` and ``r = ||x - c||`` under the density proportional to
    ``exp(-epsilon ||x - c||) N(x; c + delta e, h^2 I_dim)``, by numerical integration.

    ``r``: ``r^(d-1) exp(-epsilon r - (r - delta)^2 / 2h^2) kappa^-nu I_nu(kappa) e^-kappa``
    with ``nu = d/2 - 1``, ``kappa = r delta / h^2`` (the angular integral of the Gaussian).
    ``t``: ``exp(-(t - delta)^2 / 2h^2) int_0^inf rho^(d-2) exp(-epsilon sqrt(t^2 + rho^2) -
    rho^2 / 2h^2) d rho`` (scipy ``quad_vec`` over the whole ``t`` grid at once).
    """
    h2 = bandwidth * bandwidth
    nu = 0.5 * dim - 1.0
    radii = np.linspace(1e-9, delta + 15 * bandwidth, 200_001)
    kappa = radii * delta / h2
    log_radial = (
        (dim - 1) * np.log(radii) - epsilon * radii - (radii - delta) ** 2 / (2 * h2)
        + np.log(ive(nu, kappa)) - nu * np.log(kappa)
    )  # fmt: skip
    radial_cdf = _interpolated_cdf(radii, np.exp(log_radial - log_radial.max()))
    along = np.linspace(-15 * bandwidth, delta + 15 * bandwidth, 4001)
    perpendicular, _ = integrate.quad_vec(
        lambda rho: rho ** (dim - 2)
        * np.exp(-epsilon * np.sqrt(along**2 + rho**2) - rho**2 / (2 * h2)),
        0.0, 15 * bandwidth, epsabs=1e-14, epsrel=1e-10, norm="max",
    )  # fmt: skip
    along_cdf = _interpolated_cdf(along, perpendicular * np.exp(-((along - delta) ** 2) / (2 * h2)))
    return along_cdf, radial_cdf


def grid_law_2d(center, references, bandwidth, epsilon, tilt, half_width, n_grid=1501):
    """``(log mass, CDF of x_0, CDF of x_1)`` of ``exp(-epsilon ||x - c||) p(x)^tilt`` in 2-D
    (``p`` the Gaussian KDE of ``references``) on a square grid around ``center``."""
    axes = [np.linspace(c - half_width, c + half_width, n_grid) for c in center]
    x0, x1 = np.meshgrid(*axes, indexing="ij")
    squared = (x0[..., None] - references[:, 0]) ** 2 + (x1[..., None] - references[:, 1]) ** 2
    log_p = (
        logsumexp(-squared / (2 * bandwidth**2), axis=-1)
        - math.log(len(references)) - math.log(2 * math.pi * bandwidth**2)
    )  # fmt: skip
    log_target = -epsilon * np.hypot(x0 - center[0], x1 - center[1]) + tilt * log_p
    top = log_target.max()
    density = np.exp(log_target - top)
    step = axes[0][1] - axes[0][0]
    log_mass = top + math.log(integrate.trapezoid(integrate.trapezoid(density, dx=step), dx=step))
    first = _interpolated_cdf(axes[0], integrate.trapezoid(density, dx=step, axis=1))
    second = _interpolated_cdf(axes[1], integrate.trapezoid(density, dx=step, axis=0))
    return log_mass, first, second


# -- kernels against their twins ---------------------------------------------------------------

MODE_CASES = [
    (2.0, 0.3, 1.0, 1.5),
    (0.0, 0.4, 0.0, 1.5),
    (0.0, 16.5, 24.5, 1.5),
    (30.0, 16.5, 25.5, 0.5),
    (1e4, 1e-6, 0.5, 1.5),  # mode near s = 0 (logit ~ -23)
    (0.0, 3.0, 0.0, 1.5),  # no interior mode: clipped at u = e^-700
    (5e3, 300.0, 149.5, 0.5),
]


@pytest.mark.parametrize(("a", "b", "k", "power"), MODE_CASES)
def test_mixing_mode_matches_twin(a, b, k, power):
    s, u = _kernels.mixing_mode(a, b, k, power)
    s_twin, u_twin = twin.mixing_mode(a, b, k, power)
    np.testing.assert_allclose([s, u], [s_twin, u_twin], rtol=TWIN_RTOL, atol=0)
    y = math.log(s) - math.log(u)
    if abs(y) < 690:  # an interior mode: the log density rises before it and falls after it
        step = 1e-9 * max(1.0, abs(y))
        assert (
            twin.log_slope(y - step, a, b, k, power) > 0 > twin.log_slope(y + step, a, b, k, power)
        )


@pytest.mark.parametrize(("a", "b", "k", "power"), MODE_CASES)
def test_mixing_envelopes_and_integral_match_twin(a, b, k, power):
    np.testing.assert_allclose(
        _kernels.mixing_envelopes(a, b, k), twin.mixing_envelopes(a, b, k), rtol=TWIN_RTOL
    )
    np.testing.assert_allclose(
        _kernels.log_mixing_integral(a, b, k), twin.log_mixing_integral(a, b, k), rtol=TWIN_RTOL
    )


@pytest.mark.parametrize(
    ("epsilon", "bandwidth", "dim"), [(3.0, 0.4, 2), (10.0, 0.574, 50), (0.5, 1.0, 1)]
)
def test_log_normalizer_nodes_match_twin(epsilon, bandwidth, dim):
    deltas = np.array([0.0, 1e-6, 0.1, 0.7, 2.5, 6.0])
    values, slopes = np.empty(6), np.empty(6)
    _kernels.log_normalizer_nodes(deltas, epsilon, bandwidth, float(dim), values, slopes)
    twin_values, twin_slopes = twin.log_normalizer_nodes(deltas, epsilon, bandwidth, dim)
    np.testing.assert_allclose(values, twin_values, rtol=TWIN_RTOL)
    np.testing.assert_allclose(slopes, twin_slopes, rtol=TWIN_RTOL)
    np.testing.assert_array_equal(values, log_normalizer(deltas, epsilon, bandwidth, dim))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hermite_and_component_log_weights_match_twin(dtype):
    table = _table(3.0, 0.4, 2, 3.0)
    spacing, values, slopes = table.numba_args()
    nodes = np.arange(len(values)) * spacing
    at_nodes = np.empty(len(nodes))
    _kernels.interpolate_table(nodes, spacing, values, slopes, at_nodes)
    np.testing.assert_allclose(at_nodes, values, rtol=1e-14)  # the interpolant hits the nodes
    deltas = np.random.default_rng(0).uniform(0, 3.0, 500)
    out = np.empty(500)
    _kernels.interpolate_table(deltas, spacing, values, slopes, out)
    np.testing.assert_allclose(out, twin.hermite(deltas, spacing, values, slopes), rtol=TWIN_RTOL)
    assert _kernels.hermite(deltas[7], spacing, values, slopes) == out[7]
    generator = np.random.default_rng(1)
    references = generator.uniform(-1, 1, (1300, 2)).astype(dtype)  # three blocks
    center = np.array([0.1, -0.2])
    weights, squared = np.empty(1300), np.empty(1300)
    _kernels.component_log_weights(
        center, _transpose(references), spacing, values, slopes, weights, squared
    )
    twin_weights, twin_squared = twin.component_log_weights(
        center, references, spacing, values, slopes
    )
    np.testing.assert_allclose(weights, twin_weights, rtol=TWIN_RTOL)
    np.testing.assert_allclose(squared, twin_squared, rtol=TWIN_RTOL)


def test_inverse_gaussian_matches_twin():
    """The same normals and uniforms give the same draws (to an ulp: the compiled arithmetic
    may round differently from CPython's)."""
    for mean, shape in [(1.0, 2.0), (0.3, 40.0), (100.0, 0.01)]:
        first, second = np.random.default_rng(3), np.random.default_rng(3)
        drawn = [_kernels.inverse_gaussian(first, mean, shape) for _ in range(500)]
        expected = [twin.inverse_gaussian(second, mean, shape) for _ in range(500)]
        np.testing.assert_allclose(drawn, expected, rtol=4 * np.finfo(float).eps, atol=0)
        assert first.random() == second.random()  # the same numbers were consumed


@pytest.mark.parametrize("budget", [0, 1, 3])
@pytest.mark.parametrize("case", list(MIXING_CASES))
def test_sample_mixing_weight_matches_twin(case, budget):
    a, b, k, envelope = MIXING_CASES[case]
    assert _envelope(a, b, k) == envelope
    first, second = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(300):
        u, proposals, accepted = _kernels.sample_mixing_weight(first, a, b, k, budget)
        u_twin, proposals_twin, accepted_twin = twin.sample_mixing_weight(second, a, b, k, budget)
        assert (proposals, accepted) == (proposals_twin, accepted_twin)
        assert u == pytest.approx(u_twin, rel=TWIN_RTOL, abs=0)
    assert first.random() == second.random()


@pytest.mark.parametrize(
    ("dim", "epsilon", "bandwidth", "dtype", "budget"),
    [(2, 3.0, 0.3, np.float64, 0), (5, 6.0, 0.5, np.float32, 0), (5, 6.0, 0.5, np.float64, 2)],
)
def test_tilt_one_task_matches_twin(dim, epsilon, bandwidth, dtype, budget):
    generator = np.random.default_rng(dim)
    references = generator.normal(0, 0.6, (40, dim)).astype(dtype)
    center = references[3].astype(np.float64) + 0.2
    max_distance = float(np.linalg.norm(references - center, axis=1).max()) + 0.1
    table = _table(epsilon, bandwidth, dim, round(max_distance, 1) + 0.1)
    points, proposals = np.empty((200, dim)), np.empty(200, np.int64)
    failures = np.empty(200, np.bool_)
    _kernels.tilt_one_task(
        np.random.default_rng(5), center, references, _transpose(references), bandwidth, epsilon,
        *table.numba_args(), budget, points, proposals, failures,
    )  # fmt: skip
    twin_points, twin_proposals, twin_failures = twin.tilt_one_task(
        np.random.default_rng(5), center, references, bandwidth, epsilon, table.numba_args(),
        budget, 200,
    )  # fmt: skip
    np.testing.assert_array_equal(proposals, twin_proposals)
    np.testing.assert_array_equal(failures, twin_failures)
    np.testing.assert_allclose(points, twin_points, rtol=TWIN_RTOL, atol=1e-13)
    if budget:
        assert (proposals == budget).all()
    else:
        assert not failures.any()


def test_two_logsumexps_matches_twin():
    generator = np.random.default_rng(4)
    references = generator.normal(0, 1, (1200, 3)).astype(np.float32)  # three blocks
    position = np.array([3.0, -1.0, 0.5])
    got = _kernels.two_logsumexps(position, _transpose(references), 40.0, 0.7)
    np.testing.assert_allclose(
        got, twin.two_logsumexps(position, references, 40.0, 0.7), rtol=TWIN_RTOL
    )
    far = position + 50.0  # every term underflows without the shift
    got = _kernels.two_logsumexps(far, _transpose(references), 40.0, 0.7)
    np.testing.assert_allclose(got, twin.two_logsumexps(far, references, 40.0, 0.7), rtol=TWIN_RTOL)
    assert np.isfinite(got).all()


REFERENCES_2D = np.array([[0.0, 0.0], [0.6, 0.2], [-0.3, 0.7]])

#: ``(center, epsilon, bandwidth, tilt, rhos, chosen)`` of ``tilted_rejection_task`` in 2-D with
#: :data:`REFERENCES_2D`: the pure mixture envelope (rho = 1), the pure bandwidth envelope
#: (rho = tilt), and the family the mechanism uses (the smallest mass wins; ``chosen`` is its
#: index at these settings).
REJECTION_CASES = {
    "mixture": ((0.2, 0.1), 3.0, 0.3, 0.5, (1.0,), 0),
    "bandwidth": ((1.5, -1.0), 3.0, 0.3, 0.5, (0.5,), 0),
    "family": ((1.5, -1.0), 3.0, 0.3, 0.2, (0.2, 0.4, 0.7, 1.0), None),
}


def _rejection_tables(epsilon, bandwidth, rhos):
    tables = [_table(epsilon, bandwidth / math.sqrt(rho), 2, 4.0) for rho in rhos]
    return tables, stack_tables(rhos, tables)


@pytest.mark.parametrize("case", list(REJECTION_CASES))
def test_tilted_rejection_task_matches_twin(case):
    center, epsilon, bandwidth, tilt, rhos, chosen = REJECTION_CASES[case]
    center = np.array(center)
    tables, packed = _rejection_tables(epsilon, bandwidth, rhos)
    log_l = log_laplace_mass(epsilon, 2)
    points, proposals = np.empty((100, 2)), np.empty(100, np.int64)
    got = _kernels.tilted_rejection_task(
        np.random.default_rng(8), center, REFERENCES_2D, _transpose(REFERENCES_2D), bandwidth,
        epsilon, tilt, *packed, log_l, points, proposals,
    )  # fmt: skip
    twin_points, twin_proposals, *expected = twin.tilted_rejection_task(
        np.random.default_rng(8), center, REFERENCES_2D, bandwidth, epsilon, tilt, rhos,
        [t.numba_args() for t in tables], log_l, 100,
    )  # fmt: skip
    assert got[0] == expected[0]
    if chosen is not None:
        assert got[0] == chosen
    assert got[1] == pytest.approx(expected[1], rel=TWIN_RTOL)
    np.testing.assert_array_equal(proposals, twin_proposals)
    np.testing.assert_allclose(points, twin_points, rtol=TWIN_RTOL, atol=1e-13)
    assert proposals.max() > 1  # some proposals were rejected


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_certified_chain_task_matches_twin(alpha):
    center, epsilon, bandwidth, tilt = np.array([0.2, 0.1]), 3.0, 0.3, 2.0
    table = _table(epsilon, bandwidth, 2, 4.0)
    log_z1 = float(logsumexp(table(np.linalg.norm(REFERENCES_2D - center, axis=1)))) - math.log(3)
    log_l = log_laplace_mass(epsilon, 2)
    points, accepted = np.empty((20, 2)), np.empty(20, np.int64)
    _kernels.certified_chain_task(
        np.random.default_rng(9), center, REFERENCES_2D, _transpose(REFERENCES_2D), bandwidth,
        epsilon, tilt, alpha, *table.numba_args(), log_z1, log_l, 30, points, accepted,
    )  # fmt: skip
    twin_points, twin_accepted = twin.certified_chain_task(
        np.random.default_rng(9), center, REFERENCES_2D, bandwidth, epsilon, tilt, alpha,
        table.numba_args(), log_z1, log_l, 30, 20,
    )  # fmt: skip
    np.testing.assert_array_equal(accepted, twin_accepted)
    np.testing.assert_allclose(points, twin_points, rtol=TWIN_RTOL, atol=1e-13)
    assert 0 < accepted.sum() < 20 * 30


# -- ln Z against the definition -----------------------------------------------------------------

#: ``(delta, epsilon, h, d)``; the last rows are GloVe-like (epsilon 10, h 0.574, d 50).
NORMALIZER_CASES = [
    (0.7, 4.0, 0.2, 1),
    (0.0, 0.5, 0.3, 1),
    (0.0, 1.0, 0.3, 2),
    (0.5, 3.0, 0.4, 2),
    (5.0, 20.0, 0.5, 3),
    (1.0, 2.0, 0.5, 3),
    (8.0, 3.0, 1.0, 10),
    (0.0, 10.0, 0.574, 50),
    (0.3, 10.0, 0.574, 50),
    (3.0, 10.0, 0.574, 50),
    (0.05, 40.0, 0.574, 50),
    (4.0, 10.0, 0.574, 300),
    (0.5, 10.0, 1.0, 1),
    (12.0, 10.0, 0.3, 2),
    (0.5, 0.01, 1.0, 2),
]


@pytest.mark.parametrize(("delta", "epsilon", "bandwidth", "dim"), NORMALIZER_CASES)
def test_log_normalizer_matches_direct_quadrature(delta, epsilon, bandwidth, dim):
    """The quadrature requests a relative accuracy of 1e-12 in each dimension: ``ln Z`` must
    agree to a few times that."""
    expected = direct_log_normalizer(delta, epsilon, bandwidth, dim)
    assert log_normalizer(delta, epsilon, bandwidth, dim) == pytest.approx(
        expected, rel=0, abs=5 * QUAD_RTOL
    )
    # the slope d ln Z / d delta against a central difference of the quadrature
    values, slopes = np.empty(3), np.empty(3)
    step = 1e-4 * bandwidth
    deltas = np.array([delta + step, delta + 2 * step, delta + 3 * step])
    _kernels.log_normalizer_nodes(deltas, epsilon, bandwidth, float(dim), values, slopes)
    assert slopes[1] == pytest.approx((values[2] - values[0]) / (2 * step), rel=1e-6, abs=1e-8)


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("delta", "epsilon", "bandwidth", "dim"),
    [(0.8, 1.0, 0.3, 2), (0.2, 0.5, 0.5, 5), (1.5, 2.0, 0.2, 50)],
)
def test_log_normalizer_matches_monte_carlo(delta, epsilon, bandwidth, dim):
    """``Z`` as the plain mean of ``exp(-epsilon ||delta e_1 + h G||)`` over 400,000 draws,
    within ``Z_BOUND`` Monte Carlo standard errors (relative error below 1e-3 here)."""
    generator = np.random.default_rng(21)
    samples = generator.standard_normal((400_000, dim)) * bandwidth
    samples[:, 0] += delta
    weights = np.exp(-epsilon * np.linalg.norm(samples, axis=1))
    mean, error = weights.mean(), weights.std() / math.sqrt(len(weights))
    assert error < 1e-3 * mean
    assert abs(math.exp(log_normalizer(delta, epsilon, bandwidth, dim)) - mean) <= Z_BOUND * error


@pytest.mark.parametrize(
    ("epsilon", "bandwidth", "dim", "max_distance"),
    [(10.0, 0.574, 50, 8.0), (3.0, 0.4, 2, 3.0), (2.0, 0.5, 3, 4.0), (0.5, 1.0, 1, 10.0)],
)
def test_table_keeps_its_documented_error_bound(epsilon, bandwidth, dim, max_distance):
    """``max_error`` (measured at the grid midpoints, where cubic Hermite errs the most) is
    below the tolerance 1e-10, and random distances agree within twice it: with the table's own
    quadrature (rounding slack: 64 ulps of ``ln Z``) and with the independent quadrature (plus
    its accuracy)."""
    table = _table(epsilon, bandwidth, dim, max_distance)
    assert table.max_error <= 1e-10
    deltas = np.random.default_rng(2).uniform(0, max_distance, 2000)
    interpolated = table(deltas)
    exact = log_normalizer(deltas, epsilon, bandwidth, dim)
    slack = 64 * np.spacing(np.abs(exact))
    assert np.all(np.abs(interpolated - exact) <= 2 * table.max_error + slack)
    for delta, value in zip(deltas[:4], interpolated[:4], strict=True):
        expected = direct_log_normalizer(float(delta), epsilon, bandwidth, dim)
        assert abs(value - expected) <= 2 * table.max_error + 5 * QUAD_RTOL
    with pytest.raises(ValueError, match="must lie in"):
        table([max_distance * 1.01])


# -- the samplers against the exact laws ---------------------------------------------------------


@pytest.mark.statistical
@pytest.mark.parametrize("case", list(MIXING_CASES))
def test_mixing_weight_follows_the_mixing_law(case):
    """20,000 exact draws (``budget = 0``): Kolmogorov–Smirnov against the CDF of the law,
    and the acceptance rate (draws / proposals) against ``mixing_acceptance`` within
    ``Z_BOUND`` binomial standard errors."""
    a, b, k, envelope = MIXING_CASES[case]
    assert _envelope(a, b, k) == envelope
    generator = np.random.default_rng(31)
    n_draws = 20_000
    draws = np.empty(n_draws)
    total = 0
    for i in range(n_draws):
        draws[i], proposals, accepted = _kernels.sample_mixing_weight(generator, a, b, k, 0)
        assert accepted
        total += proposals
    assert ((draws > 0) & (draws < 1)).all()
    assert stats.kstest(draws, mixing_law_cdf(a, b, k)).pvalue > P_MIN
    predicted = mixing_acceptance(a, b, k)
    error = math.sqrt(predicted * (1 - predicted) / total)
    assert abs(n_draws / total - predicted) <= Z_BOUND * error


@pytest.mark.statistical
@pytest.mark.parametrize("case", ["levy-a0-d1", "ig-glove-a0", "gamma-a0-d3"])
def test_budget_semantics_of_the_mixing_weight_sampler(case):
    """``budget > 0``: exactly ``budget`` proposals whatever happens; no acceptance returns
    the envelope's mode ``u0``, with probability ``(1 - acceptance)^budget``; an accepted draw
    follows the exact law (the first accepted proposal of independent ones)."""
    a, b, k, _ = MIXING_CASES[case]
    u0 = _kernels.mixing_envelopes(a, b, k)[1]
    acceptance = mixing_acceptance(a, b, k)
    generator = np.random.default_rng(41)
    cdf = mixing_law_cdf(a, b, k)
    for budget in (1, 2, 5):
        n_draws = 10_000
        draws = np.empty(n_draws)
        failed = np.zeros(n_draws, dtype=bool)
        for i in range(n_draws):
            draws[i], proposals, accepted = _kernels.sample_mixing_weight(
                generator, a, b, k, budget
            )
            assert proposals == budget
            failed[i] = not accepted
        assert (draws[failed] == u0).all()
        failure = (1 - acceptance) ** budget
        error = math.sqrt(failure * (1 - failure) / n_draws)
        assert abs(failed.mean() - failure) <= Z_BOUND * error
        assert stats.kstest(draws[~failed], cdf).pvalue > P_MIN


@pytest.mark.statistical
@pytest.mark.parametrize(("mean", "shape"), [(1.0, 2.0), (0.2, 5.0), (100.0, 0.01), (1e3, 1e-4)])
def test_inverse_gaussian_follows_scipy_invgauss(mean, shape):
    """scipy's ``invgauss(mu, scale)`` has mean ``mu * scale`` and shape ``scale``; the last
    two cases have mean / shape = 1e4 and 1e7 (the textbook root loses every digit there)."""
    generator = np.random.default_rng(51)
    draws = np.array([_kernels.inverse_gaussian(generator, mean, shape) for _ in range(20_000)])
    assert (draws > 0).all()
    law = stats.invgauss(mean / shape, scale=shape)
    assert stats.kstest(draws, law.cdf).pvalue > P_MIN


#: ``(dim, epsilon, bandwidth, offset)``: one component ``mu = c + offset``; the 2-D case uses
#: the inverse Gaussian envelope (b = 0.28), the 3-D one the gamma envelope (b = 4.5, a = 1).
COMPONENT_CASES = {
    "2d-ig": (2, 3.0, 0.25, (0.8, 0.5)),
    "3d-gamma": (3, 6.0, 0.5, (0.5, -0.3, 0.4)),
}


@pytest.mark.statistical
@pytest.mark.parametrize("case", list(COMPONENT_CASES))
def test_one_component_follows_the_tilted_gaussian(case):
    """The full tilt-1 draw with a one-point prior: the coordinate along ``mu - c`` and the
    radius ``||x - c||`` against the exact density ``exp(-epsilon ||x - c||) N(x; mu, h^2 I)``,
    whose marginals are integrated numerically."""
    dim, epsilon, bandwidth, offset = COMPONENT_CASES[case]
    center = np.linspace(-0.3, 0.3, dim)
    references = (center + np.array(offset))[None, :]
    delta = float(np.linalg.norm(offset))
    a, b, k = delta**2 / (2 * bandwidth**2), (epsilon * bandwidth) ** 2 / 2, (dim - 1) / 2
    assert _envelope(a, b, k) == case.split("-")[1]
    table = _table(epsilon, bandwidth, dim, 2.0)
    n_draws = 20_000
    points, proposals = np.empty((n_draws, dim)), np.empty(n_draws, np.int64)
    failures = np.empty(n_draws, np.bool_)
    _kernels.tilt_one_task(
        np.random.default_rng(61), center, references, _transpose(references), bandwidth,
        epsilon, *table.numba_args(), 0, points, proposals, failures,
    )  # fmt: skip
    assert not failures.any()
    along_cdf, radial_cdf = component_marginal_cdfs(epsilon, bandwidth, dim, delta)
    direction = np.array(offset) / delta
    assert stats.kstest((points - center) @ direction, along_cdf).pvalue > P_MIN
    assert stats.kstest(np.linalg.norm(points - center, axis=1), radial_cdf).pvalue > P_MIN


@pytest.mark.statistical
@pytest.mark.parametrize("case", ["tilt-one", *REJECTION_CASES])
def test_tilted_targets_in_2d_follow_a_grid_integration(case):
    """Three kernels in 2-D: the exact tilt-1 sampler and the tilt-0.5 rejection sampler (both
    envelopes) against the marginals of ``exp(-epsilon ||x - c||) p(x)^tilt`` integrated on a
    grid; for the rejection sampler also the mean number of proposals against
    ``exp(log envelope mass - log target mass)`` (geometric law, ``Z_BOUND`` standard errors)."""
    if case == "tilt-one":
        center, epsilon, bandwidth, tilt, rhos = np.array([0.2, 0.1]), 3.0, 0.3, 1.0, (1.0,)
    else:
        center, epsilon, bandwidth, tilt, rhos, _ = REJECTION_CASES[case]
        center = np.array(center)
    (table, *_), packed = _rejection_tables(epsilon, bandwidth, rhos)
    n_draws = 20_000
    points, proposals = np.empty((n_draws, 2)), np.empty(n_draws, np.int64)
    if tilt == 1.0:
        _kernels.tilt_one_task(
            np.random.default_rng(71), center, REFERENCES_2D, _transpose(REFERENCES_2D),
            bandwidth, epsilon, *table.numba_args(), 0, points, proposals,
            np.empty(n_draws, np.bool_),
        )  # fmt: skip
    else:
        _, log_envelope = _kernels.tilted_rejection_task(
            np.random.default_rng(71), center, REFERENCES_2D, _transpose(REFERENCES_2D),
            bandwidth, epsilon, tilt, *packed, log_laplace_mass(epsilon, 2), points, proposals,
        )  # fmt: skip
    log_mass, first, second = grid_law_2d(center, REFERENCES_2D, bandwidth, epsilon, tilt, 8.0)
    assert stats.kstest(points[:, 0], first).pvalue > P_MIN
    assert stats.kstest(points[:, 1], second).pvalue > P_MIN
    if tilt != 1.0:
        acceptance = math.exp(log_mass - log_envelope)
        assert 0 < acceptance <= 1
        error = math.sqrt((1 - acceptance) / (n_draws * acceptance**2))
        assert abs(proposals.mean() - 1 / acceptance) <= Z_BOUND * error


def test_mixing_acceptance_stays_usable_in_one_dimension():
    """The exact sampler needs 1 / acceptance proposals per token on average. In d = 1 (k = 0)
    with b above ~1.5 the mode of the mixing law is at u = 0 and the inverse Gaussian envelope
    puts most of its mass beyond s = 1 (acceptance 7.5e-7 at (a, b) = (1, 20)); the exponential
    envelope (the gamma one with k = 0) keeps it usable. Found by a test, fixed."""
    assert mixing_acceptance(1.0, 20.0, 0.0) > 0.1
    assert mixing_acceptance(0.0, 50.0, 0.0) > 0.1


def test_mixing_acceptance_many_matches_twin():
    """The acceptance is the integral over the smaller envelope's mass (the ``e^b`` folded
    into the integral taken out again), computed from the twins."""
    a_values = np.array([0.0, 0.5, 2.0, 30.0, 400.0])
    b, k = 16.5, 24.5
    out = np.empty(len(a_values))
    _kernels.mixing_acceptance_many(a_values, b, k, out)
    expected = []
    for a in a_values:
        _, _, log_mass_ig, _, log_mass_gamma, _ = twin.mixing_envelopes(a, b, k)
        log_integral, _ = twin.log_mixing_integral(a, b, k)
        expected.append(math.exp(log_integral - b - min(log_mass_ig, log_mass_gamma)))
    np.testing.assert_allclose(out, expected, rtol=TWIN_RTOL)
    np.testing.assert_array_equal(out[[1]], mixing_acceptance(0.5, b, k))  # the scalar wrapper
    assert ((out > 0) & (out <= 1)).all()
