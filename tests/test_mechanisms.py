from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats

import densitydp as dd
from densitydp.mechanisms import _kernels
from densitydp.mechanisms.base import group_tokens
from densitydp.mechanisms.gumbel import candidate_probabilities
from densitydp.testing import check_mechanism
from reference import mechanisms as ref


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=300, dim=6, n_clusters=4, rng=1)


def all_mechanisms(space):
    gumbel_floor = dd.TruncatedGumbel(space, scale=50.0).min_epsilon
    return [
        dd.ExponentialMechanism(space, 2.0),
        dd.TruncatedExponential(space, 3.0),
        dd.TruncatedExponential(space, 12.0, beta=0.05),
        dd.TruncatedGumbel(space, epsilon=1.3 * gumbel_floor),
        dd.MultivariateLaplace(space, 3.0),
        dd.MultivariateLaplace(space, 40.0, table_k=16),
    ]


@pytest.mark.statistical
@pytest.mark.parametrize("index", range(6))
def test_conformance(space, index):
    mechanism = all_mechanisms(space)[index]
    report = check_mechanism(mechanism, rng=index)
    assert report.passed


def test_conformance_catches_a_wrong_distribution(space):
    class Broken(dd.ExponentialMechanism):
        """Samples at epsilon but claims the distribution of 1.1 epsilon."""

        def _log_probabilities(self, word_id):
            from scipy.special import log_softmax

            return log_softmax(-0.55 * self.epsilon * self._distances(word_id))

    with pytest.raises(AssertionError, match="FAIL  sampled frequencies"):
        check_mechanism(Broken(space, 2.0), rng=0)


def test_conformance_catches_a_loss_above_the_claim(space):
    class Overclaiming(dd.ExponentialMechanism):
        def privacy_loss_bound(self, word_id, other_id):
            return 0.5 * super().privacy_loss_bound(word_id, other_id)

    with pytest.raises(AssertionError, match="FAIL  exact loss"):
        check_mechanism(Overclaiming(space, 2.0), rng=0, n_samples=2_000)


# ----------------------------------------------------------------------------- protocol


def test_mechanisms_are_immutable_validated_and_named(space):
    mechanism = dd.TruncatedExponential(space, 3.0)
    with pytest.raises(AttributeError, match="immutable"):
        mechanism.epsilon = 5.0
    assert repr(mechanism).endswith("epsilon=3.0, beta=0.001)")
    assert "scale=" in repr(all_mechanisms(space)[3])
    with pytest.raises(ValueError, match="`epsilon` must be a finite number > 0; got -1"):
        dd.ExponentialMechanism(space, -1)
    with pytest.raises(ValueError, match=r"`beta` must be a number in the open interval \(0, 1\)"):
        dd.TruncatedExponential(space, 1.0, beta=1.0)
    with pytest.raises(TypeError, match="`space` must be an EmbeddingSpace"):
        dd.MultivariateLaplace([[0.0]], 1.0)
    with pytest.raises(ValueError, match=r"`word_ids` must be in \[0, 299\]"):
        mechanism.sample([300])
    with pytest.raises(NotImplementedError, match="no closed-form"):
        dd.MultivariateLaplace(space, 1.0).output_distribution(0)
    assert mechanism.sample([], rng=0).shape == (0,)
    assert mechanism.sample(np.zeros((2, 3), dtype=int), rng=0).shape == (2, 3)


def test_privacy_bound_and_loss_bound(space):
    mechanism = dd.ExponentialMechanism(space, 2.0)
    bound = mechanism.privacy_bound()
    assert (bound.notion, bound.epsilon, bound.delta) == ("metric", 2.0, 0.0)
    assert "Mironov" in str(bound)
    assert mechanism.privacy_loss_bound(3, 7) == pytest.approx(2.0 * space.distance(3, 7))
    np.testing.assert_allclose(
        mechanism.privacy_loss_bound([3, 4], [7, 8]), 2.0 * space.distance([3, 4], [7, 8])
    )


def test_exponential_distribution_matches_the_formula(space):
    mechanism = dd.ExponentialMechanism(space, 1.5)
    _, probabilities = mechanism.output_distribution(10)
    weights = np.exp(-0.75 * space.distance(np.full(300, 10), np.arange(300)))
    np.testing.assert_allclose(probabilities, weights / weights.sum(), rtol=1e-12)
    np.testing.assert_allclose(
        mechanism.log_prob(10, [10, 20]), np.log(weights[[10, 20]] / weights.sum()), rtol=1e-12
    )


def test_tem_distribution_has_bottom_element_and_uniform_fallback(space):
    mechanism = dd.TruncatedExponential(space, 4.0, beta=0.01)
    gamma = (2 / 4.0) * math.log(0.99 * 299 / 0.01)
    assert mechanism.gamma == pytest.approx(gamma)
    distances = space.distance(np.full(300, 10), np.arange(300))
    inside = distances <= gamma
    scores = np.append(-distances[inside], -gamma + (2 / 4.0) * math.log((~inside).sum()))
    softmax = np.exp(2.0 * scores) / np.exp(2.0 * scores).sum()  # the argmax law of Gumbel noise
    expected = np.empty(300)
    expected[inside] = softmax[:-1]
    expected[~inside] = softmax[-1] / (~inside).sum()  # bottom element, then uniform
    np.testing.assert_allclose(mechanism.output_distribution(10)[1], expected, rtol=1e-12)


def _assert_rejection_kernel_matches_twin(kernel, twin, mechanism, words, *, seed):
    """One draw per word from a row rejection kernel, against its numpy twin; returns it."""
    row_ids, row_distances, reach = mechanism._rows(words)
    gamma, vectors = mechanism._clip(), mechanism.space.vectors
    seeds = np.random.default_rng(seed).integers(0, 2**63, size=len(words)).view(np.uint64)
    out = np.empty(len(words), dtype=np.int64)
    ranges = np.ascontiguousarray(
        np.stack([np.arange(len(words)), np.arange(1, len(words) + 1)], axis=1)
    )
    half = mechanism.epsilon / 2
    token_order = np.arange(len(words))
    kernel(words, row_ids, row_distances, reach, ranges, token_order, seeds, vectors, half,
           gamma, out)  # fmt: skip
    expected = twin(words, row_ids, row_distances, reach, seeds, vectors, mechanism.epsilon, gamma)
    np.testing.assert_array_equal(out, expected)
    return out


@pytest.mark.statistical
def test_rejection_sampler_has_the_exact_law(monkeypatch):
    """At an epsilon where the neighbour row holds most of the mass, rejection forced
    (ROUND_COST 0) for all 400,000 draws of one word."""
    from densitydp.mechanisms import exponential

    monkeypatch.setattr(exponential, "ROUND_COST", 0.0)
    space = dd.synthetic_space(n_words=400, dim=4, n_clusters=3, rng=8)
    mechanism = dd.ExponentialMechanism(space, 6.0)
    report = check_mechanism(mechanism, word_ids=[17], n_samples=400_000, rng=3)
    assert report.passed


# ----------------------------------------------------------------------------- kernel twins


@pytest.mark.parametrize("gamma", [np.inf, 6.0, 1.0])
def test_distance_row_kernel_matches_twin(space, gamma):
    generator = np.random.default_rng(11)
    words = generator.integers(0, 300, 500)
    u_choice, u_fallback = generator.random(500), generator.random(500)
    unique, _, order, starts = group_tokens(words)
    ranges = np.ascontiguousarray(np.stack([starts[:-1], starts[1:]], axis=1))
    expected = ref.clipped_exponential(words, u_choice, u_fallback, space.vectors, 3.0, gamma)
    distances = np.sqrt(
        ((space.vectors[unique, None, :].astype(float) - space.vectors[None, :, :]) ** 2).sum(-1)
    )
    out = np.empty(500, dtype=np.int64)
    _kernels.sample_from_distance_rows(
        distances, ranges, order, u_choice, u_fallback, 1.5, gamma, out
    )
    np.testing.assert_array_equal(out, expected)


def test_truncated_gumbel_kernel_matches_twin(space):
    generator = np.random.default_rng(12)
    table = space.neighbors(20, cache=False)
    words = generator.integers(0, 300, 400)
    counts = generator.integers(0, 21, 400)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    uniforms = generator.random(offsets[-1])
    distances = np.empty((300, 20))
    _kernels.row_distances(np.arange(300), table.ids.astype(np.int64), space.vectors, distances)
    scale, bound = 3.0, space.max_distance()
    lower = math.exp(-math.exp(bound / scale))
    width = math.exp(-math.exp(-bound / scale)) - lower
    out = np.empty(400, dtype=np.int64)
    _kernels.truncated_gumbel_select_by_logs(
        words.astype(np.int64),
        table.ids.astype(np.int64),
        distances,
        counts,
        offsets,
        uniforms,
        lower,
        width,
        scale,
        bound,
        out,
    )
    expected = ref.truncated_gumbel(
        table.ids[words], distances[words], counts, uniforms, scale, bound
    )
    np.testing.assert_array_equal(out, expected)


def test_laplace_decoding_matches_brute_force(space):
    for epsilon in (2.0, 20.0, 200.0):
        mechanism = dd.MultivariateLaplace(space, epsilon, table_k=16)
        words = np.random.default_rng(3).integers(0, 300, 3_000)
        noise = mechanism.noise(3_000, rng=epsilon.__int__())
        points = space.vectors[words].astype(np.float64) + noise
        decoded = mechanism.decode(words, points, np.linalg.norm(noise, axis=1))
        np.testing.assert_array_equal(decoded, ref.nearest(points, space.vectors))


def test_laplace_decode_checks_its_inputs_and_never_returns_a_non_word(space):
    """Found by the fresh-user review of issue 16: NaN points decoded to -1 (row-decided with
    the given radius), and a radius given too small made a far point decode to -1."""
    mechanism = dd.MultivariateLaplace(space, 20.0, table_k=16)
    dim = space.dim
    with pytest.raises(ValueError, match="`points` must be finite"):
        mechanism.decode([1, 2], np.full((2, dim), np.nan), [0.1, 0.1])
    with pytest.raises(ValueError, match=rf"`points` must have shape \(n, {dim}\)"):
        mechanism.decode([1], np.zeros((1, dim + 1)), [1.0])
    with pytest.raises(ValueError, match="same length; got 2, 2 and 1"):
        mechanism.decode([1, 2], np.zeros((2, dim)), [1.0])
    with pytest.raises(ValueError, match="`radii` must be >= 0"):
        mechanism.decode([1], np.zeros((1, dim)), [-1.0])
    with pytest.raises(ValueError, match="`radii` must be finite"):
        mechanism.decode([1], np.zeros((1, dim)), [np.inf])
    with pytest.raises(TypeError, match="`word_ids` must be an int"):
        mechanism.decode([1.0], np.zeros((1, dim)), [1.0])
    with pytest.raises(ValueError, match=r"`word_ids` must be a 1-D array; got shape \(1, 2\)"):
        mechanism.decode([[1, 2]], np.zeros((2, dim)), [1.0, 1.0])
    with pytest.raises(ValueError, match="`radii` must be a 1-D array"):
        mechanism.decode([1, 2], np.zeros((2, dim)), [[1.0], [1.0]])
    # radii smaller than the true noise norm: the decision uses the true distance
    generator = np.random.default_rng(4)
    words = generator.integers(0, len(space), 200)
    points = space.vectors[words].astype(np.float64) + generator.normal(0.0, 3.0, (200, dim))
    far = space.vectors[[2]].astype(np.float64)
    far[0, 0] = 1e300
    points = np.vstack([points, far])
    words = np.append(words, 2)
    decoded = mechanism.decode(words, points, np.zeros(len(words)))
    np.testing.assert_array_equal(decoded[:-1], ref.nearest(points[:-1], space.vectors))
    assert decoded[-1] == space.nearest(far)[0] >= 0


# ----------------------------------------------------------------------------- noise laws


@pytest.mark.statistical
def test_laplace_noise_radius_is_gamma_and_direction_uniform(space):
    mechanism = dd.MultivariateLaplace(space, 4.0)
    noise = mechanism.noise(20_000, rng=5)
    radius = np.linalg.norm(noise, axis=1)
    assert stats.kstest(radius, stats.gamma(a=6, scale=1 / 4.0).cdf).pvalue > 1e-3
    direction = noise / radius[:, None]
    # each coordinate of a uniform direction in R^d: (x + 1) / 2 ~ Beta((d-1)/2, (d-1)/2)
    for axis in range(6):
        beta = stats.beta((6 - 1) / 2, (6 - 1) / 2)
        assert stats.kstest((direction[:, axis] + 1) / 2, beta.cdf).pvalue > 1e-3
    # each coordinate has mean 0 and variance 1/dim: 5 standard errors of the mean
    assert np.abs(direction.mean(axis=0)).max() < 5 * math.sqrt(1 / 6) / math.sqrt(20_000)


# ----------------------------------------------------------------------------- truncated Gumbel


def test_gumbel_calibration_round_trips_and_refuses_small_epsilon(space):
    floor = dd.TruncatedGumbel(space, scale=10.0).min_epsilon
    n = len(space)
    assert floor == pytest.approx((5 + 2 * math.log(n)) / space.min_distance())
    for epsilon in (1.01 * floor, 2 * floor, 10 * floor):
        forward = dd.TruncatedGumbel(space, epsilon=epsilon)
        backward = dd.TruncatedGumbel(space, scale=forward.scale)
        assert backward.epsilon == pytest.approx(epsilon, rel=1e-10)
    with pytest.raises(ValueError, match=rf"`epsilon` must be > {floor:.6g}, the smallest"):
        dd.TruncatedGumbel(space, epsilon=0.99 * floor)
    with pytest.raises(ValueError, match="exactly one of `epsilon` and `scale`"):
        dd.TruncatedGumbel(space)
    twins = dd.EmbeddingSpace(["a", "b", "c"], [[0.0], [0.0], [1.0]])
    with pytest.raises(ValueError, match="share a vector"):
        dd.TruncatedGumbel(twins, scale=1.0)


def test_gumbel_quadrature_matches_scipy_quad():
    distances = np.array([0.0, 0.7, 1.1, 2.5, 2.6])
    scale, bound = 1.3, 3.0
    for k in range(2, 6):
        counts = np.zeros(6)
        counts[k] = 1.0
        ours = candidate_probabilities(distances, scale, bound, counts)
        z = math.exp(-math.exp(-bound / scale)) - math.exp(-math.exp(bound / scale))

        def survival(x, z=z):
            x = min(max(x, -bound), bound)
            return (math.exp(-math.exp(-bound / scale)) - math.exp(-math.exp(-x / scale))) / z

        for c in range(k):

            def integrand(y, c=c, k=k, z=z):
                x = y - distances[c]
                density = math.exp(-x / scale - math.exp(-x / scale)) / (scale * z)
                product = math.prod(survival(y - distances[j]) for j in range(k) if j != c)
                return density * product

            points = sorted({d + s * bound for d in distances for s in (-1, 1)})
            value, _ = integrate.quad(
                integrand,
                distances[c] - bound,
                distances[c] + bound,
                points=points,
                epsabs=1e-14,
                epsrel=1e-12,
                limit=200,
            )
            assert ours[c] == pytest.approx(value, abs=1e-12)
        assert ours.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.statistical
@pytest.mark.parametrize("convention", ["seed", "mldp"])
def test_gumbel_exact_distribution_against_large_monte_carlo(space, convention):
    mechanism = dd.TruncatedGumbel(space, scale=2.0, convention=convention)
    ids, probabilities = mechanism.output_distribution(42)
    n_samples = 2_000_000
    counts = np.bincount(mechanism.sample(np.full(n_samples, 42), rng=9), minlength=300)[ids]
    # every frequency within 5 binomial standard errors (+ 1 count)
    tolerance = 5 * np.sqrt(probabilities * (1 - probabilities) * n_samples) + 1
    assert (np.abs(counts - probabilities * n_samples) <= tolerance).all()
    assert counts.sum() == n_samples  # nothing outside the computed support


def test_gumbel_conventions_differ_by_one_candidate():
    """Seed: the word and its k nearest neighbours (k + 1 candidates); mldp: the word and k - 1.
    On three words (k <= 2) only the seed's convention ever reaches the farthest word; with the
    count pinned at 2 by a huge Poisson mean, the seed's law is the selection among all three
    and mldp's the selection among the word and its nearest neighbour (both by direct
    quadrature of the order-statistic integral)."""
    three = dd.EmbeddingSpace(["a", "b", "c"], [[0.0], [1.0], [2.5]])
    laws = {}
    for convention in ("seed", "mldp"):
        mechanism = dd.TruncatedGumbel(three, scale=1.5, poisson_mean=1e9, convention=convention)
        ids, probabilities = mechanism.output_distribution(0)
        laws[convention] = dict(zip(ids.tolist(), probabilities.tolist(), strict=True))
        drawn = np.bincount(mechanism.sample(np.zeros(20_000, dtype=int), rng=3), minlength=3)
        assert (drawn[2] > 0) == (convention == "seed")
        bound = mechanism.log_prob_upper_bound(0, [2])[0]
        assert (bound > -np.inf) == (convention == "seed")

    def selection(distances, c, scale=1.5, bound=2.5):
        low, high = stats.gumbel_r.cdf([-bound, bound], scale=scale)

        def integrand(y):
            density = stats.gumbel_r.pdf(y - distances[c], scale=scale) / (high - low)
            others = [
                (high - stats.gumbel_r.cdf(min(max(y - d, -bound), bound), scale=scale))
                / (high - low)
                for j, d in enumerate(distances)
                if j != c
            ]
            return density * np.prod(others)

        return integrate.quad(integrand, distances[c] - bound, distances[c] + bound, limit=200)[0]

    # k < 2 keeps probability P[k = 1 | k <= 2] ~ 2 / mean = 2e-9: tolerance 1e-8
    assert laws["seed"][2] == pytest.approx(selection([0.0, 1.0, 2.5], 2), abs=1e-8)
    assert laws["seed"][0] == pytest.approx(selection([0.0, 1.0, 2.5], 0), abs=1e-8)
    assert laws["mldp"][1] == pytest.approx(selection([0.0, 1.0], 1), abs=1e-8)
    assert laws["mldp"].get(2, 0.0) == 0.0


def test_gumbel_convention_is_validated(space):
    for bad in ("Seed", "k+1", 1, None):
        with pytest.raises(ValueError, match="`convention` must be one of 'seed', 'mldp'"):
            dd.TruncatedGumbel(space, scale=1.0, convention=bad)
    assert "convention='seed'" in repr(dd.TruncatedGumbel(space, scale=1.0))


def test_gumbel_draws_beyond_the_table_use_exact_wider_rows(space):
    mechanism = dd.TruncatedGumbel(space, scale=2.0, poisson_mean=150.0)
    out = mechanism.sample(np.full(2_000, 7), rng=1)
    table = space.neighbors(300, cache=False)
    ranks = np.argsort(table.ids[7])[out]  # rank of each output among word 7's neighbours
    assert ranks.max() >= 64  # candidates past the 64-wide table were reachable


# ----------------------------------------------------------------------------- text


def test_perturb_text_keeps_layout_and_is_reproducible(space):
    mechanism = dd.ExponentialMechanism(space, 0.5)
    words = space.words([1, 2, 3])
    text = f"{words[0].upper()}, {words[1]}!\n  ({words[2]}) unknown-word 42"
    with pytest.warns(dd.PrivacyWarning, match="3 word token"):
        first = dd.perturb_text(text, mechanism, rng=3, unknown="keep")
    assert dd.tokenize(first)[0::2] == dd.tokenize(text)[0::2]  # separators untouched
    assert "unknown-word 42" in first
    masked = dd.perturb_text(text, mechanism, rng=3)  # the default masks them
    assert masked == dd.perturb_text(text, mechanism, rng=3)
    assert masked != dd.perturb_text(text, mechanism, rng=4)
    assert masked.endswith(") [UNK]-[UNK] [UNK]")
    with pytest.raises(ValueError, match="`texts` must be a non-empty string"):
        dd.perturb_text("", mechanism)
    with pytest.raises(TypeError, match="`mechanism` must be a densitydp Mechanism"):
        dd.perturb_text("x", "laplace")
    assert dd.perturb_text([text, ""], mechanism, rng=3)[1] == ""


def test_perturb_file_is_atomic_and_streams(space, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(" ".join(space.words([i, i + 1])) for i in range(50)) + "\n")
    out = dd.perturb_file(
        source,
        tmp_path / "out.txt",
        dd.TruncatedExponential(space, 2.0),
        rng=0,
        batch_lines=7,
        progress=False,
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 50 and all(len(line.split()) == 2 for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_row_distances_kernel_matches_twin(space):
    words = np.array([0, 5, 299])
    candidates = np.random.default_rng(2).integers(0, 300, (3, 11))
    out = np.empty((3, 11))
    _kernels.row_distances(words, candidates, space.vectors, out)
    expected = np.sqrt(
        (
            (
                space.vectors[candidates].astype(float)
                - space.vectors[words][:, None, :].astype(float)
            )
            ** 2
        ).sum(-1)
    )
    np.testing.assert_allclose(out, expected, rtol=1e-14)


def test_samples_do_not_depend_on_thread_count(space):
    import numba

    words = np.random.default_rng(5).integers(0, 300, 5_000)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append([m.sample(words, rng=8) for m in all_mechanisms(space)])
    finally:
        numba.set_num_threads(before)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


def test_gumbel_on_two_words_needs_an_explicit_poisson_mean():
    """ln(n - 1) = 0 on two words: the default would return every word unchanged under a finite
    claim (fresh-user review); it is refused, and a given mean works."""
    two = dd.EmbeddingSpace(["a", "b"], [[0.0], [1.0]])
    with pytest.raises(ValueError, match="at least 3 words for the default `poisson_mean`"):
        dd.TruncatedGumbel(two, scale=1.0)
    mechanism = dd.TruncatedGumbel(two, scale=1.0, poisson_mean=1.0)
    ids, probabilities = mechanism.output_distribution(1)
    assert ids.tolist() == [1, 0] and probabilities.sum() == pytest.approx(1.0)
    assert set(mechanism.sample(np.ones(200, dtype=int), rng=0).tolist()) == {0, 1}


def test_laplace_refuses_an_epsilon_it_cannot_decode_exactly(space):
    with pytest.raises(ValueError, match="`epsilon` must be >= .* for exact decoding"):
        dd.MultivariateLaplace(space, epsilon=1e-60)
    mechanism = dd.MultivariateLaplace(
        space, epsilon=1.01 * dd.MultivariateLaplace(space, 1.0).min_epsilon
    )
    out = mechanism.sample(np.zeros(500, dtype=np.int64), rng=0)
    assert out.min() >= 0 and out.max() < len(space) and len(np.unique(out)) > 1


@pytest.mark.parametrize(("mean", "top"), [(60.0, 50), (3.0, 50), (1e6, 50), (1e300, 7)])
def test_truncated_poisson_is_exact_and_bounded(mean, top):
    from scipy import stats

    from densitydp.mechanisms.gumbel import truncated_poisson

    n = 20_000
    counts = truncated_poisson(mean, top, n, np.random.default_rng(0))
    assert counts.min() >= 0 and counts.max() <= top
    log_pmf = stats.poisson.logpmf(np.arange(top + 1), mean)
    expected = n * np.exp(log_pmf - np.logaddexp.reduce(log_pmf))
    observed = np.bincount(counts, minlength=top + 1)
    keep = expected >= 5  # chi-square on the cells with enough expected counts, rest pooled
    cells_o = np.append(observed[keep], observed[~keep].sum())
    cells_e = np.append(expected[keep], expected[~keep].sum())
    if cells_e[-1] < 5:
        cells_o, cells_e = cells_o[:-1], cells_e[:-1]
    if len(cells_e) > 1:
        assert stats.chisquare(cells_o, cells_e * cells_o.sum() / cells_e.sum()).pvalue > 1e-3
    else:
        assert observed[top] == n


def test_gumbel_with_a_poisson_mean_far_above_the_vocabulary(space):
    mechanism = dd.TruncatedGumbel(space, scale=1.0, poisson_mean=1e9)
    out = mechanism.sample(np.arange(10), rng=0)  # used to loop forever
    assert out.min() >= 0 and out.max() < len(space)
    _, probabilities = mechanism.output_distribution(0)
    assert np.isfinite(probabilities).all() and probabilities.sum() == pytest.approx(1.0)


def _build_or_refusal(maker, value):
    try:
        return maker(value), None
    except ValueError as exc:
        return None, str(exc)


EXTREME = (5e-324, 1e-300, 1e-30, 1e7, 1e10, 1e30, 1e300, 1.7e308)


@pytest.mark.parametrize("value", EXTREME)
@pytest.mark.parametrize(
    "name", ["laplace", "exponential", "tem", "gumbel", "gumbel-scale", "density", "dtl"]
)
def test_extreme_parameters_work_exactly_or_are_refused_by_name(space, name, value):
    prior = dd.KDEPrior.fit(space)
    makers = {
        "laplace": lambda e: dd.MultivariateLaplace(space, e),
        "exponential": lambda e: dd.ExponentialMechanism(space, e),
        "tem": lambda e: dd.TruncatedExponential(space, e),
        "gumbel": lambda e: dd.TruncatedGumbel(space, e),
        "gumbel-scale": lambda e: dd.TruncatedGumbel(space, scale=e),
        "density": lambda e: dd.DensityAwareLaplace(space, e, prior),
        "dtl": lambda e: dd.DistanceTruncatedLaplace(space, e, radius=5.0),
    }
    argument = "scale" if name == "gumbel-scale" else "epsilon"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dd.PrivacyWarning)
        mechanism, refusal = _build_or_refusal(makers[name], value)
    if refusal is not None:  # refused: by the argument's name, at construction
        assert f"`{argument}`" in refusal
        return
    out = mechanism.sample(np.arange(20), rng=0)
    assert out.min() >= 0 and out.max() < len(space)
    if mechanism.exact:
        _, probabilities = mechanism.output_distribution(0)
        assert np.isfinite(probabilities).all() and probabilities.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("factor", [1e-30, 1e-20, 1e20, 1e30])
def test_outputs_do_not_depend_on_the_units_of_the_vectors(space, factor):
    """Vectors times ``factor`` and epsilon divided by it: the same law, so the same outputs for
    the same seed (the exact search's float32 screen underflowed at 1e-25 and overflowed at
    1e19; the Laplace range was not relative)."""
    scaled = dd.EmbeddingSpace(list(space.vocabulary), space.vectors.astype(np.float64) * factor)
    tokens = np.arange(len(space)).repeat(3)
    for cls, epsilon in (
        (dd.MultivariateLaplace, 5.0),
        (dd.TruncatedExponential, 5.0),
        (dd.TruncatedGumbel, 2000.0),
    ):
        expected = cls(space, epsilon).sample(tokens, rng=0)
        np.testing.assert_array_equal(cls(scaled, epsilon / factor).sample(tokens, rng=0), expected)


# ------------------------------------------------------------------ issue 16: low epsilon


@pytest.mark.parametrize(
    ("mechanism_class", "epsilon"),
    [
        (dd.ExponentialMechanism, 1.0),
        (dd.TruncatedExponential, 1.0),
        (dd.TruncatedExponential, 4.0),
    ],
)
def test_uniform_rejection_kernel_matches_twin(mechanism_class, epsilon):
    space = dd.synthetic_space(n_words=500, dim=6, n_clusters=4, rng=6)
    mechanism = mechanism_class(space, epsilon)
    words = np.arange(0, 500, 7)
    out = _assert_rejection_kernel_matches_twin(
        _kernels.sample_by_uniform_rejection, ref.uniform_rejection, mechanism, words, seed=4
    )
    assert (out != words).mean() > 0.3  # low epsilon: most draws leave the word (and its row)


@pytest.fixture(params=[0.0, math.inf], ids=["rejection", "rows"])
def round_cost(request, monkeypatch):
    """Force one sampler: a round cost of 0 sends every word to rejection, inf to full rows."""
    from densitydp.mechanisms import exponential

    monkeypatch.setattr(exponential, "ROUND_COST", request.param)
    return request.param


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("mechanism_class", "epsilon"),
    [(dd.ExponentialMechanism, 0.8), (dd.TruncatedExponential, 1.5)],
)
def test_low_epsilon_samplers_have_the_exact_law(space, round_cost, mechanism_class, epsilon):
    mechanism = mechanism_class(space, epsilon)
    report = check_mechanism(mechanism, word_ids=[3, 150, 299], n_samples=100_000, rng=7)
    assert report.passed, str(report)


def test_low_epsilon_samples_do_not_depend_on_thread_count(space, round_cost):
    import numba

    words = np.random.default_rng(9).integers(0, 300, 3_000)
    mechanisms = [dd.ExponentialMechanism(space, 0.8), dd.TruncatedExponential(space, 1.5)]
    before = numba.get_num_threads()
    try:
        results = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append([m.sample(words, rng=2) for m in mechanisms])
    finally:
        numba.set_num_threads(before)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


def test_rejection_is_chosen_by_expected_cost():
    from densitydp.mechanisms.exponential import ROUND_COST, _rejection_is_cheaper

    n_tokens = np.array([1, 1, 10_000, 1_000])
    row_mass = np.ones(4)
    outside_mass = np.array([1.0, 1e6, 1.0, 1e-3])
    chosen = _rejection_is_cheaper(n_tokens, row_mass, outside_mass, 100_000, 64)
    expected = n_tokens * (1 + outside_mass / row_mass) * ROUND_COST < 100_064
    np.testing.assert_array_equal(chosen, expected)
    assert chosen.tolist() == [True, False, False, True]


@pytest.mark.parametrize("scale", [3.0, 400.0])  # exponentials drawn by numpy / inverse CDF
@pytest.mark.parametrize("serial", [False, True])
def test_truncated_gumbel_race_kernel_matches_twin(space, scale, serial):
    generator = np.random.default_rng(13)
    table = space.neighbors(20, cache=False)
    words = generator.integers(0, 300, 400)
    counts = generator.integers(0, 21, 400)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    bound = space.max_distance()
    ratio = bound / scale
    span = math.exp(ratio) - math.exp(-ratio)
    spread = 0.0 if span >= 1.0 else -math.expm1(-span)
    draws = (
        generator.standard_exponential(offsets[-1]) % span
        if spread == 0.0
        else generator.random(offsets[-1])
    )
    distances = np.empty((300, 20))
    _kernels.row_distances(np.arange(300), table.ids.astype(np.int64), space.vectors, distances)
    out = np.empty(400, dtype=np.int64)
    kernel = _kernels.truncated_gumbel_select_serial if serial else _kernels.truncated_gumbel_select
    kernel(
        words.astype(np.int64),
        table.ids.astype(np.int64),
        np.exp(-distances / scale),
        counts,
        offsets,
        draws,
        math.exp(-ratio),
        spread,
        out,
    )
    expected = ref.truncated_gumbel_race(
        table.ids[words], distances[words], counts, draws, scale, bound, spread
    )
    np.testing.assert_array_equal(out, expected)


@pytest.fixture(params=["race", "logs"])
def gumbel_kernel(request, monkeypatch):
    from densitydp.mechanisms import gumbel

    monkeypatch.setattr(gumbel, "_KERNEL", request.param)
    return request.param


@pytest.mark.statistical
@pytest.mark.parametrize("scale", [2.0, 150.0])  # span >= 1: numpy exponentials; < 1: inverse CDF
def test_gumbel_race_has_the_exact_law(space, scale, gumbel_kernel):
    mechanism = dd.TruncatedGumbel(space, scale=scale)
    ratio = mechanism.max_distance / scale
    assert (math.exp(ratio) - math.exp(-ratio) >= 1.0) == (scale == 2.0)
    report = check_mechanism(mechanism, word_ids=[42, 7], n_samples=200_000, rng=21)
    assert report.passed, str(report)
    ids, probabilities = mechanism.output_distribution(42)
    n_samples = 1_000_000
    counts = np.bincount(mechanism.sample(np.full(n_samples, 42), rng=22), minlength=300)[ids]
    tolerance = 5 * np.sqrt(probabilities * (1 - probabilities) * n_samples) + 1
    assert (np.abs(counts - probabilities * n_samples) <= tolerance).all()
    assert counts.sum() == n_samples


def test_gumbel_samples_do_not_depend_on_thread_count_or_call_size(space, monkeypatch):
    import numba

    from densitydp.mechanisms import gumbel

    mechanism = dd.TruncatedGumbel(space, scale=2.0)
    words = np.random.default_rng(6).integers(0, 300, 30_000)
    before = numba.get_num_threads()
    results = []
    try:
        for threads, serial_below in ((1, 20_000), (2, 20_000), (2, 10**9), (1, 0)):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            monkeypatch.setattr(gumbel, "SERIAL_TOKENS", serial_below)
            results.append(mechanism.sample(words, rng=4))
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
