"""Conformance checks that every mechanism must pass (used by the test suite; public so that
users can check their own mechanisms).

>>> import densitydp as dd
>>> space = dd.synthetic_space(n_words=60, dim=4, n_clusters=3, rng=0)
>>> report = dd.testing.check_mechanism(dd.ExponentialMechanism(space, 3.0), n_samples=20_000)
>>> report.passed
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ._rng import as_generator
from .mechanisms.base import Mechanism

__all__ = ["ConformanceReport", "check_mechanism"]

#: Outputs whose probability is below this under either input are left out of the exact-loss
#: check: their floating-point values carry no relative precision (and the truncated Gumbel's
#: omitted tail is below 1e-15).
PROBABILITY_FLOOR = 1e-12


@dataclass
class ConformanceReport:
    """What :func:`check_mechanism` checked; ``failures`` is empty when everything passed."""

    mechanism: str
    checks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = [f"conformance of {self.mechanism}:"]
        lines += [f"  ok    {c}" for c in self.checks]
        lines += [f"  FAIL  {f}" for f in self.failures]
        return "\n".join(lines)


def _pairs(mechanism: Mechanism, words: np.ndarray, generator: np.random.Generator) -> list:
    """Nearest, random and far pairs for each word."""
    space = mechanism.space
    table = space.neighbors(min(8, len(space)), word_ids=words, progress=False)
    pairs = []
    for word in words:
        ids = table.rows([word])[0][0]
        pairs.append((int(word), int(ids[1]), "nearest"))
        pairs.append((int(word), int(generator.integers(len(space))), "random"))
        distances = space.distance(np.full(len(space), word), np.arange(len(space)))
        pairs.append((int(word), int(np.argmax(distances)), "far"))
    return [(w, o, kind) for w, o, kind in pairs if w != o]


def _goodness_of_fit(
    counts: np.ndarray, probabilities: np.ndarray, n_samples: int
) -> tuple[float, int, float]:
    """Pearson chi-square ``(p_value, bins, statistic)`` of ``counts`` against
    ``probabilities``; outputs with expected count < 5 are pooled into one bin.

    Pearson's statistic, not the G (log-likelihood) statistic: with thousands of bins of small
    expected counts the G-test is badly anti-conservative (measured on GloVe, exponential
    mechanism at epsilon 1, 200,000 draws, ~10,000 bins: half of exact multinomial samples
    rejected at level 0.01), while Pearson's keeps its level (0.0-0.7 % at 0.01, 4.7-5.0 % at
    0.05)."""
    expected = probabilities * n_samples
    keep = expected >= 5
    observed_bins = np.append(counts[keep], counts[~keep].sum())
    expected_bins = np.append(expected[keep], expected[~keep].sum())
    if expected_bins[-1] < 5:  # fold a tiny pooled bin into the largest one
        observed_bins[np.argmax(expected_bins[:-1])] += observed_bins[-1]
        expected_bins[np.argmax(expected_bins[:-1])] += expected_bins[-1]
        observed_bins, expected_bins = observed_bins[:-1], expected_bins[:-1]
    expected_bins *= observed_bins.sum() / expected_bins.sum()
    if len(expected_bins) < 2:
        return 1.0, 1, 0.0
    result = stats.power_divergence(observed_bins, expected_bins, lambda_="pearson")
    return float(result.pvalue), len(expected_bins), float(result.statistic)


def check_mechanism(
    mechanism: Any,
    *,
    space: Any = None,
    claim: Any = None,
    interface: str | None = None,
    word_ids: Any = None,
    n_words: int = 3,
    n_samples: int = 200_000,
    alpha: float = 1e-4,
    rng: Any = 0,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Check the protocol and the statistics of a mechanism.

    Checks: outputs are valid ids of the input's shape; the same seed gives the same output and
    different seeds differ; for exact mechanisms, each distribution is non-negative and sums to
    1 (within 1e-9), sampled frequencies agree with it (Pearson chi-square at level ``alpha`` on
    ``n_samples`` draws per word), and the exact loss ``max_y |ln P(y|w) - ln P(y|w')|`` never
    exceeds ``privacy_loss_bound(w, w')`` on nearest, random and far pairs.

    Power of the test for a 0.1-probability output (noncentral chi-square): with the default
    200,000 draws, an error of 0.01 (one percentage point) is caught with power ~1.00 for 10 to
    100 bins; an error of 0.005 with 0.96 (10 bins) to 0.28 (100 bins). A 1 % relative error
    (0.001) needs about 4.3 to 9.1 million draws for power 0.9.

    ``mechanism`` is anything :func:`densitydp.as_mechanism` accepts: no subclassing needed
    (``space``, ``claim`` and ``interface`` as there). Without a claim (no
    ``privacy_loss_bound``, no ``claim=``) the exact-loss check is skipped and says so.

    Parameters
    ----------
    word_ids : array_like of int, optional
        Words to test (default: ``n_words`` words drawn with ``rng``).
    raise_on_failure : bool
        Raise ``AssertionError`` with the report when a check fails (default) or return it.
    """
    from .audit.blackbox import checked_mechanism

    mechanism = checked_mechanism(mechanism, space=space, claim=claim, interface=interface)
    generator = as_generator(rng)
    space = mechanism.space
    report = ConformanceReport(repr(mechanism))
    words = (
        generator.choice(len(space), size=min(n_words, len(space)), replace=False)
        if word_ids is None
        else np.atleast_1d(np.asarray(word_ids, dtype=np.int64))
    )

    def check(condition: bool, text: str) -> None:
        (report.checks if condition else report.failures).append(text)

    batch = np.repeat(words, 200).reshape(len(words), 200)
    first = mechanism.sample(batch, rng=123)
    check(first.shape == batch.shape and first.dtype == np.int64, "output shape and dtype")
    outside_space = int(((first < 0) | (first >= len(space))).sum())
    check(outside_space == 0, f"outputs are words of the space ({outside_space} outside)")
    other = mechanism.sample(batch, rng=124)
    if not getattr(mechanism, "reproducible", True):
        report.checks.append("same seed, same output: not testable (its own randomness)")
    else:
        check(np.array_equal(first, mechanism.sample(batch, rng=123)), "same seed, same output")
    if (first == batch).all() and (other == batch).all():
        report.checks.append("different seeds: not testable (every output equals its input)")
    else:
        check(not np.array_equal(first, other), "different seeds, different outputs")

    if mechanism.exact:
        for word in words:
            support, probabilities = mechanism.output_distribution(int(word))
            total = float(probabilities.sum())
            check(
                bool((probabilities >= 0).all()) and abs(total - 1.0) < 1e-9,
                f"distribution of word {word} sums to 1 (got {total:.15f})",
            )
            draws = mechanism.sample(np.full(n_samples, word), rng=generator)
            counts = np.bincount(draws, minlength=len(space))
            outside = int(n_samples - counts[support].sum())
            pvalue, bins, _ = _goodness_of_fit(counts[support], probabilities, n_samples)
            check(
                outside == 0 and pvalue >= alpha,
                f"sampled frequencies of word {word} match the exact distribution "
                f"(chi-square p = {pvalue:.3g} over {bins} bins, {n_samples} draws, "
                f"{outside} outside the support)",
            )
        try:
            mechanism.privacy_loss_bound(int(words[0]), int(words[0]))
        except TypeError as exc:  # no claim: nothing to compare the exact losses with
            report.checks.append(f"exact loss against the claim: not testable ({exc})")
            pairs = []
        else:
            pairs = _pairs(mechanism, words, generator)
        for word, other_word, kind in pairs:
            loss, output, unresolved, lower = exact_loss(mechanism, word, other_word)
            bound = float(mechanism.privacy_loss_bound(word, other_word))
            note = (
                f"; {unresolved} outputs outside one computed support, loss certified from "
                f"below{' (the worst is such a bound)' if lower else ''}"
                if unresolved
                else ""
            )
            check(
                loss <= bound * (1 + 1e-9) + 1e-12,
                f"exact loss {loss:.6g} <= claimed {bound:.6g} ({kind} pair {word}, "
                f"{other_word}; worst output {output}{note})",
            )
    if raise_on_failure and report.failures:
        raise AssertionError(str(report))
    return report


def exact_loss(mechanism: Mechanism, word_id: int, other_id: int) -> tuple[float, int, int, bool]:
    """``max_y |ln P(y|w) - ln P(y|w')|``, its arg-max output, the number of outputs whose loss
    is known only from below, and whether the returned loss is such a lower bound.

    Outputs with probability below 1e-12 under both words are skipped (no relative precision).
    An output likely under one word and impossible under the other gives ``inf``. A mechanism
    whose :meth:`output_distribution` leaves out a tail (``omitted_mass > 0``, the truncated
    Gumbel) cannot say that an output it left out is impossible, only that its probability is
    at most ``omitted_mass`` (or at most ``exp(log_prob_upper_bound(other, y))`` when the
    mechanism states such a bound): for an output of probability ``p`` under one word and
    outside the other's computed support, the loss is at least ``ln(p / that bound)``, a
    certified lower bound. The result is the largest of the resolved losses and these bounds,
    flagged as a lower bound when a bound is the largest (it can only understate the true
    loss, never overstate it).
    """
    support_a, _ = mechanism.output_distribution(word_id)
    support_b, _ = mechanism.output_distribution(other_id)
    outputs = np.union1d(support_a, support_b)
    log_a = mechanism.log_prob(word_id, outputs)
    log_b = mechanism.log_prob(other_id, outputs)
    floor = np.log(PROBABILITY_FLOOR)
    both = (log_a >= floor) & (log_b >= floor)
    only_a = (log_a >= floor) & np.isneginf(log_b)
    only_b = (log_b >= floor) & np.isneginf(log_a)
    omitted = float(getattr(mechanism, "omitted_mass", 0.0))
    best, output = 0.0, -1
    if both.any():
        differences = np.abs(log_a[both] - log_b[both])
        worst = int(np.argmax(differences))
        best, output = float(differences[worst]), int(outputs[both][worst])
    one_sided = only_a | only_b
    if not one_sided.any():
        return best, output, 0, False
    if omitted <= 0.0:  # a complete law: the output is impossible under the other word
        return float("inf"), int(outputs[np.argmax(one_sided)]), 0, False
    # certified: P(y | other) <= omitted_mass for an output left out of the other's support,
    # and <= the mechanism's own per-output upper bound when it states one
    present = np.where(only_a, log_a, log_b)[one_sided]
    bounds = present - np.log(omitted)
    upper_fn = getattr(mechanism, "log_prob_upper_bound", None)
    if callable(upper_fn):
        absent_word = np.where(only_a, other_id, word_id)[one_sided]
        targets = outputs[one_sided]
        upper = np.empty(len(targets))
        for word in np.unique(absent_word):
            mine = absent_word == word
            upper[mine] = upper_fn(int(word), targets[mine])
        bounds = np.maximum(bounds, present - np.minimum(upper, np.log(omitted)))
    top = int(np.argmax(bounds))
    if bounds[top] > best:
        return float(bounds[top]), int(outputs[one_sided][top]), int(one_sided.sum()), True
    return best, output, int(one_sided.sum()), False
