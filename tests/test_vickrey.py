from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from scipy import stats

import densitydp as dd
from conftest import assert_same_at_thread_counts
from densitydp import neighbors as nb
from densitydp.mechanisms import _embedding_kernels, build_mechanism
from densitydp.mechanisms.base import neighbor_rows
from densitydp.mechanisms.mahalanobis import DEFAULT_LAM
from densitydp.mechanisms.vickrey import DEFAULT_THRESHOLD
from densitydp.testing import check_mechanism
from reference import embedding as ref


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=300, dim=6, n_clusters=4, rng=1)


@pytest.fixture(scope="module")
def stretched():
    generator = np.random.default_rng(4)
    vectors = generator.standard_normal((400, 5)) * np.array([6.0, 3.0, 1.0, 0.5, 0.25])
    return dd.EmbeddingSpace([f"w{i}" for i in range(400)], vectors)


@pytest.fixture(scope="module")
def twins():
    """A small space with duplicated vectors (ties at distance 0) and a regular grid (ties at
    equal positive distances)."""
    grid = np.array([[x, y] for x in range(4) for y in range(4)], dtype=np.float64)
    vectors = np.vstack([grid, grid[[0, 5, 5]]])  # words 16, 17, 18 repeat words 0, 5, 5
    return dd.EmbeddingSpace([f"w{i}" for i in range(len(vectors))], vectors)


def p_first(d1, d2, t):
    """The paper's probability of the first nearest word, with 1 - t on a zero denominator."""
    denominator = t * d1 + (1 - t) * d2
    return (1 - t) * d2 / denominator if denominator > 0 else 1 - t


# ----------------------------------------------------------------------------- conformance


@pytest.mark.statistical
@pytest.mark.parametrize(
    ("epsilon", "threshold", "lam", "table_k"),
    [(3.0, 0.5, 0.0, None), (20.0, 1.0, 0.5, 16), (8.0, 0.3, DEFAULT_LAM, 2)],
)
def test_conformance(space, epsilon, threshold, lam, table_k):
    mechanism = dd.VickreyMechanism(space, epsilon, threshold=threshold, lam=lam, table_k=table_k)
    assert check_mechanism(mechanism, rng=int(epsilon)).passed


def test_built_by_name(space):
    plain = build_mechanism("vickrey", space, 5.0)
    assert isinstance(plain, dd.VickreyMechanism)
    assert (plain.lam, plain.threshold) == (0.0, DEFAULT_THRESHOLD)
    elliptic = build_mechanism("vickrey-mahalanobis", space, 5.0, threshold=0.25)
    assert (elliptic.lam, elliptic.threshold) == (DEFAULT_LAM, 0.25)
    assert build_mechanism("vickrey-mahalanobis", space, 5.0, lam=0.9).lam == 0.9
    with pytest.raises(ValueError, match="takes no option `lam`"):
        build_mechanism("vickrey", space, 5.0, lam=0.5)
    assert repr(elliptic).endswith("epsilon=5.0, threshold=0.25, lam=0.2, table_k=64)")


# ----------------------------------------------------------------------------- kernels


def test_row_kernel_matches_its_twin(twins, space):
    for vocabulary, threshold in ((space, 0.35), (twins, 0.6), (twins, 1.0)):
        generator = np.random.default_rng(5)
        n = 3_000
        words = generator.integers(0, len(vocabulary), n)
        width = min(8, len(vocabulary))
        unique, inverse = np.unique(words, return_inverse=True)
        row_ids, _ = neighbor_rows(vocabulary, unique, width)
        points = vocabulary.vectors[words].astype(np.float64)
        points[: n // 2] += 0.7 * generator.standard_normal((n // 2, vocabulary.dim))
        # the rest sit on words (d1 = 0; d1 = d2 = 0 on the duplicated words of `twins`)
        uniforms = generator.random(n)
        out = np.empty(n, dtype=np.int64)
        _embedding_kernels.vickrey_in_rows(
            points,
            inverse.astype(np.int64),
            row_ids,
            vocabulary.vectors,
            uniforms,
            threshold,
            out,
        )
        expected = ref.vickrey_in_rows(
            points, inverse, row_ids, vocabulary.vectors, uniforms, threshold
        )
        np.testing.assert_array_equal(out, expected)


def test_select_kernel_matches_its_twin_and_the_degenerate_cases(twins):
    generator = np.random.default_rng(2)
    n = 2_000
    vectors = twins.vectors
    first = generator.integers(0, len(twins), n)
    second = generator.integers(0, len(twins), n)
    points = vectors[first].astype(np.float64) + generator.normal(0.0, 0.6, (n, twins.dim))
    points[:100] = vectors[first[:100]]  # on a word: d1 = 0
    first[100:200], second[100:200] = 5, 17  # words 5 and 17 share a vector
    points[100:200] = vectors[5]  # d1 = d2 = 0
    uniforms = generator.random(n)
    for threshold in (0.0, 0.3, 0.5, 1.0):
        out = np.empty(n, dtype=np.int64)
        _embedding_kernels.vickrey_select(points, first, second, vectors, uniforms, threshold, out)
        np.testing.assert_array_equal(
            out, ref.vickrey_select(points, first, second, vectors, uniforms, threshold)
        )
        if threshold == 0.0:
            np.testing.assert_array_equal(out, first)  # always the given first
        if threshold == 1.0:  # the second, except d1 = d2 = 0 where P(first) = 1 - t = 0 too
            np.testing.assert_array_equal(out[100:], second[100:])
    # d1 = d2 = 0: P(first) = 1 - t; d1 = 0 < d2 and t < 1: P(first) = 1
    assert _embedding_kernels.vickrey_pick(1, 2, 0.0, 0.0, 0.39, 0.6) == 1
    assert _embedding_kernels.vickrey_pick(1, 2, 0.0, 0.0, 0.41, 0.6) == 2
    assert _embedding_kernels.vickrey_pick(1, 2, 0.0, 3.0, 0.999, 0.9) == 1


@pytest.mark.parametrize("scale", [1.0, 1e-20, 1e20])
def test_two_nearest_cascade_matches_its_twin(stretched, twins, scale):
    from densitydp.mechanisms import _cascade
    from reference.cascade import words_of

    for vocabulary in (stretched, twins):
        vectors = np.asarray(vocabulary.vectors, dtype=np.float64) * scale
        cascade = _cascade.build(vectors.astype(np.float32))
        generator = np.random.default_rng(7)
        n = 500
        words = generator.integers(0, len(vectors), n)
        points = vectors[words] + scale * generator.normal(0.0, 1.5, (n, vectors.shape[1]))
        points[:50] = vectors[words[:50]]  # on words; on a lattice: ties
        points[50:100] = vectors[words[50:100]] + 0.5 * scale  # lattice midpoints: ties
        queries, slack, _ = _cascade.prepare(cascade, points)
        n_units = len(cascade.representatives)
        seeds = np.where(generator.random((n, 3)) < 0.5, generator.integers(0, n_units, (n, 3)), -1)
        first, second, status = (np.empty(n, dtype=np.int64) for _ in range(3))
        for size in (1, 7, _cascade.QUERY_BLOCK):  # the grouping of queries into tasks
            first, second, status = (np.full(n, -9, dtype=np.int64) for _ in range(3))
            _embedding_kernels.two_nearest_cascade(
                queries,
                slack,
                cascade.blocks,
                cascade.boxes,
                n_units,
                seeds,
                cascade.relative,
                size,
                first,
                second,
                status,
            )
            if size == 1:
                kept = first.copy(), second.copy(), status.copy()
            else:
                for mine, theirs in zip((first, second, status), kept, strict=True):
                    np.testing.assert_array_equal(mine, theirs)
        t_first, t_second, t_status = ref.two_nearest_cascade(
            queries, slack, words_of(cascade), cascade.relative
        )
        decided = t_status == 2
        assert decided.sum() > n // 2
        np.testing.assert_array_equal(status[decided], 2)
        np.testing.assert_array_equal(first[decided], t_first[decided])
        np.testing.assert_array_equal(second[decided], t_second[decided])
        # undecided by the twin: never claimed decided by the kernel
        assert not np.any(status[~decided] == 2)


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_decoding_matches_brute_force(stretched, lam):
    """Rows decide the near points, the exact search the far ones; both equal a full scan."""
    for epsilon in (0.5, 5.0, 50.0, 500.0):
        mechanism = dd.VickreyMechanism(stretched, epsilon, threshold=0.4, lam=lam, table_k=16)
        generator = np.random.default_rng(int(epsilon * 10))
        words = generator.integers(0, len(stretched), 1_500)
        noise = mechanism.noise(1_500, rng=generator)
        uniforms = generator.random(1_500)
        points = stretched.vectors[words].astype(np.float64) + noise
        decoded = mechanism.decode_pair(words, points, np.linalg.norm(noise, axis=1), uniforms)
        expected = ref.vickrey_brute_force(points, stretched.vectors, uniforms, 0.4)
        np.testing.assert_array_equal(decoded, expected)


def test_decoding_with_ties_matches_brute_force(twins):
    mechanism = dd.VickreyMechanism(twins, 30.0, threshold=0.5, table_k=4)
    generator = np.random.default_rng(0)
    words = generator.integers(0, len(twins), 4_000)
    noise = mechanism.noise(4_000, rng=1)
    noise[:1_000] = 0.0  # exactly on the words: d1 = 0, or d1 = d2 = 0 on duplicates
    noise[1_000:2_000] = 0.5  # on grid midpoints: ties at equal positive distances
    uniforms = generator.random(4_000)
    points = twins.vectors[words].astype(np.float64) + noise
    decoded = mechanism.decode_pair(words, points, np.linalg.norm(noise, axis=1), uniforms)
    np.testing.assert_array_equal(
        decoded, ref.vickrey_brute_force(points, twins.vectors, uniforms, 0.5)
    )


def test_sample_draws_noise_then_uniforms(stretched):
    mechanism = dd.VickreyMechanism(stretched, 3.0, threshold=0.6, lam=0.5)
    words = np.random.default_rng(1).integers(0, len(stretched), 2_000)
    generator = np.random.default_rng(17)
    noise = mechanism._noise(len(words), generator)
    uniforms = generator.random(len(words))
    points = stretched.vectors[words].astype(np.float64) + noise
    np.testing.assert_array_equal(
        mechanism.sample(words, rng=17),
        ref.vickrey_brute_force(points, stretched.vectors, uniforms, 0.6),
    )


@pytest.mark.parametrize("scale", [1e20, 1e155, 1e300])
def test_decode_pair_is_exact_far_outside_the_space(scale):
    """Second fresh-user review of issue 16: points ~1e20 and more from the space decoded to
    ids 0 / 1 (the float64 distances of the k = 2 search lose the vectors' digits there)."""
    from fractions import Fraction

    space = dd.synthetic_space(n_words=300, dim=7, rng=0)
    mechanism = dd.VickreyMechanism(space, 5.0, threshold=0.5, table_k=8)
    words = np.array([3, 150, 299])
    points = space.vectors[words].astype(np.float64) * scale
    vectors = [[Fraction(float(x)) for x in row] for row in space.vectors]
    first, second = nb.two_nearest_ids(points, space.vectors)
    for i, (point, word) in enumerate(zip(points, words, strict=True)):
        exact = [
            sum((Fraction(float(q)) - x) ** 2 for q, x in zip(point, row, strict=True))
            for row in vectors
        ]
        order = sorted(range(len(vectors)), key=lambda v: (exact[v], v))
        assert (first[i], second[i]) == (order[0], order[1])
        # far out d1 ~ d2, so P(first) ~ 1/2 at threshold 0.5: uniform 0 picks the first,
        # 0.999999 the second
        assert mechanism.decode_pair([word], point[None], [0.0], [0.0])[0] == order[0]
        assert mechanism.decode_pair([word], point[None], [0.0], [0.999999])[0] == order[1]


def test_decode_pair_checks_its_inputs(stretched):
    mechanism = dd.VickreyMechanism(stretched, 5.0, threshold=0.5, table_k=16)
    dim = stretched.dim
    with pytest.raises(ValueError, match="`points` must be finite"):
        mechanism.decode_pair([1], np.full((1, dim), np.nan), [0.1], [0.5])
    with pytest.raises(ValueError, match="`uniforms` must be a 1-D array"):
        mechanism.decode_pair([1], np.zeros((1, dim)), [0.1], [[0.5]])
    with pytest.raises(ValueError, match="`uniforms` must have the length"):
        mechanism.decode_pair([1], np.zeros((1, dim)), [0.1], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"`uniforms` must lie in \[0, 1\)"):
        mechanism.decode_pair([1], np.zeros((1, dim)), [0.1], [1.0])
    point = stretched.vectors[[3]].astype(np.float64) + 0.3
    # a radius given too small: the true distance decides
    assert mechanism.decode_pair([3], point, [0.0], [0.2])[0] >= 0


@pytest.mark.statistical
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
def test_selection_frequencies_follow_the_formula(stretched, threshold):
    """One fixed noisy point, 200,000 choices: chi-square of (first, second) against
    P(first) = (1 - t) d2 / (t d1 + (1 - t) d2)."""
    mechanism = dd.VickreyMechanism(stretched, 5.0, threshold=threshold, table_k=16)
    point = stretched.vectors[10].astype(np.float64) + np.array([0.4, -0.3, 0.2, 0.1, 0.05])
    distances = np.linalg.norm(stretched.vectors.astype(np.float64) - point, axis=1)
    order = np.argsort(distances, kind="stable")
    d1, d2 = distances[order[0]], distances[order[1]]
    n = 200_000
    uniforms = np.random.default_rng(int(threshold * 100)).random(n)
    words = np.full(n, 10)
    radius = np.full(n, float(np.linalg.norm(point - stretched.vectors[10])))
    out = mechanism.decode_pair(words, np.tile(point, (n, 1)), radius, uniforms)
    assert set(np.unique(out)) <= {order[0], order[1]}
    p = p_first(d1, d2, threshold)
    observed = [np.sum(out == order[0]), np.sum(out == order[1])]
    assert stats.chisquare(observed, [n * p, n * (1 - p)]).pvalue > 1e-4


def test_threshold_zero_is_plain_nearest_decoding(space, stretched):
    words = np.random.default_rng(2).integers(0, len(space), 5_000)
    for epsilon in (2.0, 20.0):
        np.testing.assert_array_equal(
            dd.VickreyMechanism(space, epsilon, threshold=0.0).sample(words, rng=4),
            dd.MultivariateLaplace(space, epsilon).sample(words, rng=4),
        )
        np.testing.assert_array_equal(
            dd.VickreyMechanism(stretched, epsilon, threshold=0.0, lam=0.4).sample(words, rng=4),
            dd.MahalanobisMechanism(stretched, epsilon, lam=0.4).sample(words, rng=4),
        )
    # and a positive threshold moves some outputs off the nearest word
    positive = dd.VickreyMechanism(space, 20.0, threshold=0.5).sample(words, rng=4)
    nearest = dd.MultivariateLaplace(space, 20.0).sample(words, rng=4)
    assert 0.0 < np.mean(positive != nearest) < 1.0


# ----------------------------------------------------------------------------- guarantee


def test_privacy_loss_bound_is_the_noise_claim(space, stretched):
    words = np.arange(0, 300, 7)
    others = words[::-1]
    plain = dd.VickreyMechanism(space, 4.0, threshold=0.5)
    np.testing.assert_array_equal(
        plain.privacy_loss_bound(words, others), 4.0 * space.distance(words, others)
    )
    elliptic = dd.VickreyMechanism(stretched, 4.0, threshold=0.5, lam=0.6)
    np.testing.assert_array_equal(
        elliptic.privacy_loss_bound(words, others),
        dd.MahalanobisMechanism(stretched, 4.0, lam=0.6).privacy_loss_bound(words, others),
    )
    for mechanism, metric in ((plain, "Euclidean"), (elliptic, "regularised Mahalanobis")):
        bound = mechanism.privacy_bound()
        assert (bound.notion, bound.epsilon, bound.delta) == ("metric", 4.0, 0.0)
        assert metric in bound.assumptions and "post-processing" in bound.assumptions


@pytest.mark.statistical
@pytest.mark.parametrize("lam", [0.0, 0.8])
def test_sampled_audit_finds_no_violation(stretched, lam):
    mechanism = dd.VickreyMechanism(stretched, 1.0, threshold=0.7, lam=lam)
    report = dd.audit(mechanism, n_pairs=12, n_samples=20_000, rng=1)
    assert report.passed, report.table
    assert len(report.violations) == 0


# ----------------------------------------------------------------------------- plumbing


def test_results_do_not_depend_on_the_thread_count(stretched):
    words = np.random.default_rng(0).integers(0, len(stretched), 4_000)
    mechanisms = [
        dd.VickreyMechanism(stretched, 2.0, threshold=0.5, table_k=8),
        dd.VickreyMechanism(stretched, 60.0, threshold=0.8, lam=0.5),
    ]
    assert_same_at_thread_counts(mechanisms, words, rng=8)


def test_pickle_round_trip(stretched):
    mechanism = dd.VickreyMechanism(stretched, 5.0, threshold=0.3, lam=0.3)
    words = np.arange(200)
    copy = pickle.loads(pickle.dumps(mechanism))
    assert repr(copy) == repr(mechanism)
    np.testing.assert_array_equal(copy.sample(words, rng=2), mechanism.sample(words, rng=2))


def test_refuses_bad_parameters(space):
    for threshold in (-0.1, 1.1, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"`threshold` must be a finite number >= 0 and <= 1"):
            dd.VickreyMechanism(space, 1.0, threshold=threshold)
    for threshold in ("0.5", None, False):
        with pytest.raises(TypeError, match="`threshold` must be a real number"):
            dd.VickreyMechanism(space, 1.0, threshold=threshold)
    for epsilon in (0.0, -2.0, math.nan):
        with pytest.raises(ValueError, match="`epsilon` must be"):
            dd.VickreyMechanism(space, epsilon)
    with pytest.raises(ValueError, match="`lam` must be a finite number >= 0 and <= 1"):
        dd.VickreyMechanism(space, 1.0, lam=1.2)
    with pytest.raises(ValueError, match="`table_k` must be"):
        dd.VickreyMechanism(space, 1.0, table_k=1)
    with pytest.raises(TypeError, match="`space` must be an EmbeddingSpace"):
        dd.VickreyMechanism("space", 1.0)
