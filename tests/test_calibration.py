"""Choosing epsilon: round trips (the epsilon found reproduces its target), the search (history
monotone, factory refusals, unreachable targets), the summary, bad inputs."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest

import densitydp as dd
from densitydp.calibration import (
    EXACT_TOLERANCE,
    SAMPLED_STANDARD_ERRORS,
    _exact_kept,
    default_words,
)

#: k of the round-trip checks of sampled statistics: k standard errors of the difference of two
#: independent binomial proportions (the calibration's estimate and a fresh one).
K_ROUND_TRIP = 4.0


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=400, dim=8, n_clusters=4, rng=0)


@pytest.fixture(scope="module")
def grid():
    """A 6 x 6 grid with spacing 1: small diameter / minimum distance, so the truncated Gumbel's
    N_w moves within reasonable epsilons (its smallest epsilon is 12.17)."""
    points = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(-1, 2).astype(float)
    return dd.EmbeddingSpace([f"g{i}" for i in range(36)], points)


@pytest.fixture(scope="module")
def text(space):
    """A synthetic text: 60 distinct words of the space, Zipf-like counts, one unknown word."""
    words = space.words(list(range(0, 400, 7))[:60])
    repeated = [w for rank, w in enumerate(words) for _ in range(max(1, 12 // (rank + 1)))]
    return " ".join(repeated) + ", and zzzunknown."


def exact_median_n_w(mechanism, word_ids):
    return float(np.median(_exact_kept(mechanism, np.asarray(word_ids))))


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [dd.ExponentialMechanism, dd.TruncatedExponential])
@pytest.mark.parametrize("level", [0.9, 0.5, 0.1])
def test_exact_round_trip(space, factory, level):
    found = dd.calibrate_epsilon(factory, space, {"N_w": level}, progress=False)
    assert found.method == "exact"
    assert found.tolerance == pytest.approx(min(EXACT_TOLERANCE, 0.01 * min(level, 1 - level)))
    assert found.n_samples is None
    # recomputed from scratch at the epsilon returned: a new mechanism, the exact law
    again = exact_median_n_w(factory(space, found.epsilon), default_words(space))
    assert again == pytest.approx(found.value, abs=1e-12)
    assert abs(again - level) <= found.tolerance
    assert found.mechanism.epsilon == found.epsilon
    assert found.bound == found.mechanism.privacy_bound()


def test_exact_round_trip_to_rtol(space):
    """With tolerance 0 the search runs until the bracket is narrower than rtol; the target
    lies between two epsilons that close, so the value is as close as the curve allows."""
    found = dd.calibrate_epsilon(
        dd.ExponentialMechanism, space, {"N_w": 0.5}, tolerance=0.0, rtol=1e-6, progress=False
    )
    assert abs(found.value - 0.5) < 1e-4


@pytest.mark.statistical
def test_sampled_round_trip_laplace(space):
    """The Laplace epsilon found with 1,000 draws per word, re-estimated with another seed and
    4,000 draws: the fresh estimate differs from the target by at most the calibration's
    residual plus k standard errors of the difference of the two estimates."""
    level, n_samples, n_check = 0.5, 1_000, 4_000
    found = dd.calibrate_epsilon(
        "laplace", space, {"N_w": level}, n_samples=n_samples, rng=11, progress=False
    )
    assert found.method == "sampled"
    assert found.n_samples == n_samples
    assert found.tolerance == pytest.approx(
        SAMPLED_STANDARD_ERRORS * math.sqrt(level * (1 - level) / n_samples)
    )
    residual = abs(found.value - level)
    assert residual <= found.tolerance
    table = dd.plausible_deniability(
        found.mechanism, default_words(space), n_samples=n_check, rng=12345
    )
    fresh = float(np.median(table["N_w"]))
    standard_error = math.sqrt(level * (1 - level) * (1 / n_samples + 1 / n_check))
    assert abs(fresh - level) <= residual + K_ROUND_TRIP * standard_error


def test_sampled_is_reproducible_and_seeded(space):
    first = dd.calibrate_epsilon(
        "laplace", space, {"N_w": 0.7}, n_samples=200, rng=3, progress=False
    )
    second = dd.calibrate_epsilon(
        "laplace", space, {"N_w": 0.7}, n_samples=200, rng=3, progress=False
    )
    assert first.epsilon == second.epsilon
    assert first.history["value"].tolist() == second.history["value"].tolist()
    assert first.seed == {"entropy": 3, "spawn_key": []}


def test_changed_round_trip_exact(space, text):
    found = dd.calibrate_epsilon(
        dd.TruncatedExponential, space, {"changed": 0.3}, texts=[text, text], progress=False
    )
    assert found.statistic == "changed"
    tokens = dd.TextCodec(space.vocabulary, unknown="keep").encode_batch([text, text])[1]
    distinct, counts = np.unique(tokens, return_counts=True)
    kept = _exact_kept(dd.TruncatedExponential(space, found.epsilon), distinct)
    changed = 1 - np.dot(counts, kept) / counts.sum()
    assert abs(changed - 0.3) <= found.tolerance
    # the summary's words are the text's distinct words (fewer than 200 here)
    assert np.array_equal(found.word_ids, distinct)


@pytest.mark.statistical
def test_changed_round_trip_sampled(space, text):
    level, n_samples = 0.3, 2_000
    found = dd.calibrate_epsilon(
        "laplace",
        space,
        {"changed": level},
        texts=text,
        n_samples=n_samples,
        rng=5,
        progress=False,
    )
    tokens = dd.TextCodec(space.vocabulary, unknown="keep").encode_batch([text])[1]
    repeats = math.ceil(n_samples / len(tokens))
    assert found.n_samples == len(tokens) * repeats >= n_samples
    residual = abs(found.value - level)
    assert residual <= found.tolerance
    n_check = 20 * len(tokens)
    inputs = np.repeat(tokens, 20)
    fresh = float(np.mean(found.mechanism.sample(inputs, rng=999) != inputs))
    standard_error = math.sqrt(level * (1 - level) * (1 / found.n_samples + 1 / n_check))
    assert abs(fresh - level) <= residual + K_ROUND_TRIP * standard_error


# -- the search ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "target"),
    [
        (dd.ExponentialMechanism, {"N_w": 0.3}),
        ("laplace", {"N_w": 0.3}),
        (dd.TruncatedExponential, {"changed": 0.2}),
    ],
)
def test_history_is_monotone(space, text, factory, target):
    """Exact statistics are monotone in epsilon; Laplace's sampled one too, exactly, with common
    random numbers (the noise is z / epsilon and Voronoi cells are convex)."""
    texts = text if "changed" in target else None
    found = dd.calibrate_epsilon(
        factory, space, target, texts=texts, n_samples=200, rng=0, progress=False
    )
    history = found.history.sort_values("epsilon")
    values = history["value"].to_numpy()
    steps = np.diff(values) if "N_w" in target else -np.diff(values)
    assert (steps >= -1e-12).all()
    assert found.n_evaluations == len(found.history) <= 60
    assert list(found.history.columns) == ["epsilon", "value", "refused", "seconds"]


def test_factory_refusal_below_domain(space):
    """A factory refusing epsilon < 5: the low edge is found and the target inside the domain
    reached; refusals are recorded in the history."""

    def factory(space, epsilon):
        if epsilon < 5:
            raise ValueError("`epsilon` must be >= 5")
        return dd.ExponentialMechanism(space, epsilon)

    words = default_words(space)
    level = exact_median_n_w(dd.ExponentialMechanism(space, 6.0), words)
    found = dd.calibrate_epsilon(factory, space, {"N_w": level}, progress=False)
    assert found.history["refused"].any()
    assert found.history.loc[found.history["refused"], "value"].isna().all()
    assert found.epsilon >= 5 and abs(found.value - level) <= found.tolerance


def test_truncated_gumbel_min_epsilon(grid):
    """TruncatedGumbel refuses epsilon <= min_epsilon (12.17 here); started below it, the search
    moves up into its domain and reaches the target."""
    words = np.arange(0, 36, 4)
    found = dd.calibrate_epsilon(
        dd.TruncatedGumbel, grid, {"N_w": 0.5}, words=words, bracket=(1.0, 10.0), progress=False
    )
    assert found.history["refused"].iloc[0]
    assert found.epsilon > found.mechanism.min_epsilon
    again = exact_median_n_w(dd.TruncatedGumbel(grid, found.epsilon), words)
    assert abs(again - 0.5) <= found.tolerance


def test_unreachable_below_the_refused_edge(grid):
    """N_w of the truncated Gumbel never falls below about 0.45 on the grid (its smallest
    epsilon already adds huge noise): 0.3 is reported unreachable, with the value at the edge."""
    with pytest.raises(
        ValueError,
        match=r"not reachable in the epsilons the mechanism factory accepts.*smallest accepted",
    ) as info:
        dd.calibrate_epsilon(
            dd.TruncatedGumbel,
            grid,
            {"N_w": 0.3},
            words=[0, 14],
            bracket=(1.0, 40.0),
            rtol=1e-2,
            progress=False,
        )
    assert "must be >" in str(info.value)  # the factory's own message


def test_unreachable_at_the_epsilon_limit(space):
    """The exponential mechanism's N_w tends to 1 / n as epsilon -> 0: 1e-5 is never reached."""
    with pytest.raises(ValueError, match=r"not reachable for epsilon >= 1e-09: at epsilon = 1e-09"):
        dd.calibrate_epsilon(dd.ExponentialMechanism, space, {"N_w": 1e-5}, progress=False)


def test_max_evaluations(space):
    with pytest.raises(RuntimeError, match="gave up after max_evaluations = 3"):
        dd.calibrate_epsilon(
            dd.ExponentialMechanism, space, {"N_w": 0.5}, max_evaluations=3, progress=False
        )


def test_refusal_above_accepted_is_an_error(space):
    def factory(space, epsilon):
        if epsilon > 15:
            raise ValueError("too large")
        return dd.ExponentialMechanism(space, epsilon)

    # median N_w is 0.29 at epsilon 10, 0.92 at 20
    with pytest.raises(ValueError, match="refused epsilon = 40 after accepting"):
        dd.calibrate_epsilon(factory, space, {"N_w": 0.9}, bracket=(1.0, 10.0), progress=False)


def test_factories_by_name_and_partial(space):
    by_name = dd.calibrate_epsilon("tem", space, {"N_w": 0.5}, progress=False)
    by_partial = dd.calibrate_epsilon(
        functools.partial(dd.TruncatedExponential, beta=1e-3), space, {"N_w": 0.5}, progress=False
    )
    assert by_name.epsilon == by_partial.epsilon
    assert isinstance(by_name.mechanism, dd.TruncatedExponential)


def test_words_as_strings(space):
    ids = [3, 50, 120]
    as_ids = dd.calibrate_epsilon(
        dd.ExponentialMechanism, space, {"N_w": 0.5}, words=ids, progress=False
    )
    as_words = dd.calibrate_epsilon(
        dd.ExponentialMechanism, space, {"N_w": 0.5}, words=space.words(ids), progress=False
    )
    assert as_ids.epsilon == as_words.epsilon
    assert as_words.word_ids.tolist() == ids


def test_default_words():
    big = dd.synthetic_space(n_words=12_000, dim=2, n_clusters=3, rng=0)
    words = default_words(big)
    assert len(words) == 200 and words[0] == 0 and words[-1] == 9_999
    assert (np.diff(words) > 0).all()


# -- the summary -----------------------------------------------------------------------------------


def test_summary(space):
    found = dd.calibrate_epsilon(dd.ExponentialMechanism, space, {"N_w": 0.5}, progress=False)
    text = str(found)
    assert f"{found.epsilon:.6g}" in text and "median N_w" in text
    assert "d(w, w')-metric DP" in text
    nearest = dd.EmbeddingSpace.neighbors(space, 2, word_ids=default_words(space)).distances[:, 1]
    assert found.nearest_distance == pytest.approx(float(np.median(nearest)))
    assert found.nearest_loss == pytest.approx(found.epsilon * found.nearest_distance)
    assert f"{found.nearest_loss:.4g}" in text
    with pytest.raises(AttributeError):
        found.epsilon = 1.0  # type: ignore[misc]


class RandomizedResponse:
    """A user mechanism that follows the protocol without subclassing Mechanism: keep the word
    with probability ``e^eps / (e^eps + n - 1)``, else a uniform other word; ``epsilon``-DP."""

    exact = False

    def __init__(self, space, epsilon):
        self.space, self.epsilon = space, float(epsilon)

    def keep_probability(self):
        n = len(self.space)
        return 1.0 / (1.0 + (n - 1) * math.exp(-self.epsilon))

    def sample(self, word_ids, rng=None):
        generator = np.random.default_rng(rng)
        ids = np.asarray(word_ids)
        keep = generator.random(ids.shape) < self.keep_probability()
        other = (ids + generator.integers(1, len(self.space), size=ids.shape)) % len(self.space)
        return np.where(keep, ids, other)

    def privacy_bound(self):
        return dd.PrivacyBound("pure", self.epsilon)


@pytest.mark.statistical
def test_protocol_mechanism_with_pure_guarantee(space):
    """Any object with ``sample`` and ``privacy_bound`` works; its N_w is known in closed form,
    so the epsilon found is checked against ``ln(t (n - 1) / (1 - t))``: the keep probability
    at the epsilon found is within the residual + k standard errors of the target."""
    level, n_samples = 0.6, 2_000
    found = dd.calibrate_epsilon(
        RandomizedResponse, space, {"N_w": level}, n_samples=n_samples, rng=2, progress=False
    )
    assert found.method == "sampled" and found.bound.notion == "pure"
    true = found.mechanism.keep_probability()
    standard_error = math.sqrt(level * (1 - level) / n_samples)
    assert abs(true - level) <= abs(found.value - level) + K_ROUND_TRIP * standard_error
    assert found.nearest_loss == found.epsilon
    assert "for any two words" in str(found)


# -- bad inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        ({"N_w": 0.5, "changed": 0.5}, ValueError, "`target` must hold exactly one item"),
        ({}, ValueError, "`target` must hold exactly one item"),
        ({"S_w": 3}, ValueError, "`target` must have the key 'N_w' or 'changed'"),
        ({"N_w": 0.0}, ValueError, r"`target` 'N_w' must be a number in \(0, 1\)"),
        ({"N_w": 1.0}, ValueError, r"`target` 'N_w' must be a number in \(0, 1\)"),
        ({"N_w": float("nan")}, ValueError, r"`target` 'N_w' must be a number in \(0, 1\)"),
        ({"N_w": "0.5"}, TypeError, "`target` value must be a number"),
        (0.5, TypeError, "`target` must be a dict"),
    ],
)
def test_bad_targets(space, target, error, match):
    with pytest.raises(error, match=match):
        dd.calibrate_epsilon(dd.ExponentialMechanism, space, target, progress=False)


def test_bad_texts(space):
    factory = dd.ExponentialMechanism
    with pytest.raises(ValueError, match=r"`target` \{'changed': t\} needs `texts`"):
        dd.calibrate_epsilon(factory, space, {"changed": 0.3}, progress=False)
    with pytest.raises(ValueError, match="`texts` must hold at least one word of the vocabulary"):
        dd.calibrate_epsilon(factory, space, {"changed": 0.3}, texts="zzz qqq!", progress=False)
    with pytest.raises(TypeError, match="`texts` must be a str or a list of str"):
        dd.calibrate_epsilon(factory, space, {"changed": 0.3}, texts=[1, 2], progress=False)
    with pytest.raises(ValueError, match="`texts` is used only by the target"):
        dd.calibrate_epsilon(factory, space, {"N_w": 0.3}, texts="a b", progress=False)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"bracket": (10.0, 1.0)}, ValueError, "0 < low < high"),
        ({"bracket": (0.0, 1.0)}, ValueError, r"`bracket\[0\]` must be a finite number > 0"),
        ({"bracket": 5.0}, ValueError, "`bracket` must be a pair"),
        ({"rtol": 0.0}, ValueError, "`rtol` must be a finite number > 0"),
        ({"tolerance": -1.0}, ValueError, "`tolerance` must be a finite number >= 0"),
        ({"n_samples": 0}, ValueError, "`n_samples` must be an int >= 1"),
        ({"max_evaluations": 0}, ValueError, "`max_evaluations` must be an int >= 1"),
        ({"words": []}, ValueError, "`words` must hold at least one word"),
        ({"words": [10_000]}, ValueError, "words"),
        ({"words": ["not-a-word"]}, dd.UnknownWordError, "not-a-word"),
        ({"rng": -1}, ValueError, "`rng`"),
    ],
)
def test_bad_options(space, options, error, match):
    with pytest.raises(error, match=match):
        dd.calibrate_epsilon(
            dd.ExponentialMechanism, space, {"N_w": 0.5}, progress=False, **options
        )


def test_bad_factories(space):
    with pytest.raises(ValueError, match="`mechanism_factory` must be a callable or one of"):
        dd.calibrate_epsilon("nope", space, {"N_w": 0.5}, progress=False)
    with pytest.raises(TypeError, match="`mechanism_factory` must be a callable"):
        dd.calibrate_epsilon(3, space, {"N_w": 0.5}, progress=False)
    with pytest.raises(TypeError, match="`space` must be an EmbeddingSpace"):
        dd.calibrate_epsilon(dd.ExponentialMechanism, np.zeros((3, 2)), {"N_w": 0.5})


def test_targets_near_the_edges_are_not_taken_as_reached():
    space = dd.synthetic_space(n_words=200, dim=4, n_clusters=3, rng=0)
    with pytest.raises(ValueError, match="not reachable"):  # TEM's N_w tops out at 1 - beta
        dd.calibrate_epsilon(
            functools.partial(dd.TruncatedExponential, beta=1e-3), space, {"N_w": 0.99999},
            progress=False,
        )  # fmt: skip
    found = dd.calibrate_epsilon(dd.ExponentialMechanism, space, {"N_w": 0.02}, progress=False)
    assert abs(found.value - 0.02) <= 2e-4


def test_factory_errors_are_named():
    space = dd.synthetic_space(n_words=100, dim=3, n_clusters=2, rng=0)
    other = dd.synthetic_space(n_words=100, dim=3, n_clusters=2, rng=1)
    with pytest.raises(ValueError, match="refused every epsilon .*`beta`"):
        dd.calibrate_epsilon(
            lambda s, e: dd.TruncatedExponential(s, e, beta=2.0), space, {"N_w": 0.5},
            progress=False,
        )  # fmt: skip
    with pytest.raises(TypeError, match="must return a Mechanism .*got int"):
        dd.calibrate_epsilon(lambda s, e: 3, space, {"N_w": 0.5}, progress=False)
    with pytest.raises(ValueError, match="has another space"):
        dd.calibrate_epsilon(
            lambda s, e: dd.ExponentialMechanism(other, e), space, {"N_w": 0.5}, progress=False
        )


def test_calibration_statement_does_not_claim_unprotected_pairs():
    """CusText protects only pairs with equal output sets (with per-word top-k sets, nearest
    pairs rarely): the statement must not say it claims epsilon-DP "for any two words"."""
    space = dd.synthetic_space(n_words=200, dim=4, n_clusters=3, rng=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dd.PrivacyWarning)
        found = dd.calibrate_epsilon(
            lambda s, e: dd.CusText(s, e, k=10, mapping="top-k"),
            space,
            {"N_w": 0.5},
            rng=0,
            progress=False,
        )
    assert math.isinf(found.nearest_loss)
    assert "for any two words" not in str(found) and "no claim at all" in str(found)
