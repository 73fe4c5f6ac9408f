"""SanText and SanText+ (Yue et al. 2021): exact law, sensitive words, guarantee."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax

import densitydp as dd
from conftest import assert_same_at_thread_counts
from densitydp.mechanisms import _sampling_kernels, build_mechanism, santext
from densitydp.testing import check_mechanism
from reference import sampling as ref


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=300, dim=6, n_clusters=4, rng=12)


def direct_law(space, word, sensitive, epsilon, p):
    """The paper's law written out (dense over the vocabulary)."""
    vectors = space.vectors.astype(np.float64)
    distances = np.sqrt(((vectors[sensitive] - vectors[word]) ** 2).sum(axis=1))
    inner = softmax(-epsilon * distances / 2)
    law = np.zeros(len(space))
    if word in set(sensitive.tolist()):
        law[sensitive] = inner
    else:
        law[sensitive] = p * inner
        law[word] += 1 - p
    return law


# -- SanText -----------------------------------------------------------------------------------


def test_santext_is_the_exponential_mechanism(space):
    mechanism = dd.SanText(space, 2.0)
    reference = dd.ExponentialMechanism(space, 2.0)
    for word in (0, 150):
        np.testing.assert_array_equal(
            mechanism.output_distribution(word)[1], reference.output_distribution(word)[1]
        )
    words = np.arange(len(space)).repeat(20)
    np.testing.assert_array_equal(mechanism.sample(words, rng=3), reference.sample(words, rng=3))
    assert mechanism.privacy_bound().notion == "metric"
    assert "Yue et al." in mechanism.privacy_bound().assumptions
    vectors = space.vectors.astype(np.float64)
    distances = np.linalg.norm(vectors - vectors[7], axis=1)
    np.testing.assert_allclose(mechanism.output_distribution(7)[1], softmax(-distances), rtol=1e-9)


# -- SanText+: sensitive words -----------------------------------------------------------------


def test_default_sensitive_words_are_the_last_rows(space):
    mechanism = dd.SanTextPlus(space, 1.0, sensitive_fraction=0.9)
    count = int(np.floor(0.9 * len(space)))
    assert mechanism.n_sensitive == count
    expected = np.zeros(len(space), dtype=bool)
    expected[len(space) - count :] = True
    np.testing.assert_array_equal(mechanism.is_sensitive(np.arange(len(space))), expected)
    assert dd.SanTextPlus(space, 1.0).n_sensitive == count  # the paper's w = 0.9 by default
    assert dd.SanTextPlus(space, 1.0).p == 0.3


def test_sensitive_words_can_be_given(space):
    mask = np.zeros(len(space), dtype=bool)
    mask[[1, 5, 9]] = True
    by_mask = dd.SanTextPlus(space, 1.0, sensitive=mask)
    by_ids = dd.SanTextPlus(space, 1.0, sensitive=[9, 5, 1])
    by_words = dd.SanTextPlus(space, 1.0, sensitive=space.words([1, 5, 9]))
    for mechanism in (by_mask, by_ids, by_words):
        assert np.flatnonzero(mechanism.is_sensitive(np.arange(len(space)))).tolist() == [1, 5, 9]


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_law_is_the_papers_formula(space, p):
    epsilon = 1.5
    mechanism = dd.SanTextPlus(space, epsilon, p=p, sensitive_fraction=0.6)
    sensitive = np.flatnonzero(mechanism.is_sensitive(np.arange(len(space))))
    for word in (0, 50, 200, 299):  # two non-sensitive, two sensitive
        law = direct_law(space, word, sensitive, epsilon, p)
        ids, probabilities = mechanism.output_distribution(word)
        dense = np.zeros(len(space))
        dense[ids] = probabilities
        np.testing.assert_allclose(dense, law, rtol=1e-10, atol=0)
        assert (probabilities > 0).all()
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(
                mechanism.log_prob(word, np.arange(len(space))), np.log(law), rtol=1e-10
            )


@pytest.mark.statistical
def test_large_sample_matches_the_law(space):
    """Pearson chi-square on 10^6 draws for a sensitive and a non-sensitive word (level 1e-3)."""
    mechanism = dd.SanTextPlus(space, 2.0, p=0.4, sensitive_fraction=0.5)
    for seed, word in enumerate((10, 280)):
        ids, probabilities = mechanism.output_distribution(word)
        n = 1_000_000
        counts = np.bincount(mechanism.sample(np.full(n, word), rng=seed), minlength=len(space))
        assert counts[ids].sum() == n
        expected = probabilities * n
        keep = expected >= 5
        observed = np.append(counts[ids][keep], counts[ids][~keep].sum())
        expected = np.append(expected[keep], expected[~keep].sum())
        assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.statistical
@pytest.mark.parametrize("path", ["rejection", "rows"])
@pytest.mark.parametrize("epsilon", [1.0, 6.0])
def test_both_samplers_of_non_sensitive_words_have_the_law(space, monkeypatch, path, epsilon):
    """Rejection from the neighbour row and full distance rows, each forced, against the exact
    law (Pearson chi-square on 400,000 sanitised draws, level 1e-3)."""
    monkeypatch.setattr(
        santext,
        "_rejection_is_cheaper",
        lambda n_tokens, *_: np.full(len(n_tokens), path == "rejection"),
    )
    mechanism = dd.SanTextPlus(space, epsilon, p=1.0, sensitive_fraction=0.5)
    for seed, word in enumerate((2, 140)):
        ids, probabilities = mechanism.output_distribution(word)
        n = 400_000
        counts = np.bincount(mechanism.sample(np.full(n, word), rng=seed), minlength=len(space))
        expected = probabilities * n
        keep = expected >= 5
        observed = np.append(counts[ids][keep], counts[ids][~keep].sum())
        expected = np.append(expected[keep], expected[~keep].sum())
        assert counts[ids].sum() == n
        assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_subset_rejection_kernel_matches_the_twin(space):
    mechanism = dd.SanTextPlus(space, 2.0, p=1.0, sensitive_fraction=0.5)
    words = np.arange(0, 150, 7)
    row_ids, row_distances, reach, base, _ = mechanism._outside_rows(words)
    n_tokens = 3
    token_rows = np.repeat(np.arange(len(words)), n_tokens)
    seeds = np.random.default_rng(3).integers(0, 2**63, len(token_rows)).astype(np.uint64)
    ranges = np.stack([np.arange(len(words)) * n_tokens, (np.arange(len(words)) + 1) * n_tokens], 1)
    out = np.empty(len(token_rows), dtype=np.int64)
    queries = space.vectors[words].astype(np.float64)
    outputs = space.vectors[mechanism.is_sensitive(np.arange(len(space)))]
    _sampling_kernels.sample_subset_by_rejection(
        queries,
        row_ids,
        row_distances,
        reach,
        base,
        ranges,
        np.arange(len(token_rows)),
        seeds,
        np.ascontiguousarray(outputs),
        1.0,
        out,
    )
    expected = ref.subset_rejection(
        queries[token_rows],
        row_ids[token_rows],
        row_distances[token_rows],
        reach[token_rows],
        base[token_rows],
        seeds,
        outputs,
        2.0,
    )
    np.testing.assert_array_equal(out, expected)


def test_non_sensitive_words_are_kept_with_probability_one_minus_p(space):
    mechanism = dd.SanTextPlus(space, 1.0, p=0.25, sensitive_fraction=0.5)
    n = 40_000
    out = mechanism.sample(np.full(n, 3), rng=0)
    kept = int((out == 3).sum())
    # a 5-sigma band around n (1 - p) (the word is never an output of sanitising)
    assert abs(kept - 0.75 * n) <= 5 * np.sqrt(n * 0.25 * 0.75)
    assert mechanism.is_sensitive(out[out != 3]).all()
    sensitive_out = mechanism.sample(np.full(1_000, 299), rng=0)
    assert mechanism.is_sensitive(sensitive_out).all()


@pytest.mark.statistical
@pytest.mark.parametrize(
    "make",
    [
        lambda s: dd.SanText(s, 3.0),
        lambda s: dd.SanTextPlus(s, 3.0),
        lambda s: dd.SanTextPlus(s, 1.0, p=0.5, sensitive_fraction=0.5),
        lambda s: dd.SanTextPlus(s, 2.0, p=1.0, sensitive_fraction=0.3),
    ],
)
def test_conformance(space, make):
    assert check_mechanism(make(space), word_ids=[0, 100, 250], rng=2).passed


# -- SanText+: the guarantee -------------------------------------------------------------------


def test_loss_bound_per_pair(space):
    epsilon = 2.0
    mechanism = dd.SanTextPlus(space, epsilon, p=0.3, sensitive_fraction=0.5)
    pairs = [(200, 250), (280, 160), (10, 200), (10, 20), (10, 10), (200, 200)]
    for word, other in pairs:
        claimed = mechanism.privacy_loss_bound(word, other)
        result = dd.exact_privacy_loss(mechanism, word, other)
        both = mechanism.is_sensitive(word) and mechanism.is_sensitive(other)
        if word == other:
            assert claimed == 0.0 and result.loss == 0.0
        elif both:
            assert claimed == pytest.approx(epsilon * space.distance(word, other))
            assert result.loss <= claimed * (1 + 1e-9)
        else:  # a non-sensitive word reveals itself when kept
            assert claimed == np.inf and result.loss == np.inf
    bounds = mechanism.privacy_loss_bound(np.array([200, 10]), np.array([[250], [20]]))
    assert bounds.shape == (2, 2)


def test_with_p_one_every_pair_is_metric(space):
    epsilon = 2.0
    mechanism = dd.SanTextPlus(space, epsilon, p=1.0, sensitive_fraction=0.5)
    for word, other in [(10, 20), (10, 200), (280, 3)]:
        claimed = mechanism.privacy_loss_bound(word, other)
        assert claimed == pytest.approx(epsilon * space.distance(word, other))
        assert dd.exact_privacy_loss(mechanism, word, other).loss <= claimed * (1 + 1e-9)


def test_protected_outputs_lose_at_most_ln_one_over_p_more(space):
    """On outputs in V_S the ratio between a sensitive and a non-sensitive word is at most
    exp(epsilon d) / p (the paper's protected outputs)."""
    epsilon, p = 2.0, 0.3
    mechanism = dd.SanTextPlus(space, epsilon, p=p, sensitive_fraction=0.5)
    sensitive = np.flatnonzero(mechanism.is_sensitive(np.arange(len(space))))
    for word, other in [(10, 200), (20, 290)]:
        gap = np.abs(mechanism.log_prob(word, sensitive) - mechanism.log_prob(other, sensitive))
        assert gap.max() <= epsilon * space.distance(word, other) + np.log(1 / p) + 1e-9


def test_sampled_audit_finds_no_violation(space):
    mechanism = dd.SanTextPlus(space, 1.0, p=0.3, sensitive_fraction=0.5)
    table = space.neighbors(2, word_ids=np.arange(150, 300))
    pairs = np.array([[w, table.rows([w])[0][0][1]] for w in range(150, 300, 15)])
    pairs = np.vstack([pairs, [[10, 200]]])
    report = dd.audit(mechanism, pairs=pairs, n_samples=20_000, rng=0)
    # pairs with a non-sensitive word claim nothing (inf) and are not counted as tested; every
    # pair with a claim is tested and none is violated
    claimed = np.isfinite(report.table["claimed"])
    assert claimed.any() and report.table["tested"][claimed].all()
    assert not report.failed and not report.table["violation"].any()


@pytest.mark.parametrize("path", ["rejection", "rows", None])
def test_results_do_not_depend_on_the_thread_count(space, monkeypatch, path):
    if path is not None:
        monkeypatch.setattr(
            santext,
            "_rejection_is_cheaper",
            lambda n_tokens, *_: np.full(len(n_tokens), path == "rejection"),
        )
    words = np.random.default_rng(5).integers(0, len(space), 20_000)
    mechanisms = [dd.SanText(space, 1.0), dd.SanTextPlus(space, 1.0, sensitive_fraction=0.5)]
    assert_same_at_thread_counts(mechanisms, words, rng=8)


# -- validation and registry -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"epsilon": 0.0}, ValueError, "`epsilon` must be"),
        ({"epsilon": float("nan")}, ValueError, "`epsilon` must be"),
        ({"p": -0.1}, ValueError, "`p` must be a finite number >= 0 and <= 1"),
        ({"p": 1.5}, ValueError, "`p` must be a finite number >= 0 and <= 1"),
        ({"p": "0.3"}, TypeError, "`p` must be a real number"),
        ({"sensitive_fraction": 0.0}, ValueError, "`sensitive_fraction` must be"),
        ({"sensitive_fraction": 1.2}, ValueError, "`sensitive_fraction` must be"),
        ({"sensitive_fraction": 0.005}, ValueError, "`sensitive` must select at least 2"),
        ({"sensitive": np.ones(5, dtype=bool)}, ValueError, "shape \\(300,\\)"),
        ({"sensitive": ["no-such-word"]}, ValueError, "not in the space"),
        ({"sensitive": [400]}, ValueError, "`sensitive`"),
        ({"sensitive": "word"}, TypeError, "`sensitive`"),
    ],
)
def test_bad_parameters_are_refused(space, options, error, match):
    arguments = {"epsilon": 1.0, **options}
    epsilon = arguments.pop("epsilon")
    with pytest.raises(error, match=match):
        dd.SanTextPlus(space, epsilon, **arguments)
    with pytest.raises(ValueError, match="`epsilon` must be"):
        dd.SanText(space, -1.0)


def test_is_immutable_and_named(space):
    mechanism = dd.SanTextPlus(space, 1.0, p=0.2)
    with pytest.raises(AttributeError):
        mechanism.p = 0.5
    assert "p=0.2" in repr(mechanism) and "n_sensitive=270" in repr(mechanism)
    assert "UMLDP" in mechanism.privacy_bound().assumptions


def test_built_by_name(space):
    assert isinstance(build_mechanism("santext", space, 1.0), dd.SanText)
    plus = build_mechanism("santext-plus", space, 1.0, p=0.1, sensitive_fraction=0.5)
    assert isinstance(plus, dd.SanTextPlus) and plus.p == 0.1 and plus.n_sensitive == 150
