"""Auditing anyone's mechanism: protocol objects, plain functions, honest outcomes, law tests,
reports that load back, and the command line for CI pipelines."""

from __future__ import annotations

import json
import math
import sys
import textwrap

import matplotlib
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

import densitydp as dd
from densitydp.audit import MechanismError, broken, holm, max_demonstrable_loss, samples_for_power
from densitydp.audit.report import samples_to_test
from densitydp.cli import main

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=60, dim=2, n_clusters=3, rng=0)


class PlainTEM:
    """A third party's mechanism: no densitydp base class, only the members the auditor needs."""

    def __init__(self, space, epsilon):
        self.space = space
        self.epsilon = epsilon
        self._inner = dd.TruncatedExponential(space, epsilon)

    def sample(self, word_ids, rng):
        return self._inner.sample(word_ids, rng=rng)

    def privacy_loss_bound(self, word_id, other_id):
        return self.epsilon * self.space.distance(word_id, other_id)


class PlainExactTEM(PlainTEM):
    def output_distribution(self, word_id):
        return self._inner.output_distribution(word_id)


# -- item 1: the protocol ---------------------------------------------------------------------


def test_an_object_that_subclasses_nothing_is_audited_like_ours(space):
    ours = dd.audit(dd.TruncatedExponential(space, 10.0), n_pairs=8, n_samples=20_000, rng=1)
    theirs = dd.audit(PlainTEM(space, 10.0), n_pairs=8, n_samples=20_000, rng=1)
    columns = ["word", "other", "claimed", "testable"]  # same pairs and claims (the draws
    assert theirs.table[columns].equals(ours.table[columns])  # come in smaller calls)
    assert (theirs.table["eps_lower"] <= theirs.table["claimed"]).all()
    assert theirs.outcome == "PASS" and "exact_loss" not in theirs.table  # states no law
    exact = dd.audit(PlainExactTEM(space, 10.0), n_pairs=8, n_samples=20_000, rng=1)
    assert np.allclose(exact.table["exact_loss"], ours.table["exact_loss"])
    assert exact.goodness_of_fit is not None and exact.outcome == "PASS"
    assert isinstance(PlainExactTEM(space, 1.0), dd.ExactMechanismProtocol)
    assert isinstance(PlainTEM(space, 1.0), dd.MechanismProtocol)
    loss = dd.exact_privacy_loss(PlainExactTEM(space, 10.0), 0, 1)
    assert loss.loss == pytest.approx(
        dd.exact_privacy_loss(dd.TruncatedExponential(space, 10.0), 0, 1).loss
    )


def test_plain_functions_on_ids_and_on_words(space):
    tem = dd.TruncatedExponential(space, 10.0)
    claim = dd.PrivacyBound("metric", 10.0)

    def on_ids(word_ids, rng):
        return tem.sample(word_ids, rng=rng)

    def on_words(words):  # a text library: its own randomness, no rng
        return space.words(tem.sample(space.ids(words), rng=np.random.default_rng(7)))

    by_ids = dd.audit(on_ids, space=space, claim=claim, n_pairs=6, n_samples=20_000, rng=0)
    assert by_ids.outcome == "PASS" and by_ids.notes == []
    by_words = dd.audit(on_words, space=space, claim=claim, n_pairs=6, n_samples=20_000, rng=0)
    assert by_words.outcome == "PASS" and "own randomness" in by_words.notes[0]
    assert "function on words" in by_words.mechanism
    table = dd.plausible_deniability(on_words, [0, 1], n_samples=200, space=space)
    assert set(table.columns) >= {"N_w", "S_w"}
    assert 0 < dd.semantic_similarity(on_ids, [0, 1], n_samples=50, rng=0, space=space) <= 1
    report = dd.testing.check_mechanism(on_ids, space=space, claim=claim, n_samples=20_000)
    assert report.passed
    words_report = dd.testing.check_mechanism(on_words, space=space, raise_on_failure=False)
    assert any("its own randomness" in check for check in words_report.checks)


def test_words_outside_the_space_are_outputs_with_their_own_labels(space):
    def sometimes_foreign(words):
        return [w if i % 2 else "<redacted>" for i, w in enumerate(words)]

    from densitydp.audit.blackbox import output_words

    mechanism = dd.as_mechanism(sometimes_foreign, space=space)
    draws = mechanism.sample([0, 1, 0, 1], rng=0)  # positions 0 and 2 come back redacted
    assert draws[0] == draws[2] == len(space) and draws[1] == 1 and draws[3] == 1
    assert output_words(mechanism, draws[0]) == "<redacted>"
    table = dd.plausible_deniability(sometimes_foreign, [0], n_samples=10, space=space)
    assert table["S_w"].iloc[0] == 2 and table["N_w"].iloc[0] == 0.5  # itself and the label
    report = dd.audit(
        sometimes_foreign, space=space, claim=dd.PrivacyBound("pure", 1.0), pairs=[(0, 1)],
        n_samples=400, rng=0,
    )  # fmt: skip
    # M(0) = c00w0009 never happens under 1 (each is itself half the time): the event names
    # a word, and the redacted label is only ever shared
    assert report.table["event"].iloc[0] in ("M(c00w0009) = c00w0009", "M(c02w0042) = c02w0042")
    with pytest.raises(ValueError, match="outside the space"):
        dd.semantic_similarity(sometimes_foreign, [0], n_samples=4, space=space)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: type("NoSample", (), {"space": s})(), "must be a Mechanism, an object with"),
        (lambda s: type("NoSpace", (), {"sample": lambda self, w, r: w})(), "provide `space`"),
        (lambda s: type("Bad", (), {"space": 3, "sample": lambda self, w, r: w})(), "EmbeddingSp"),
        (
            lambda s: type("NoClaim", (), {"space": s, "sample": lambda self, w, r: w})(),
            "does not provide `privacy_loss_bound(word_id, other_id)`",
        ),
        (
            lambda s: type(
                "Exact",
                (),
                {
                    "space": s,
                    "sample": lambda self, w, r: w,
                    "exact": True,
                    "privacy_loss_bound": lambda *a: 1.0,
                },
            )(),
            "`output_distribution(word_id)`",
        ),
    ],
)
def test_missing_members_are_named(space, build, message):
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dd.audit(build(space), n_pairs=2, n_samples=100, rng=0)


def test_signatures_spaces_and_words_as_a_user_writes_them(space):
    tem = dd.TruncatedExponential(space, 10.0)

    def optional_rng(word_ids, rng=None):  # one required parameter, but named rng: ids
        return tem.sample(word_ids, rng=rng)

    assert dd.as_mechanism(optional_rng, space=space).interface == "ids"
    twin = dd.EmbeddingSpace(list(space.vocabulary), space.vectors)  # equal, not the same
    assert dd.as_mechanism(PlainTEM(space, 1.0), space=twin, claim=lambda a, b: 1.0)
    by_word = dd.compare_laws(
        tem, dd.TruncatedExponential(twin, 10.0), ["c00w0009"], n_samples=2_000, rng=0
    )
    assert by_word.table["word"].tolist() == ["c00w0009"]
    words = list(space.vocabulary)[:2]
    assert dd.exact_privacy_loss(tem, *words).loss == dd.exact_privacy_loss(tem, 0, 1).loss

    class NotExact(PlainExactTEM):
        exact = False

    with pytest.raises(TypeError, match="declares exact = False"):
        dd.exact_privacy_loss(NotExact(space, 1.0), 0, 1)


def test_functions_need_space_and_claim_and_a_readable_signature(space):
    def two(word_ids, rng):
        return word_ids

    with pytest.raises(TypeError, match="`space` is required"):
        dd.audit(two, claim=dd.PrivacyBound("metric", 1.0))
    with pytest.raises(TypeError, match="states no claim"):
        dd.audit(two, space=space)
    with pytest.raises(TypeError, match="cannot tell how to call this function"):
        dd.audit(lambda *args: args[0], space=space, claim=dd.PrivacyBound("metric", 1.0))
    with pytest.raises(ValueError, match="`interface` must be one of ids, words"):
        dd.as_mechanism(two, space=space, interface="tokens")
    with pytest.raises(TypeError, match="`claim` must be a PrivacyBound or a function"):
        dd.as_mechanism(two, space=space, claim=5.0)
    other = dd.synthetic_space(n_words=60, dim=2, n_clusters=3, rng=1)
    with pytest.raises(ValueError, match="is not the mechanism's own space"):
        dd.as_mechanism(dd.TruncatedExponential(space, 1.0), space=other, claim=lambda a, b: 1.0)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (lambda ids: ids[:-1], "returned shape"),
        (lambda ids: ids.astype(np.float64), "must return integer word ids"),
        (lambda ids: ids + 1000, "outside \\[0, 60\\)"),
        (lambda ids: -ids - 1, "outside \\[0, 60\\)"),
    ],
)
def test_invalid_outputs_of_a_foreign_sampler_are_errors_not_audits(space, returned, message):
    def faulty(word_ids, rng):
        return returned(word_ids)

    with pytest.raises(MechanismError, match=message):
        dd.audit(faulty, space=space, claim=dd.PrivacyBound("metric", 1.0), n_pairs=2,
                 n_samples=100, rng=0)  # fmt: skip


def test_foreign_failures_and_bad_laws_are_mechanism_errors(space):
    def raises(word_ids, rng):
        raise KeyError("boom")

    with pytest.raises(MechanismError, match="raised: KeyError"):
        dd.audit(raises, space=space, claim=dd.PrivacyBound("metric", 1.0), n_samples=100)
    with pytest.raises(MechanismError, match="returned 1 words for"):
        dd.audit(lambda words: words[:1], space=space, claim=dd.PrivacyBound("metric", 1.0),
                 n_samples=100, rng=0)  # fmt: skip
    with pytest.raises(MechanismError, match="must return strings"):
        dd.audit(lambda words: [1] * len(words), space=space,
                 claim=dd.PrivacyBound("metric", 1.0), n_samples=100, rng=0)  # fmt: skip

    class HalfLaw(PlainExactTEM):
        def output_distribution(self, word_id):
            ids, probabilities = super().output_distribution(word_id)
            return ids, probabilities / 2

    with pytest.raises(MechanismError, match="sums to 0.5"):
        dd.exact_privacy_loss(HalfLaw(space, 1.0), 0, 1)

    class NegativeClaim(PlainTEM):
        def privacy_loss_bound(self, word_id, other_id):
            return -1.0

    with pytest.raises(MechanismError, match="a claim must be in"):
        dd.audit(NegativeClaim(space, 1.0), n_pairs=2, n_samples=100, rng=0)
    for returned in (np.array([1.0, 2.0, 3.0]), np.ones((1, 1)), "1", None, "x"):

        class OddClaim(PlainTEM):
            def privacy_loss_bound(self, word_id, other_id, returned=returned):
                return returned

        with pytest.raises(MechanismError, match="a claim must be a real number per pair"):
            dd.audit(OddClaim(space, 1.0), n_pairs=2, n_samples=100, rng=0)

    class RaisingClaim(PlainTEM):
        def privacy_loss_bound(self, word_id, other_id):
            raise KeyError(word_id)

    with pytest.raises(MechanismError, match="privacy_loss_bound raised: KeyError"):
        dd.audit(RaisingClaim(space, 1.0), n_pairs=2, n_samples=100, rng=0)
    with pytest.raises(ValueError, match="`n_samples` must be an int in \\[2, "):
        dd.audit(PlainTEM(space, 1.0), n_samples=10**15 * 10**4, rng=0)


def test_the_documented_example_runs_as_documented():
    """docs/auditing.md, "Auditing your own mechanism": a mechanism that subclasses nothing
    passes against our exponential mechanism; a leaky word-level library fails."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "auditing.md").read_text("utf-8")
    block = text.split("<!-- example: own-mechanism -->")[1].split("<!-- end example -->")[0]
    code = block.split("```python")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(code, "docs/auditing.md", "exec"), namespace)
    assert namespace["report"].outcome == "PASS" and namespace["report"].law.passed
    assert namespace["library_report"].outcome == "FAIL"
    assert "own randomness" in namespace["library_report"].notes[0]


class NearlyExponential(PlainExactTEM):
    """The exponential mechanism at epsilon 10, except that word 0 outputs word 5 with
    probability 1e-3 and every other word with 1e-13 (so its loss against any word that
    outputs 5 with a normal probability is far above the claim), stated exactly."""

    def __init__(self, space):
        super().__init__(space, 10.0)
        self._inner = dd.ExponentialMechanism(space, 10.0)

    def output_distribution(self, word_id):
        ids, probabilities = self._inner.output_distribution(word_id)
        if word_id == 0:
            probabilities = np.full(len(ids), 1e-13)
            probabilities[0] = 0.0
            probabilities[5] = 1e-3
            probabilities[0] = 1.0 - probabilities.sum()
        return ids, probabilities

    def sample(self, word_ids, rng):
        out = self._inner.sample(word_ids, rng=rng)
        zero = np.flatnonzero(np.asarray(word_ids) == 0)
        ids, probabilities = self.output_distribution(0)
        out[zero] = rng.choice(ids, size=len(zero), p=probabilities)
        return out


def test_tiny_probabilities_are_bounds_not_skipped(space):
    """Review of item 5: an output likely under one word and below 1e-12 (but not 0) under the
    other was skipped, and the loss called exact; a leaky mechanism passed."""
    leaky = NearlyExponential(space)
    other = int(np.argsort(space.distance(np.zeros(60, dtype=int), np.arange(60)))[1])
    result = dd.exact_privacy_loss(leaky, other, 0)
    # P(other | other) is large, P(other | 0) = 1e-13 < 1e-12: at least ln(P / 1.1e-12)
    assert result.lower_bound and result.violation and result.loss > 20
    assert dd.audit(leaky, pairs=[(0, other)], n_samples=2_000, rng=0).outcome == "FAIL"


@pytest.mark.parametrize("epsilon", [5.0, 20.0, 40.0])
def test_log_space_laws_are_resolved_on_every_output(space, epsilon):
    """The exponential family states log_prob in log space: its exact loss is the maximum over
    every output, however small (the broken ExponentialWithoutHalf's 0.000 was a skip)."""
    bug = broken.ExponentialWithoutHalf(space, epsilon)
    for word, other in [(0, 17), (3, 44), (5, 59), (12, 30)]:
        result = dd.exact_privacy_loss(bug, word, other)
        log_a = bug.log_prob(word, np.arange(60))
        log_b = bug.log_prob(other, np.arange(60))
        assert not result.lower_bound and result.unresolved == 0
        assert result.loss == pytest.approx(np.abs(log_a - log_b).max(), rel=1e-12)


def test_a_foreign_law_without_precision_gives_lower_bounds(space):
    ours = dd.ExponentialMechanism(space, 40.0)
    foreign = PlainExactTEM(space, 40.0)  # linear probabilities, precision not declared
    foreign._inner = ours
    far = int(np.argmax(space.distance(np.zeros(60, dtype=int), np.arange(60))))
    stated = dd.exact_privacy_loss(foreign, 0, far)
    exact = dd.exact_privacy_loss(ours, 0, far)
    assert stated.lower_bound and stated.unresolved > 0 and stated.loss <= exact.loss
    report = dd.audit(foreign, pairs=[(0, far)], n_samples=200, rng=0)
    assert report.table["exact_kind"].iloc[0] == "lower bound"
    assert report.outcome == "INCONCLUSIVE"


def test_gumbel_losses_with_unresolved_outputs_are_lower_bounds():
    space = dd.synthetic_space(n_words=80, dim=3, n_clusters=2, rng=1)
    gumbel = dd.TruncatedGumbel(
        space, epsilon=10 * dd.TruncatedGumbel(space, scale=1.0).min_epsilon
    )
    result = dd.exact_privacy_loss(gumbel, 3, 12)
    assert result.unresolved > 0 and result.lower_bound


# -- item 2: honest outcomes -----------------------------------------------------------------


def test_untestable_pairs_are_inconclusive_and_say_what_would_test_them(space):
    laplace = dd.MultivariateLaplace(space, 2_000.0)  # claims of 20+ nats, 200 draws per word
    report = dd.audit(laplace, n_pairs=5, n_samples=200, rng=0)
    assert report.table["tested"].sum() == 0
    assert report.outcome == "INCONCLUSIVE" and not report.passed and report.exit_code == 3
    needed = report.samples_needed(3)
    assert len(needed) == 3 and needed["claimed"].is_monotonic_increasing
    verdict = report.verdict()
    assert verdict.startswith("INCONCLUSIVE") and "would make the 5 smallest untested" in verdict
    # the stated sample size is the smallest that makes the claim testable (checked where
    # float64 resolves n and n - 1: the closed form n > ln(alpha) / ln(s) needs no check there)
    moderate = dd.audit(dd.MultivariateLaplace(space, 300.0), n_pairs=5, n_samples=200, rng=0)
    rows = moderate.samples_needed(5)
    rows = rows[rows["n_samples"] < 1e12]
    assert len(rows) >= 1
    for row in rows.itertuples():
        n_half = int(row.n_samples) // 2
        alpha = moderate.loss_alpha
        assert max_demonstrable_loss(n_half, alpha) > row.claimed
        assert max_demonstrable_loss(n_half - 1, alpha) <= row.claimed
    assert math.isinf(samples_to_test(5.0, 1.0, 1e-3))  # delta 1: no n shows anything
    assert dd.audit(laplace, n_pairs=5, n_samples=200, rng=0, min_tested=0.0).outcome == (
        "INCONCLUSIVE"  # still nothing tested
    )


def test_exact_mechanisms_are_tested_by_their_exact_loss(space):
    report = dd.audit(dd.ExponentialMechanism(space, 2_000.0), n_pairs=5, n_samples=200, rng=0)
    assert not report.table["testable"].any() and report.table["tested"].all()
    assert report.outcome == "PASS" and report.exit_code == 0


# -- item 3: law comparison ------------------------------------------------------------------


def test_holm_matches_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running maximum
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_same_law_passes_and_tv_bounds_contain_the_true_distance(space):
    exponential = dd.ExponentialMechanism(space, 3.0)
    same = dd.compare_laws(exponential, exponential, [0, 5, 9], n_samples=40_000, rng=0)
    assert same.passed and (same.table["test"] == "goodness of fit").all()
    assert (same.table["tv_lower"] == 0).all()
    nearby = dd.ExponentialMechanism(space, 3.3)
    result = dd.compare_laws(nearby, exponential, [0, 5, 9], n_samples=40_000, rng=0)
    for row in result.table.itertuples():
        ids_a, p_a = nearby.output_distribution(row.word_id)
        ids_b, p_b = exponential.output_distribution(row.word_id)
        dense_a, dense_b = np.zeros(60), np.zeros(60)
        dense_a[ids_a], dense_b[ids_b] = p_a, p_b
        true_tv = 0.5 * np.abs(dense_a - dense_b).sum()
        assert row.tv_lower <= true_tv <= row.tv_upper


def test_law_test_finds_planted_bugs(space):
    exponential = dd.ExponentialMechanism(space, 1.0)
    bug = broken.ExponentialWithoutHalf(space, 1.0)
    found = dd.compare_laws(bug, exponential, [0, 1], n_samples=20_000, rng=0)
    assert not found.passed and found.verdict().startswith("FAIL")
    laplace = dd.MultivariateLaplace(space, 3.0)
    two_sample = dd.compare_laws(dd.MultivariateLaplace(space, 4.0), laplace, [0, 1],
                                 n_samples=20_000, rng=0)  # fmt: skip
    assert (two_sample.table["test"] == "two-sample").all() and not two_sample.passed
    assert dd.compare_laws(laplace, laplace, [0, 1], n_samples=20_000, rng=0).passed
    report = dd.audit(bug, n_pairs=4, n_samples=20_000, rng=0, reference=exponential)
    assert report.law is not None and not report.law.passed and report.outcome == "FAIL"


def test_law_test_finds_noise_on_squared_distances():
    """The rare-output bug of the public truncated Gumbel: noise added to squared distances."""
    grid = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2) * 2.0
    lattice = dd.EmbeddingSpace([f"g{i}" for i in range(64)], grid)
    epsilon = 1.5 * dd.TruncatedGumbel(lattice, scale=1.0).min_epsilon
    result = dd.compare_laws(
        broken.SquaredDistanceGumbel(lattice, epsilon=epsilon),
        dd.TruncatedGumbel(lattice, epsilon=epsilon), [0, 9, 27], n_samples=20_000, rng=0,
    )  # fmt: skip
    assert not result.passed and (result.table["tv_lower"] > 0).any()


@pytest.mark.statistical
def test_law_test_keeps_its_level(space):
    """60 seeded self-comparisons at alpha 0.05: rejections must stay within the binomial
    upper 0.999 quantile of 60 x 0.05 (8)."""
    mechanisms = [dd.TruncatedExponential(space, 5.0), dd.MultivariateLaplace(space, 2.0)]
    rejected = sum(
        dd.compare_laws(m, m, [0, 1, 2], n_samples=4_000, rng=seed).outcome == "FAIL"
        for m in mechanisms
        for seed in range(30)
    )
    assert rejected <= stats.binom.ppf(0.999, 60, 0.05)


def test_samples_for_power_has_the_stated_power():
    n = samples_for_power(0.05, 10, 0.01)
    noncentrality = 4 * n * 0.05**2
    critical = stats.chi2.isf(0.01, 9)
    assert stats.ncx2.sf(critical, 9, noncentrality) >= 0.9
    assert stats.ncx2.sf(critical, 9, 4 * (n - 1) * 0.05**2) < 0.9  # the smallest such n
    assert math.isinf(samples_for_power(0.05, 1, 0.01))


def test_a_law_test_on_one_bin_is_inconclusive_not_pass(space):
    """Review of items 2/3: with every expected count below 5 the test pools everything into
    one bin and says nothing; it must not read PASS."""
    bug = broken.ExponentialWithoutHalf(space, 0.2)
    result = dd.compare_laws(bug, dd.ExponentialMechanism(space, 0.2), [10, 11, 12],
                             n_samples=20, rng=0)  # fmt: skip
    assert (result.table["bins"] == 1).all() and not result.table["tested"].any()
    assert result.outcome == "INCONCLUSIVE" and not result.passed
    assert result.verdict().startswith("INCONCLUSIVE")
    report = dd.audit(bug, pairs=[(10, 11)], n_samples=20, rng=0,
                      reference=dd.ExponentialMechanism(space, 0.2))  # fmt: skip
    assert "law vs reference INCONCLUSIVE" in report.verdict()


def test_law_comparison_validation(space):
    laplace = dd.MultivariateLaplace(space, 3.0)
    with pytest.raises(ValueError, match="`tv` must be in"):
        dd.compare_laws(laplace, laplace, [0], tv=0.0)
    other = dd.MultivariateLaplace(dd.synthetic_space(n_words=50, dim=2, rng=0), 3.0)
    with pytest.raises(ValueError, match="must share a vocabulary"):
        dd.compare_laws(other, laplace, [0])
    with pytest.raises(ValueError, match="`n_samples` must be"):
        dd.compare_laws(laplace, laplace, [0], n_samples=10)


# -- item 6: reports and the command line ------------------------------------------------------


def test_reports_load_back_from_json(space, tmp_path):
    report = dd.audit(
        broken.ExponentialWithoutHalf(space, 1.0), n_pairs=4, n_samples=4_000, rng=0,
        reference=dd.ExponentialMechanism(space, 1.0),
    )  # fmt: skip
    path = tmp_path / "report.json"
    report.to_json(path)
    loaded = dd.AuditReport.from_json(path)
    assert loaded.verdict() == report.verdict() and loaded.outcome == "FAIL"
    assert loaded.table["claimed"].tolist() == report.table["claimed"].tolist()
    assert loaded.table["eps_hat"].tolist() == report.table["eps_hat"].tolist()  # inf kept
    assert loaded.law.table["p_adjusted"].tolist() == report.law.table["p_adjusted"].tolist()
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an audit report"):
        dd.AuditReport.from_json(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="is not JSON"):
        dd.AuditReport.from_json(tmp_path / "broken.json")
    assert json.loads(path.read_text())["outcome"] == "FAIL"


def test_every_plot_function_draws_on_given_axes(space):
    import matplotlib.pyplot as plt

    report = dd.audit(dd.TruncatedExponential(space, 10.0), n_pairs=4, n_samples=2_000, rng=0)
    figure, axes = plt.subplots(1, 3)
    assert report.plot(ax=axes[0]) is figure and axes[0].has_data()
    table = dd.plausible_deniability(dd.TruncatedExponential(space, 10.0), [0, 1], rng=0)
    assert dd.plot_plausible_deniability({"a": table}, ax=axes[1:]) is figure
    with pytest.raises(TypeError, match="`ax` must be a matplotlib Axes"):
        report.plot(ax="left")
    with pytest.raises(TypeError, match="`ax` must be 2 matplotlib Axes"):
        dd.plot_plausible_deniability({"a": table}, ax=axes[0])
    plt.close("all")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's package in the working folder, as a CI job would have it."""
    (tmp_path / "my_mechanisms.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            import densitydp as dd

            class Noisy:
                def __init__(self, space, epsilon):
                    self.space, self.epsilon = space, epsilon
                    self.inner = dd.ExponentialMechanism(space, epsilon)
                def sample(self, word_ids, rng):
                    return self.inner.sample(word_ids, rng=rng)
                def privacy_loss_bound(self, w, o):
                    return self.epsilon * self.space.distance(w, o)

            def leaky(space, epsilon):          # claims epsilon, spends 2 epsilon
                inner = dd.ExponentialMechanism(space, 2 * epsilon)
                return lambda word_ids, rng: inner.sample(word_ids, rng=rng)

            def identity_words(words):
                return list(words)

            def crashing(space, epsilon):
                def sample(word_ids, rng):
                    raise RuntimeError("library bug")
                return sample

            class BadClaim(Noisy):
                def privacy_loss_bound(self, w, o):
                    raise ValueError("claim bug")

            def bad_claim(space, epsilon):
                return BadClaim(space, epsilon)

            def failing_factory(space, epsilon):
                raise TypeError("factory bug")
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_mechanisms", raising=False)
    space_file = tmp_path / "space.txt"
    dd.synthetic_space(n_words=60, dim=2, n_clusters=3, rng=0).to_file(space_file)
    return space_file


def test_cli_audits_a_users_mechanism_with_distinct_exit_codes(user_module, tmp_path):
    runner = CliRunner()
    common = ["--embeddings", str(user_module), "--n-pairs", "4", "--seed", "0", "--no-progress"]
    passed = runner.invoke(main, ["audit", "-m", "my_mechanisms:Noisy", "-e", "1", "--samples",
                                  "20000", "--json", "r.json", *common])  # fmt: skip
    assert passed.exit_code == 0, passed.output
    assert dd.AuditReport.from_json(tmp_path / "r.json").outcome == "PASS"
    failed = runner.invoke(main, ["audit", "-m", "my_mechanisms:leaky", "-e", "1", "--samples",
                                  "20000", "--reference", "exponential", *common])  # fmt: skip
    assert failed.exit_code == 1 and failed.output.strip().splitlines()[-1].startswith("FAIL")
    inconclusive = runner.invoke(main, ["audit", "-m", "my_mechanisms:identity_words",
                                        "--interface", "words", "-e", "100", "--samples", "100",
                                        *common])  # fmt: skip
    assert inconclusive.exit_code == 3, inconclusive.output
    assert "INCONCLUSIVE" in inconclusive.output and "own randomness" in inconclusive.output
    for arguments in (
        ["-m", "no_such_module:thing", "-e", "1"],
        ["-m", "my_mechanisms:missing", "-e", "1"],
        ["-m", "nonsense", "-e", "1"],
        ["-m", "laplace", "-e", "1", "--interface", "ids"],
        ["-m", "my_mechanisms:Noisy", "-e", "1", "--json", str(tmp_path / "no" / "r.json")],
    ):
        usage = runner.invoke(main, ["audit", *arguments, *common])
        assert usage.exit_code == 2, (arguments, usage.output)
        assert "Traceback" not in usage.output
    crashed = runner.invoke(main, ["audit", "-m", "my_mechanisms:crashing", "-e", "1", *common])
    assert crashed.exit_code == 4 and "library bug" in crashed.output
    for name in ("bad_claim", "failing_factory"):  # the user's code failed: 4, not 2
        failed_code = runner.invoke(main, ["audit", "-m", f"my_mechanisms:{name}", "-e", "1",
                                           "--samples", "200", *common])  # fmt: skip
        assert failed_code.exit_code == 4, (name, failed_code.output)
    words_without_interface = runner.invoke(
        main, ["audit", "-m", "my_mechanisms:identity_words", "-e", "1", *common]
    )
    assert words_without_interface.exit_code == 2
    assert "--interface" in words_without_interface.output
