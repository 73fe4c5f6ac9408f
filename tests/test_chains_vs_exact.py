"""The uncertified Metropolis–Hastings chains of DensityAwareLaplace checked against its exact
sampler (densitydp.audit.chains): total variation of the decoded word with a lower confidence
bound, next to R-hat and ESS.

Every "indistinguishable" assertion is a test at level ``ALPHA`` (a lower confidence bound on
the total variation that is positive, or a chi-square p-value below ``ALPHA``, happens with
probability at most ``ALPHA`` when the two laws agree); every "detectably far" assertion is the
same bound being positive, so it cannot hold by chance for an exact chain more often than
``ALPHA``.
"""

from __future__ import annotations

import numpy as np
import pytest

import densitydp as dd
from densitydp.audit.chains import TotalVariation, chain_accuracy, total_variation

pytestmark = pytest.mark.statistical

ALPHA = 1e-3
N_SAMPLES = 4_000  # independent chains (decoded words) per number of steps
N_EXACT = 20_000  # exact draws
EPSILON = 5.0
#: A peaked prior: bandwidth 0.1 against a median nearest-neighbour distance of 0.18 (the
#: prior varies strongly between Laplace proposals, so a short chain is far from its target).
BANDWIDTH = 0.1
WORD = 0


@pytest.fixture(scope="module")
def space() -> dd.EmbeddingSpace:
    return dd.synthetic_space(n_words=60, dim=3, n_clusters=3, rng=0)


@pytest.fixture(scope="module")
def prior(space) -> dd.KDEPrior:
    return dd.KDEPrior.fit(space, bandwidth=BANDWIDTH)


def _accuracy(space, prior, tilt, steps, *, proposal="independence", rng):
    mechanism = dd.DensityAwareLaplace(space, EPSILON, prior, tilt=tilt, proposal=proposal)
    return chain_accuracy(
        mechanism, WORD, steps, n_samples=N_SAMPLES, n_exact=N_EXACT, alpha=ALPHA, rng=rng
    )


# -- the two-sample comparison ------------------------------------------------------------------


def test_total_variation_same_law_shows_nothing():
    rng = np.random.default_rng(10)
    result = total_variation(rng.integers(0, 20, 5_000), rng.integers(0, 20, 20_000), rng=11)
    assert isinstance(result, TotalVariation)
    assert result.lower == 0.0
    assert result.p_value > ALPHA
    assert (result.n_samples, result.n_reference) == (5_000, 20_000)


def test_total_variation_bound_covers_and_detects_a_shift():
    rng = np.random.default_rng(12)
    # uniform on {0..4} against uniform on {1..5}: TV = 0.2
    result = total_variation(
        rng.integers(0, 5, 4_000), rng.integers(1, 6, 4_000), alpha=ALPHA, rng=13
    )
    assert 0.0 < result.lower <= 0.2
    # the plug-in is within 5 standard errors of the truth (each of the 10 cells has
    # frequency sd <= sqrt(0.25 / 4000); the TV is half the sum of their absolute errors)
    assert abs(result.estimate - 0.2) < 5 * 10 * np.sqrt(0.25 / 4_000) / 2


@pytest.mark.parametrize("spread", ["samples", "reference"])
def test_total_variation_sees_mass_on_many_rare_outputs(spread):
    """One law puts 6 % on thousands of rare outputs that two halves rarely share, the other is
    a point mass: the event must include the outputs seen in neither selection half."""
    rng = np.random.default_rng(14)
    point = np.zeros(4_000, dtype=np.int64)
    rare = np.where(rng.random(4_000) < 0.06, rng.integers(1, 100_000, 4_000), 0)
    samples, reference = (rare, point) if spread == "samples" else (point, rare)
    result = total_variation(samples, reference, alpha=ALPHA, rng=15)
    assert 0.0 < result.lower <= 0.06 + 5 * np.sqrt(0.06 * 0.94 / 4_000)
    assert result.event_favours == spread


def test_total_variation_validates():
    with pytest.raises(TypeError, match="integer"):
        total_variation(np.zeros(10), np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="at least 2"):
        total_variation([1], [1, 2])
    with pytest.raises(ValueError, match="alpha"):
        total_variation([1, 2], [1, 2], alpha=1.5)


# -- what is measured ---------------------------------------------------------------------------


def test_measures_exactly_what_the_chain_sampler_outputs(space, prior):
    with pytest.warns(dd.PrivacyWarning, match="no guarantee"):
        chain = dd.DensityAwareLaplace(space, EPSILON, prior, tilt=1.0, n_steps=3)
    tokens = np.full(500, WORD)
    points = chain.draw_points(tokens, rng=7)
    radii = np.linalg.norm(points - space.vectors[WORD].astype(np.float64), axis=1)
    np.testing.assert_array_equal(chain.decode(tokens, points, radii), chain.sample(tokens, rng=7))


def test_table_columns_attrs_and_reproducibility(space, prior):
    mechanism = dd.DensityAwareLaplace(space, EPSILON, prior, tilt=1.0)
    table = chain_accuracy(mechanism, WORD, [2, 8], n_samples=200, n_exact=1_000, rng=3)
    assert list(table.index) == [2, 8]
    assert {"moved", "tv", "tv_null", "tv_lower", "p_value", "acceptance"} <= set(table.columns)
    diagnostics = [c for c in table.columns if c.startswith(("r_hat_", "ess_"))]
    assert len(diagnostics) == 9  # r_hat, ess_bulk, ess_tail x radius, log_prior, position
    assert table.loc[2, diagnostics].isna().all()  # R-hat needs 4 draws per chain
    assert table.loc[8, diagnostics].notna().all()
    assert table.attrs["seed"] == {"entropy": 3, "spawn_key": []}
    assert table.attrs["tilt"] == 1.0 and table.attrs["n_exact"] == 1_000
    again = chain_accuracy(mechanism, WORD, [2, 8], n_samples=200, n_exact=1_000, rng=3)
    assert table.equals(again)


def test_chain_accuracy_validates(space, prior):
    exact = dd.DensityAwareLaplace(space, EPSILON, prior, tilt=1.0)
    with pytest.raises(TypeError, match="DensityAwareLaplace"):
        chain_accuracy(dd.MultivariateLaplace(space, EPSILON), WORD, [1])
    with pytest.warns(dd.PrivacyWarning):
        chain = dd.DensityAwareLaplace(space, EPSILON, prior, tilt=1.0, n_steps=5)
    with pytest.raises(ValueError, match="sampler='exact'"):
        chain_accuracy(chain, WORD, [1])
    with pytest.raises(ValueError, match="n_steps"):
        chain_accuracy(exact, WORD, [0])
    with pytest.raises(ValueError, match="n_steps"):
        chain_accuracy(exact, WORD, [])


# -- the chains against the truth ---------------------------------------------------------------


@pytest.mark.parametrize("tilt", [1.0, 0.5])
def test_long_chain_is_indistinguishable_from_exact(space, prior, tilt):
    row = _accuracy(space, prior, tilt, [1_000], rng=20).loc[1_000]
    assert row["moved"] == 1.0
    assert row["tv_lower"] == 0.0
    assert row["p_value"] > ALPHA
    assert row["r_hat_radius"] < 1.1  # 4 chains x 1,000 draws have mixed on the radius


def test_one_step_chain_with_a_peaked_prior_is_detectably_far(space, prior):
    row = _accuracy(space, prior, 1.0, [1], rng=21).loc[1]
    # about half the chains never leave their Laplace start (the tilt-0 law)
    assert row["moved"] < 0.75
    assert row["tv_lower"] > 0.0
    assert row["p_value"] < ALPHA
    assert row["tv_lower"] <= row["tv"]


@pytest.mark.parametrize("proposal", ["independence", "random_walk"])
def test_tilt_zero_chain_is_exact(space, prior, proposal):
    """At tilt 0 the chain starts at its target (the Laplace noise) and stays there."""
    # as the mechanism's sampler="chain" runs it (it draws the Laplace noise directly) ...
    table = _accuracy(space, prior, 0.0, [1, 20], proposal=proposal, rng=22)
    assert (table["tv_lower"] == 0.0).all()
    assert (table["p_value"] > ALPHA / len(table)).all()
    assert table["moved"].isna().all()
    # ... and the chain itself, run step by step: the final states of N_SAMPLES chains
    mechanism = dd.DensityAwareLaplace(space, EPSILON, prior, tilt=0.0, proposal=proposal)
    result = mechanism.chains(WORD, n_chains=N_SAMPLES, n_draws=20, rng=23)
    final = result.draws[:, -1]
    tokens = np.full(N_SAMPLES, WORD)
    radii = np.linalg.norm(final - space.vectors[WORD].astype(np.float64), axis=1)
    decoded = mechanism.decode(tokens, final, radii)
    exact = mechanism.sample(np.full(N_EXACT, WORD), rng=24)
    comparison = total_variation(decoded, exact, alpha=ALPHA, rng=25)
    assert comparison.lower == 0.0
    assert comparison.p_value > ALPHA
    assert result.acceptance_rate.mean() > 0.1  # the chains did move
