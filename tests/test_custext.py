"""CusText and CusText+ (Chen et al. 2023): mapping, exact law, guarantee, kernels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax

import densitydp as dd
from conftest import assert_same_at_thread_counts
from densitydp.mechanisms import _sampling_kernels, build_mechanism
from densitydp.mechanisms.custext import default_stop_words
from densitydp.testing import check_mechanism
from reference import sampling as ref


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=300, dim=6, n_clusters=4, rng=11)


def top_k(space, epsilon, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dd.PrivacyWarning)
        return dd.CusText(space, epsilon, k=k, mapping="top-k")


def direct_law(space, word, members, epsilon):
    """The paper's formula written out: normalised distances inside the set, softmax of
    epsilon u / 2."""
    vectors = space.vectors.astype(np.float64)
    distances = np.sqrt(((vectors[members] - vectors[word]) ** 2).sum(axis=1))
    low, high = distances.min(), distances.max()
    utility = -(distances - low) / (high - low) if high > low else np.zeros(len(members))
    return softmax(epsilon * utility / 2)


# -- the mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 7, 20, 300])
def test_conservative_groups_match_the_twin(space, k):
    mechanism = dd.CusText(space, 1.0, k=k)
    group_of, groups = ref.conservative_groups(space.vectors, k)
    np.testing.assert_array_equal(mechanism._group_of, group_of)
    assert len(groups) == len(mechanism._sizes)
    for g, members in enumerate(groups):
        assert mechanism._sizes[g] == len(members)
        np.testing.assert_array_equal(mechanism._members[g, : len(members)], members)


@pytest.mark.parametrize("k", [7, 20])
def test_conservative_sets_are_shared_by_exactly_their_words(space, k):
    mechanism = dd.CusText(space, 1.0, k=k)
    n_words = len(space)
    sets = [tuple(sorted(mechanism.output_set(w).tolist())) for w in range(n_words)]
    for word, members in enumerate(sets):
        assert word in members
        for other in members:  # every member maps to the very same set
            assert sets[other] == members
    sizes = sorted({len(s) for s in sets})
    # all groups have k words but the last one, which holds the n mod k words left
    assert sizes == sorted({k, n_words % k} - {0})
    assert sum(len(s) for s in set(sets)) == n_words  # a partition


def test_conservative_group_is_the_leaders_nearest_ungrouped_words(space):
    k = 7
    mechanism = dd.CusText(space, 1.0, k=k)
    vectors = space.vectors.astype(np.float64)
    grouped = np.zeros(len(space), dtype=bool)
    for g in range(len(mechanism._sizes)):
        members = mechanism._members[g, : mechanism._sizes[g]]
        leader = members[0]
        assert leader == np.flatnonzero(~grouped)[0]  # the first ungrouped word in row order
        free = np.flatnonzero(~grouped)
        distances = np.linalg.norm(vectors[free] - vectors[leader], axis=1)
        expected = free[np.argsort(distances, kind="stable")[:k]]
        assert set(members.tolist()) == set(expected.tolist())
        grouped[members] = True


def test_top_k_sets_are_each_words_nearest(space):
    mechanism = top_k(space, 1.0, 5)
    vectors = space.vectors.astype(np.float64)
    for word in (0, 17, 250):
        distances = np.linalg.norm(vectors - vectors[word], axis=1)
        assert set(mechanism.output_set(word).tolist()) == set(np.argsort(distances)[:5].tolist())
        assert mechanism.output_set(word)[0] == word


def test_top_k_warns_at_construction(space):
    with pytest.warns(dd.PrivacyWarning, match="top-k"):
        dd.CusText(space, 1.0, k=5, mapping="top-k")
    with pytest.warns(dd.PrivacyWarning, match="top-k"):
        dd.CusTextPlus(space, 1.0, k=5, mapping="top-k")


# -- the law -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mapping", ["conservative", "top-k"])
@pytest.mark.parametrize("epsilon", [0.5, 3.0])
def test_output_distribution_is_the_papers_formula(space, mapping, epsilon):
    mechanism = (
        dd.CusText(space, epsilon, k=9) if mapping == "conservative" else top_k(space, epsilon, 9)
    )
    for word in (0, 3, 123, 299):
        members, probabilities = mechanism.output_distribution(word)
        np.testing.assert_allclose(
            probabilities, direct_law(space, word, members, epsilon), rtol=1e-12
        )
        log_p = mechanism.log_prob(word, np.arange(len(space)))
        np.testing.assert_allclose(np.exp(log_p[members]), probabilities, rtol=1e-12)
        outside = np.setdiff1d(np.arange(len(space)), members)
        assert np.isneginf(log_p[outside]).all()


@pytest.mark.statistical
@pytest.mark.parametrize("mapping", ["conservative", "top-k"])
def test_large_sample_matches_the_law(space, mapping):
    """Pearson chi-square on 10^6 draws per word (level 1e-3; 6 tests)."""
    mechanism = dd.CusText(space, 2.0, k=9) if mapping == "conservative" else top_k(space, 2.0, 9)
    for seed, word in enumerate((5, 77, 298)):
        members, probabilities = mechanism.output_distribution(word)
        n = 1_000_000
        counts = np.bincount(mechanism.sample(np.full(n, word), rng=seed), minlength=len(space))
        assert counts[members].sum() == n
        assert stats.chisquare(counts[members], probabilities * n).pvalue > 1e-3


@pytest.mark.statistical
@pytest.mark.parametrize(
    "make",
    [
        lambda s: dd.CusText(s, 1.0),
        lambda s: dd.CusText(s, 3.0, k=5),
        lambda s: top_k(s, 2.0, 12),
        lambda s: dd.CusTextPlus(s, 1.0, k=9, stop_words=s.words([0, 40, 41])),
    ],
)
def test_conformance(space, make):
    mechanism = make(space)
    assert check_mechanism(mechanism, word_ids=[0, 40, 190], rng=1).passed


# -- the guarantee -----------------------------------------------------------------------------


def test_loss_is_at_most_epsilon_inside_a_group_and_infinite_across(space):
    epsilon = 2.0
    mechanism = dd.CusText(space, epsilon, k=8)
    for g in range(0, len(mechanism._sizes), 5):
        members = mechanism._members[g, : mechanism._sizes[g]]
        for a in members[:3]:
            for b in members:
                result = dd.exact_privacy_loss(mechanism, int(a), int(b))
                claimed = mechanism.privacy_loss_bound(int(a), int(b))
                assert claimed == (0.0 if a == b else epsilon)
                assert result.loss <= claimed + 1e-12 and not result.violation
    other = mechanism._members[1, 0]
    first = mechanism._members[0, 0]
    assert mechanism.privacy_loss_bound(first, other) == np.inf
    assert dd.exact_privacy_loss(mechanism, int(first), int(other)).loss == np.inf


def test_loss_bound_broadcasts(space):
    mechanism = dd.CusText(space, 1.0, k=8)
    words = mechanism._members[0, :4]
    bounds = mechanism.privacy_loss_bound(words[:, None], words[None, :])
    assert bounds.shape == (4, 4)
    np.testing.assert_array_equal(bounds, np.where(np.eye(4, dtype=bool), 0.0, 1.0))


def test_top_k_claims_epsilon_only_for_equal_sets(space):
    mechanism = top_k(space, 1.5, 6)
    table = space.neighbors(6)
    same = different = 0
    for word in range(len(space)):
        for other in table.rows([word])[0][0][1:]:
            equal = set(mechanism.output_set(word)) == set(mechanism.output_set(int(other)))
            claimed = mechanism.privacy_loss_bound(word, int(other))
            loss = dd.exact_privacy_loss(mechanism, word, int(other)).loss
            if equal:
                same += 1
                assert claimed == 1.5 and loss <= 1.5 + 1e-12
            else:
                different += 1
                assert claimed == np.inf and loss == np.inf
    assert different > same  # on most nearest pairs nothing is protected


def test_sampled_audit_finds_no_violation_inside_groups(space):
    mechanism = dd.CusText(space, 1.0, k=8)
    pairs = np.array(
        [mechanism._members[g, :2] for g in range(0, 30, 3)]
        + [[mechanism._members[0, 0], mechanism._members[1, 0]]]
    )
    report = dd.audit(mechanism, pairs=pairs, n_samples=20_000, rng=0)
    assert report.passed
    assert not report.table["violation"].any()


# -- CusText+ ----------------------------------------------------------------------------------


def test_stop_words_are_kept_and_unprotected(space):
    stop = space.words([3, 4, 5])
    mechanism = dd.CusTextPlus(space, 2.0, k=9, stop_words=[*stop, "not-a-word-here"])
    assert mechanism.n_stop_words == 3
    words = np.tile(np.arange(10), 500)
    out = mechanism.sample(words, rng=0)
    kept = np.isin(words, [3, 4, 5])
    np.testing.assert_array_equal(out[kept], words[kept])
    assert (out[~kept] != words[~kept]).any()
    ids, probabilities = mechanism.output_distribution(4)
    assert ids.tolist() == [4] and probabilities.tolist() == [1.0]
    assert mechanism.privacy_loss_bound(4, 6) == np.inf
    assert mechanism.privacy_loss_bound(4, 4) == 0.0
    plain = dd.CusText(space, 2.0, k=9)
    for word in (0, 7):  # other words keep CusText's law and bound
        np.testing.assert_array_equal(
            mechanism.output_distribution(word)[1], plain.output_distribution(word)[1]
        )
    group = plain._members[plain._group_of[0], : plain._sizes[plain._group_of[0]]]
    others = [int(w) for w in group if w not in (3, 4, 5, 0)]
    assert mechanism.privacy_loss_bound(0, others[0]) == 2.0


def test_default_stop_words_are_sklearns():
    words = default_stop_words()
    assert {"the", "and", "of"} <= words and len(words) == 318


def test_stop_words_on_glove_words():
    space = dd.EmbeddingSpace(["the", "king", "queen", "of"], [[0.0], [1.0], [1.5], [4.0]])
    mechanism = dd.CusTextPlus(space, 1.0, k=2)
    assert mechanism.n_stop_words == 2
    assert mechanism.is_stop_word([0, 1, 3]).tolist() == [True, False, True]


# -- kernels -----------------------------------------------------------------------------------


def test_table_kernel_matches_the_twin():
    generator = np.random.default_rng(4)
    n_rows, width, n_tokens = 40, 6, 5_000
    sizes = generator.integers(1, width + 1, n_rows)
    cumulative = np.cumsum(generator.random((n_rows, width)), axis=1)
    candidate_rows = generator.permutation(n_rows)
    candidates = generator.integers(0, 1_000, (n_rows, width))
    table_rows = generator.integers(0, n_rows, n_tokens)
    uniforms = generator.random(n_tokens)
    uniforms[:3] = [0.0, 1.0 - 2**-53, 0.5]
    out = np.empty(n_tokens, dtype=np.int64)
    _sampling_kernels.sample_from_tables(
        table_rows, uniforms, cumulative, sizes, candidate_rows, candidates, out
    )
    expected = ref.sample_from_tables(
        table_rows, uniforms, cumulative, sizes, candidate_rows, candidates
    )
    np.testing.assert_array_equal(out, expected)


def test_groups_kernel_breaks_ties_by_id():
    # duplicated vectors: equal distances everywhere
    vectors = np.repeat(np.arange(4, dtype=np.float32), 3)[:, None]
    vectors = vectors[np.random.default_rng(0).permutation(12)]
    group_of, groups = ref.conservative_groups(vectors, 4)
    mechanism = dd.CusText(dd.EmbeddingSpace([f"w{i}" for i in range(12)], vectors), 1.0, k=4)
    np.testing.assert_array_equal(mechanism._group_of, group_of)
    for g, members in enumerate(groups):
        np.testing.assert_array_equal(mechanism._members[g, : len(members)], members)


def test_results_do_not_depend_on_the_thread_count(space):
    words = np.random.default_rng(5).integers(0, len(space), 20_000)
    mechanisms = [dd.CusText(space, 1.0, k=9), top_k(space, 1.0, 9)]
    assert_same_at_thread_counts(mechanisms, words, rng=8)


# -- validation and registry -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"epsilon": 0.0}, ValueError, "`epsilon` must be"),
        ({"epsilon": -1.0}, ValueError, "`epsilon` must be"),
        ({"k": 0}, ValueError, "`k` must be an int in \\[1, 300\\]"),
        ({"k": 301}, ValueError, "`k` must be an int in \\[1, 300\\]"),
        ({"k": 2.5}, TypeError, "`k` must be an int"),
        ({"mapping": "aggressive"}, ValueError, "`mapping` must be one of"),
    ],
)
def test_bad_parameters_are_refused(space, options, error, match):
    arguments = {"epsilon": 1.0, **options}
    epsilon = arguments.pop("epsilon")
    with pytest.raises(error, match=match):
        dd.CusText(space, epsilon, **arguments)


def test_bad_stop_words_are_refused(space):
    with pytest.raises(TypeError, match="`stop_words`"):
        dd.CusTextPlus(space, 1.0, stop_words="the")
    with pytest.raises(TypeError, match="`stop_words`"):
        dd.CusTextPlus(space, 1.0, stop_words=[1, 2])


def test_is_immutable_and_named(space):
    mechanism = dd.CusText(space, 1.0, k=4)
    with pytest.raises(AttributeError):
        mechanism.k = 3
    assert "k=4" in repr(mechanism) and "mapping='conservative'" in repr(mechanism)
    assert mechanism.privacy_bound().notion == "pure"
    assert "nothing is claimed across groups" in mechanism.privacy_bound().assumptions


def test_built_by_name(space):
    mechanism = build_mechanism("custext", space, 1.0, k=5)
    assert isinstance(mechanism, dd.CusText) and mechanism.k == 5
    plus = build_mechanism("custext-plus", space, 1.0, k=5, mapping="conservative")
    assert isinstance(plus, dd.CusTextPlus)


def test_audit_of_unprotected_pairs_is_not_a_pass():
    """A pair whose claim is infinite claims nothing: it is never counted as tested, and an
    audit of only such pairs is INCONCLUSIVE, with the pairs named in the verdict."""
    space = dd.synthetic_space(n_words=200, dim=4, n_clusters=3, rng=0)
    with pytest.warns(dd.PrivacyWarning):
        mechanism = dd.CusText(space, 3.0, mapping="top-k")
    report = dd.audit(mechanism, n_pairs=5, n_samples=2_000, rng=0)
    assert np.isinf(report.table["claimed"]).all()
    assert report.outcome == "INCONCLUSIVE"
    assert "5 pair(s) with no claim at all" in report.verdict()
