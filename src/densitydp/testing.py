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
    """``max_y |ln P(y|w) - ln P(y|w')|``, its arg-max output, the number of outputs whose
    loss is not resolved, and whether the returned loss is only a lower bound.

    Which probabilities are known. A mechanism whose ``log_prob`` carries relative precision
    everywhere (``log_prob_precise = True``: computed in log space, as the exponential family
    does) is resolved on every output. Otherwise a probability is taken as exact from
    :data:`PROBABILITY_FLOOR` (1e-12) up, and below it only bounded: in ``[0, p + 1e-12]``
    (absolute precision). An output outside a word's computed support has probability 0 for a
    complete law, and at most ``omitted_mass`` for a law that leaves out a tail (the truncated
    Gumbel), or at most ``exp(log_prob_upper_bound(w, y))`` when the mechanism states such a
    bound.

    Each output with both probabilities known gives its exact loss (``inf`` when exactly one is
    0); any other gives the certified lower bound ``max(ln L_a - ln U_b, ln L_b - ln U_a, 0)``
    from the lower (``L``) and upper (``U``) bounds above, and counts as unresolved. The result
    is the largest of all; when any output is unresolved it is flagged as a lower bound (the
    true loss may be larger), never presented as exact.
    """
    support_a, _ = mechanism.output_distribution(word_id)
    support_b, _ = mechanism.output_distribution(other_id)
    outputs = np.union1d(support_a, support_b)
    bounds = [
        _log_probability_bounds(mechanism, word, outputs, np.isin(outputs, support))
        for word, support in ((word_id, support_a), (other_id, support_b))
    ]
    (lower_a, upper_a, known_a), (lower_b, upper_b, known_b) = bounds
    with np.errstate(invalid="ignore"):
        exact = np.abs(lower_a - lower_b)
        exact[np.isneginf(lower_a) & np.isneginf(lower_b)] = 0.0  # impossible under both
        certified = np.maximum(lower_a - upper_b, lower_b - upper_a)
    certified = np.where(np.isnan(certified), 0.0, np.maximum(certified, 0.0))
    resolved = known_a & known_b
    losses = np.where(resolved, exact, certified)
    if not len(losses):
        return 0.0, -1, 0, False
    worst = int(np.argmax(losses))
    unresolved = int((~resolved).sum())
    return float(losses[worst]), int(outputs[worst]), unresolved, unresolved > 0


def _log_probability_bounds(
    mechanism: Mechanism, word: int, outputs: np.ndarray, in_support: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log lower bound, log upper bound, known)`` of ``P(y | word)`` for each output (see
    :func:`exact_loss`)."""
    log_p = np.asarray(mechanism.log_prob(word, outputs), dtype=np.float64)
    floor = np.log(PROBABILITY_FLOOR)
    precise = bool(getattr(mechanism, "log_prob_precise", False))
    omitted = float(getattr(mechanism, "omitted_mass", 0.0))
    known = in_support & (precise | (log_p >= floor))
    if omitted <= 0.0:
        known |= ~in_support  # a complete law: exactly 0 outside its support
    lower = np.where(known, log_p, -np.inf)
    upper = np.where(
        in_support, np.logaddexp(log_p, floor), np.log(omitted) if omitted else -np.inf
    )
    stated = getattr(mechanism, "log_prob_upper_bound", None)
    if callable(stated) and not known.all():
        targets = ~known
        upper[targets] = np.minimum(upper[targets], stated(word, outputs[targets]))
    upper = np.where(known, log_p, upper)
    return lower, upper, known
