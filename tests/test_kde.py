"""KDEPrior: exact log densities (twin, scikit-learn, scipy), bandwidth rules, cross-validation,
adaptive bandwidths, projection and validation."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy import stats
from sklearn.neighbors import KernelDensity

import densitydp as dd
from densitydp.kde import kde_logdensity, rule_of_thumb
from reference import kde as twin


@pytest.fixture(scope="module")
def space50():
    return dd.synthetic_space(n_words=3_000, dim=50, n_clusters=8, rng=11)


def test_log_density_matches_twin_everywhere(small_space):
    prior = dd.KDEPrior.fit(small_space, bandwidth=0.3)
    generator = np.random.default_rng(0)
    # near the data and far away (where every kernel value underflows in float64)
    queries = np.vstack(
        [small_space.vectors[:50] + 0.01, generator.uniform(-40, 40, size=(50, small_space.dim))]
    )
    expected = twin.log_density(queries, small_space.vectors, 0.3)
    got = prior.log_density(queries)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-10)
    assert expected.min() < -2_000  # the far queries really are beyond float64 underflow


def test_log_density_agrees_with_sklearn_and_scipy(space50):
    """At the data, with Scott's bandwidth, no kernel sum underflows in 50-d, so scikit-learn
    (exact tree, rtol 0) and scipy (isotropic covariance) are valid references to 1e-6."""
    prior = dd.KDEPrior.fit(space50, bandwidth="scott")
    h = prior.bandwidth
    points = space50.vectors.astype(np.float64)
    queries = points[::50] + 0.05
    ours = prior.log_density(queries)
    sklearn = KernelDensity(bandwidth=h, kernel="gaussian", rtol=0).fit(points)
    np.testing.assert_allclose(ours, sklearn.score_samples(queries), rtol=0, atol=1e-6)
    scipy_kde = stats.gaussian_kde(points.T)
    # make scipy's kernel covariance h^2 I: identity data covariance, bandwidth factor h
    scipy_kde._data_covariance = np.eye(space50.dim)
    scipy_kde._data_cho_cov = np.eye(space50.dim)
    scipy_kde.set_bandwidth(h)
    np.testing.assert_allclose(ours, scipy_kde.logpdf(queries.T), rtol=0, atol=1e-6)


def test_rules_of_thumb_are_scipys_factors_times_the_scale(space50):
    points = space50.vectors.astype(np.float64)
    sigma = np.sqrt(np.mean(np.var(points, axis=0, ddof=1)))
    reference = stats.gaussian_kde(points.T)
    assert rule_of_thumb(points, "scott") == pytest.approx(sigma * reference.scotts_factor())
    assert rule_of_thumb(points, "silverman") == pytest.approx(sigma * reference.silverman_factor())
    assert dd.KDEPrior.fit(space50, "silverman").bandwidth == pytest.approx(
        sigma * reference.silverman_factor()
    )


def test_local_density_leaves_the_word_out(small_space):
    prior = dd.KDEPrior.fit(small_space, bandwidth=0.4)
    ids = np.array([0, 5, 77, 599])
    expected = twin.log_density(small_space.vectors[ids], small_space.vectors, 0.4, exclude=ids)
    np.testing.assert_allclose(prior.local_density(ids), expected, rtol=1e-12)
    # its own kernel makes the plain density larger
    assert np.all(prior.log_density(small_space.vectors[ids]) > prior.local_density(ids))
    assert prior.local_density(np.array([[0, 5]])).shape == (1, 2)


def test_adaptive_bandwidths_are_wider_in_sparse_regions(small_space):
    prior = dd.KDEPrior.fit(small_space, bandwidth=0.5, adaptive=True)
    table = small_space.neighbors(11)
    rho = table.distances[:, 10].astype(np.float64)
    np.testing.assert_allclose(prior.bandwidths, 0.5 * rho / np.exp(np.log(rho).mean()))
    assert np.exp(np.log(prior.bandwidths).mean()) == pytest.approx(0.5)
    outliers = np.array([w.startswith("out") for w in small_space.vocabulary])
    assert np.median(prior.bandwidths[outliers]) > 3 * np.median(prior.bandwidths[~outliers])
    queries = small_space.vectors[:20] + 0.1
    expected = twin.log_density(queries, small_space.vectors, prior.bandwidths)
    np.testing.assert_allclose(prior.log_density(queries), expected, rtol=1e-12)
    assert prior.adaptive and "adaptive(k=10)" in prior.rule


@pytest.mark.statistical
def test_cross_validated_bandwidth_recovers_the_likelihood_optimum():
    """Known bandwidth: the one that maximises the expected log likelihood of fresh points from
    the true density (estimated with 20,000 fresh points, independent of the training data).
    Stated tolerance: within 20 % (5-fold CV on 600 points; over 10 independent training samples,
    seeds 100-109, its error had median 5.7 % and maximum 10.9 %)."""
    generator = np.random.default_rng(5)
    centres = generator.normal(0, 3, size=(6, 3))

    def draw(n):
        return centres[generator.integers(6, size=n)] + generator.normal(0, 0.7, size=(n, 3))

    train, fresh = draw(600), draw(20_000)
    grid = np.exp(np.linspace(np.log(0.1), np.log(2.0), 60))
    held_out = [
        dd.KDEPrior(train, np.full(600, h), bandwidth=h).log_density(fresh).mean() for h in grid
    ]
    known = grid[int(np.argmax(held_out))]
    fitted = dd.KDEPrior.fit(train, bandwidth="cv", rng=1)
    assert fitted.bandwidth == pytest.approx(known, rel=0.2)
    assert fitted.rule == "cv"


def test_cv_bandwidth_is_rescaled_from_the_subsample(space50):
    full = dd.KDEPrior.fit(space50, bandwidth="cv", cv_points=500, rng=0)
    assert 0 < full.bandwidth < rule_of_thumb(space50.vectors.astype(float), "scott") * 10


def test_projection_and_subsample(small_space):
    prior = dd.KDEPrior.fit(small_space, bandwidth=0.5, n_components=3)
    assert prior.dim == 3 and prior.input_dim == small_space.dim
    projected = prior.projection.transform(small_space.vectors[:10].astype(np.float64))
    expected = twin.log_density(
        projected, prior.projection.transform(small_space.vectors.astype(float)), 0.5
    )
    np.testing.assert_allclose(prior.log_density(small_space.vectors[:10]), expected, rtol=1e-10)
    sub = dd.KDEPrior.fit(small_space, bandwidth=0.5, max_points=100, rng=0)
    assert sub.n_points == 100 and len(np.unique(sub.reference_ids)) == 100
    ids = np.arange(20)
    inside = np.isin(ids, sub.reference_ids)
    exclude = np.array(
        [
            int(np.flatnonzero(sub.reference_ids == i)[0]) if i in sub.reference_ids else -1
            for i in ids
        ]
    )
    expected = twin.log_density(small_space.vectors[ids], sub.references, 0.5, exclude=exclude)
    np.testing.assert_allclose(sub.local_density(ids), expected, rtol=1e-12)
    assert inside.any() and not inside.all()


def test_numba_logdensity_matches_the_method(small_space):
    for prior in (
        dd.KDEPrior.fit(small_space, bandwidth=0.5),
        dd.KDEPrior.fit(small_space, bandwidth=0.5, n_components=2),
    ):

        @numba.njit
        def target(position, args):
            return kde_logdensity(position, args)

        queries = small_space.vectors[:5].astype(np.float64) + 0.2
        got = [target(q, prior.numba_args()) for q in queries]
        np.testing.assert_allclose(got, prior.log_density(queries), rtol=1e-12)


def test_float32_storage_is_lossless_and_float64_kept_otherwise(small_space):
    assert dd.KDEPrior.fit(small_space, bandwidth=1.0).references.dtype == np.float32
    points = np.random.default_rng(0).normal(size=(50, 3))
    assert dd.KDEPrior.fit(points, bandwidth=1.0).references.dtype == np.float64


def test_errors_name_the_argument(small_space):
    with pytest.raises(ValueError, match="`bandwidth` must be one of"):
        dd.KDEPrior.fit(small_space, bandwidth="wide")
    with pytest.raises(ValueError, match="`bandwidth` must be a finite number > 0"):
        dd.KDEPrior.fit(small_space, bandwidth=-1.0)
    with pytest.raises(ValueError, match="`kernel` must be one of 'gaussian'"):
        dd.KDEPrior.fit(small_space, kernel="tophat")
    with pytest.raises(ValueError, match="`data` must be finite"):
        dd.KDEPrior.fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="`data` must hold at least 2 points"):
        dd.KDEPrior.fit(np.zeros((1, 3)))
    prior = dd.KDEPrior.fit(small_space, bandwidth=1.0)
    with pytest.raises(ValueError, match=r"`points` must have shape \(n, 8\)"):
        prior.log_density(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`points` must be finite"):
        prior.log_density(np.full((1, 8), np.inf))
    with pytest.raises(ValueError, match="needs a prior fitted on an EmbeddingSpace"):
        dd.KDEPrior.fit(np.random.default_rng(0).normal(size=(5, 2))).local_density([0])
    with pytest.raises(ValueError, match="`word_ids` must be in"):
        prior.local_density([600])


def test_prior_is_immutable(small_space):
    prior = dd.KDEPrior.fit(small_space, bandwidth=1.0)
    with pytest.raises(AttributeError, match="KDEPrior is immutable"):
        prior.bandwidth = 2.0
    with pytest.raises(ValueError, match="read-only"):
        prior.references[0, 0] = 1.0
