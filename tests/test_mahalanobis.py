from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import linalg, stats

import densitydp as dd
from conftest import assert_same_at_thread_counts
from densitydp.mechanisms import build_mechanism
from densitydp.mechanisms.mahalanobis import DEFAULT_LAM
from densitydp.testing import check_mechanism
from reference import mechanisms as ref


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=300, dim=6, n_clusters=4, rng=1)


@pytest.fixture(scope="module")
def stretched():
    """An anisotropic space: coordinate scales 1 to 6, so M is far from the identity."""
    generator = np.random.default_rng(4)
    vectors = generator.standard_normal((400, 5)) * np.array([6.0, 3.0, 1.0, 0.5, 0.25])
    return dd.EmbeddingSpace([f"w{i}" for i in range(400)], vectors)


def direct_matrix(vectors, lam):
    """M = lam Sigma / (trace Sigma / dim) + (1 - lam) I, straight from numpy."""
    covariance = np.cov(np.asarray(vectors, dtype=np.float64), rowvar=False)
    scaled = covariance / (np.trace(covariance) / covariance.shape[0])
    return lam * scaled + (1.0 - lam) * np.eye(covariance.shape[0])


# ----------------------------------------------------------------------------- conformance


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("epsilon", "lam", "table_k"), [(3.0, DEFAULT_LAM, None), (40.0, 1.0, 16), (8.0, 0.5, 2)]
)
def test_conformance(space, epsilon, lam, table_k):
    mechanism = dd.MahalanobisMechanism(space, epsilon, lam=lam, table_k=table_k)
    assert check_mechanism(mechanism, rng=int(epsilon)).passed


def test_built_by_name_with_the_paper_default(space):
    mechanism = build_mechanism("mahalanobis", space, 5.0)
    assert isinstance(mechanism, dd.MahalanobisMechanism)
    assert mechanism.lam == DEFAULT_LAM == 0.2
    assert build_mechanism("mahalanobis", space, 5.0, lam=0.7).lam == 0.7
    with pytest.raises(ValueError, match="takes no option `threshold`"):
        build_mechanism("mahalanobis", space, 5.0, threshold=0.5)
    assert "lam=0.2" in repr(mechanism)


# ----------------------------------------------------------------------------- the matrix M


@pytest.mark.parametrize("lam", [0.2, 0.5, 1.0])
def test_matrix_and_roots_match_a_direct_formula(stretched, lam):
    mechanism = dd.MahalanobisMechanism(stretched, 5.0, lam=lam)
    matrix = direct_matrix(stretched.vectors, lam)
    root = mechanism.covariance.root
    np.testing.assert_allclose(root, linalg.sqrtm(matrix).real, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(root @ root, matrix, rtol=1e-10, atol=1e-12)
    # whiten: W W^T = M^-1
    whiten = mechanism.covariance.whiten
    np.testing.assert_allclose(whiten @ whiten.T, np.linalg.inv(matrix), rtol=1e-9, atol=1e-12)
    assert np.trace(direct_matrix(stretched.vectors, 1.0)) == pytest.approx(stretched.dim)


def test_privacy_loss_bound_is_epsilon_times_the_mahalanobis_distance(stretched):
    mechanism = dd.MahalanobisMechanism(stretched, 3.0, lam=0.6)
    inverse = np.linalg.inv(direct_matrix(stretched.vectors, 0.6))
    generator = np.random.default_rng(0)
    words = generator.integers(0, len(stretched), 50)
    others = generator.integers(0, len(stretched), 50)
    vectors = stretched.vectors.astype(np.float64)
    expected = np.array(
        [
            3.0 * math.sqrt((vectors[a] - vectors[b]) @ inverse @ (vectors[a] - vectors[b]))
            for a, b in zip(words, others, strict=True)
        ]
    )
    np.testing.assert_allclose(mechanism.privacy_loss_bound(words, others), expected, rtol=1e-10)
    # broadcast like the base class, a float for one pair, 0 for a word with itself
    assert mechanism.privacy_loss_bound(words[:, None], others[None, :]).shape == (50, 50)
    assert isinstance(mechanism.privacy_loss_bound(1, 2), float)
    assert mechanism.privacy_loss_bound(7, 7) == 0.0
    # it is not the Euclidean claim: on this space the two differ
    euclidean = 3.0 * stretched.distance(words, others)
    assert np.abs(mechanism.privacy_loss_bound(words, others) - euclidean).max() > 0.1
    bound = mechanism.privacy_bound()
    assert bound.notion == "metric" and bound.epsilon == 3.0 and bound.delta == 0.0
    assert "regularised Mahalanobis distance d_RM" in bound.assumptions
    assert "not the Euclidean distance" in str(bound)


# ----------------------------------------------------------------------------- noise law


@pytest.mark.statistical
@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_noise_radius_in_the_mahalanobis_norm_is_gamma_and_direction_uniform(stretched, lam):
    epsilon, n = 4.0, 20_000
    mechanism = dd.MahalanobisMechanism(stretched, epsilon, lam=lam)
    noise = mechanism.noise(n, rng=5)
    inverse_root = np.linalg.inv(linalg.sqrtm(direct_matrix(stretched.vectors, lam)).real)
    whitened = noise @ inverse_root  # M^-1/2 z (M^-1/2 symmetric)
    radius = np.linalg.norm(whitened, axis=1)
    dim = stretched.dim
    assert stats.kstest(radius, stats.gamma(a=dim, scale=1 / epsilon).cdf).pvalue > 1e-3
    direction = whitened / radius[:, None]
    beta = stats.beta((dim - 1) / 2, (dim - 1) / 2)
    for axis in range(dim):
        assert stats.kstest((direction[:, axis] + 1) / 2, beta.cdf).pvalue > 1e-3
    assert np.abs(direction.mean(axis=0)).max() < 5 * math.sqrt(1 / dim) / math.sqrt(n)
    # the direction is not re-normalised after M^1/2: the Euclidean radius is not Gamma(dim)
    euclidean = np.linalg.norm(noise, axis=1)
    assert stats.kstest(euclidean, stats.gamma(a=dim, scale=1 / epsilon).cdf).pvalue < 1e-6


def test_lam_zero_is_multivariate_laplace_draw_for_draw(space):
    laplace = dd.MultivariateLaplace(space, 6.0, table_k=16)
    mahalanobis = dd.MahalanobisMechanism(space, 6.0, lam=0.0, table_k=16)
    words = np.random.default_rng(1).integers(0, len(space), 5_000)
    np.testing.assert_array_equal(mahalanobis.noise(100, rng=3), laplace.noise(100, rng=3))
    np.testing.assert_array_equal(mahalanobis.sample(words, rng=9), laplace.sample(words, rng=9))
    np.testing.assert_array_equal(
        mahalanobis.privacy_loss_bound(words, words[::-1]),
        laplace.privacy_loss_bound(words, words[::-1]),
    )
    assert mahalanobis.min_epsilon == laplace.min_epsilon
    assert str(mahalanobis.privacy_bound()) == str(laplace.privacy_bound())


# ----------------------------------------------------------------------------- decoding


def test_decoding_matches_brute_force(stretched):
    for epsilon in (0.5, 5.0, 50.0, 500.0):
        mechanism = dd.MahalanobisMechanism(stretched, epsilon, lam=0.8, table_k=16)
        words = np.random.default_rng(3).integers(0, len(stretched), 2_000)
        noise = mechanism.noise(2_000, rng=int(epsilon * 10))
        points = stretched.vectors[words].astype(np.float64) + noise
        decoded = mechanism.decode(words, points, np.linalg.norm(noise, axis=1))
        np.testing.assert_array_equal(decoded, ref.nearest(points, stretched.vectors))
    # and sample() decodes its own noise the same way
    mechanism = dd.MahalanobisMechanism(stretched, 5.0, lam=0.8, table_k=16)
    words = np.arange(len(stretched))
    generator = np.random.default_rng(11)
    noise = mechanism._noise(len(words), generator)
    points = stretched.vectors[words].astype(np.float64) + noise
    np.testing.assert_array_equal(
        mechanism.sample(words, rng=11), ref.nearest(points, stretched.vectors)
    )


def test_results_do_not_depend_on_the_thread_count(stretched):
    words = np.random.default_rng(0).integers(0, len(stretched), 4_000)
    mechanisms = [
        dd.MahalanobisMechanism(stretched, 2.0, lam=0.5, table_k=8),
        dd.MahalanobisMechanism(stretched, 30.0, lam=1.0),
    ]
    assert_same_at_thread_counts(mechanisms, words, rng=8)


def test_pickle_round_trip_keeps_the_law(stretched):
    mechanism = dd.MahalanobisMechanism(stretched, 5.0, lam=0.3)
    words = np.arange(200)
    first = mechanism.sample(words, rng=2)
    copy = pickle.loads(pickle.dumps(mechanism))
    assert repr(copy) == repr(mechanism)
    np.testing.assert_array_equal(copy.sample(words, rng=2), first)
    with pytest.raises(AttributeError, match="immutable"):
        mechanism.lam = 0.5


# ----------------------------------------------------------------------------- validation


def test_refuses_bad_parameters(space):
    for epsilon in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="`epsilon` must be"):
            dd.MahalanobisMechanism(space, epsilon)
    for lam in (-0.1, 1.5, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"`lam` must be a finite number >= 0 and <= 1"):
            dd.MahalanobisMechanism(space, 1.0, lam=lam)
    for lam in ("0.5", None, True):
        with pytest.raises(TypeError, match="`lam` must be a real number"):
            dd.MahalanobisMechanism(space, 1.0, lam=lam)
    with pytest.raises(TypeError, match="`epsilon`"):
        dd.MahalanobisMechanism(space, "1")
    with pytest.raises(TypeError, match="`space` must be an EmbeddingSpace"):
        dd.MahalanobisMechanism([[0.0, 1.0]], 1.0)
    with pytest.raises(ValueError, match="`table_k`"):
        dd.MahalanobisMechanism(space, 1.0, table_k=0)
    with pytest.raises(TypeError):
        dd.MahalanobisMechanism(space, 1.0, 0.5)  # lam is keyword-only


def test_refuses_lam_one_on_a_singular_covariance_and_a_tiny_epsilon():
    flat = np.random.default_rng(0).standard_normal((50, 3))
    flat[:, 2] = 1.0  # every word in the plane z = 1: the covariance is singular
    space = dd.EmbeddingSpace([f"w{i}" for i in range(50)], flat)
    with pytest.raises(ValueError, match="`lam` must be < 1 on this space"):
        dd.MahalanobisMechanism(space, 1.0, lam=1.0)
    mechanism = dd.MahalanobisMechanism(space, 1.0, lam=0.9)  # regularised: fine
    assert mechanism.covariance.eigenvalues[0] == pytest.approx(0.1, rel=1e-9)
    # the floor grows with the largest stretch of M^1/2
    laplace_floor = dd.MultivariateLaplace(space, 1.0).min_epsilon
    stretch = math.sqrt(mechanism.covariance.eigenvalues[-1])
    assert mechanism.min_epsilon == pytest.approx(stretch * laplace_floor, rel=1e-12)
    assert stretch > 1.0
    with pytest.raises(ValueError, match="`epsilon` must be >= .* with lam = 0.9"):
        dd.MahalanobisMechanism(space, 0.99 * mechanism.min_epsilon, lam=0.9)
    dd.MahalanobisMechanism(space, 1.01 * mechanism.min_epsilon, lam=0.9)
    same = dd.EmbeddingSpace(["a", "b"], [[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="`lam` must be 0 on a space whose words all coincide"):
        dd.MahalanobisMechanism(same, 1.0, lam=0.5)


# ----------------------------------------------------------------------------- audit


@pytest.mark.statistical
def test_sampled_audit_finds_no_violation(stretched):
    """The claim epsilon * d_RM holds under the sampled auditor (Clopper-Pearson bounds, event
    chosen on one sample and confirmed on a fresh one)."""
    mechanism = dd.MahalanobisMechanism(stretched, 1.0, lam=0.8)
    report = dd.audit(mechanism, n_pairs=12, n_samples=20_000, rng=0)
    assert report.passed, report.table
    assert len(report.violations) == 0

    class Overclaiming(dd.MahalanobisMechanism):
        """The same law, claiming a fifth of epsilon * d_RM: the same audit must flag it."""

        def privacy_loss_bound(self, word_id, other_id):
            return 0.2 * super().privacy_loss_bound(word_id, other_id)

    flagged = dd.audit(Overclaiming(stretched, 1.0, lam=0.8), n_pairs=12, n_samples=20_000, rng=0)
    assert not flagged.passed
