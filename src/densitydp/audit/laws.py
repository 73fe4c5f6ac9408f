"""``compare_laws``: does an implementation sample the same law as a reference?

A privacy bug often hides in rare outputs (a wrong rare branch of a TEM, noise on squared
distances, a renormalised direction): the privacy-loss audit needs the right event to see it,
while a test of the whole output law sees any change of mass. Per word, the candidate's sampled
outputs are tested against the reference's exact law (Pearson goodness of fit) or, when the
reference has none, against the reference's own samples (chi-square test of homogeneity);
multiplicity over words is controlled with Holm's step-down method. Each word also gets the
total-variation distance between the two laws, estimated and bounded from both sides.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._rng import RNGLike, as_generator, seed_entropy
from .._validation import check_int, check_open_unit
from ..mechanisms.base import Mechanism
from .blackbox import checked_mechanism
from .sampling import MAX_SAMPLES, MapCalls, SparseCounts, _merge, sample_counts

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LawComparison", "compare_laws", "holm", "samples_for_power"]

#: Power for which :func:`samples_for_power` sizes the sample.
POWER = 0.9

#: Smallest pooled count of a bin of the two-sample test (bins below are pooled together).
MIN_BIN_COUNT = 10


@dataclass
class LawComparison:
    """What :func:`compare_laws` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per word: ``word``, ``word_id``, ``test`` (``"goodness of fit"`` against the
        reference's exact law or ``"two-sample"``), ``statistic`` (Pearson chi-square),
        ``bins``, ``tested`` (at least two bins: a word whose draws all fell in one bin says
        nothing), ``p_value``, ``p_adjusted`` (Holm), ``rejected``, ``outside`` (candidate draws
        outside the reference's exact support), ``tv_hat`` (plug-in total-variation distance
        over the bins of the bounds), ``tv_lower`` and ``tv_upper`` (confidence bounds on the
        total-variation distance between the two laws) and ``n_for_power`` (samples per word
        that detect a total-variation distance of ``tv`` with power 0.9 at this word's bins).
    """

    candidate: str
    reference: str
    alpha: float
    correction: str
    n_samples: int
    tv: float
    seed: dict[str, Any]
    table: pd.DataFrame
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``"FAIL"`` (a word's law differs), ``"INCONCLUSIVE"`` (fewer than half of the
        words, or none, could be tested: all their draws fell in one bin) or ``"PASS"``."""
        if bool(self.table["rejected"].any()):
            return "FAIL"
        tested = int(self.table["tested"].sum())
        if tested == 0 or 2 * tested < len(self.table):
            return "INCONCLUSIVE"
        return "PASS"

    @property
    def passed(self) -> bool:
        """The outcome is PASS: words were tested and no law differs from the reference's."""
        return self.outcome == "PASS"

    def summary(self) -> dict[str, Any]:
        """Words tested and rejected, the smallest adjusted p-value, the largest lower and
        upper total-variation bounds, and the largest sample size needed for power 0.9."""
        table = self.table
        return {
            "outcome": self.outcome,
            "passed": self.passed,
            "words": len(table),
            "tested": int(table["tested"].sum()),
            "rejected": int(table["rejected"].sum()),
            "min_p_adjusted": float(table["p_adjusted"].min()),
            "max_tv_lower": float(table["tv_lower"].max()),
            "max_tv_upper": float(table["tv_upper"].max()),
            "n_for_power": float(table["n_for_power"].max()),
            "alpha": self.alpha,
            "correction": self.correction,
        }

    def verdict(self) -> str:
        """One line: PASS, FAIL or INCONCLUSIVE with the numbers behind it."""
        s = self.summary()
        text = (
            f"{s['outcome']}: law of {s['words']} word(s) against the reference, {s['tested']} "
            f"tested, {s['rejected']} rejected (smallest Holm-adjusted p "
            f"{s['min_p_adjusted']:.3g}); total variation <= {s['max_tv_upper']:.3g}"
        )
        if s["outcome"] == "FAIL":
            text += f", >= {s['max_tv_lower']:.3g} for the worst word"
        return text + (
            f"; {_count(s['n_for_power'])} samples per word detect TV {self.tv:g} with power "
            f"{POWER:g} (alpha {self.alpha:g}, {self.correction})"
        )

    def __repr__(self) -> str:
        return f"LawComparison({self.candidate} vs {self.reference}; {self.verdict()})"

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (``inf`` as the string ``"inf"``)."""
        from .report import _json_ready

        return _json_ready(
            {
                "candidate": self.candidate,
                "reference": self.reference,
                "alpha": self.alpha,
                "correction": self.correction,
                "n_samples": self.n_samples,
                "tv": self.tv,
                "seed": self.seed,
                "seconds": self.seconds,
                "notes": self.notes,
                "summary": self.summary(),
                "verdict": self.verdict(),
                "table": self.table.to_dict(orient="records"),
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LawComparison:
        """The comparison :meth:`to_dict` wrote."""
        from .report import _table_from_records

        return cls(
            candidate=data["candidate"],
            reference=data["reference"],
            alpha=float(data["alpha"]),
            correction=data["correction"],
            n_samples=int(data["n_samples"]),
            tv=float(data["tv"]),
            seed=data["seed"],
            table=_table_from_records(data["table"]),
            seconds=float(data["seconds"]),
            notes=list(data.get("notes", [])),
        )


def _count(value: float) -> str:
    """A number of samples as the verdicts show it: exact below 1e9, 3 digits above."""
    return "inf" if math.isinf(value) else (f"{value:,.0f}" if value < 1e9 else f"{value:.3g}")


def compare_laws(
    candidate: Any,
    reference: Any,
    word_ids: Any,
    n_samples: int = 200_000,
    rng: RNGLike = None,
    *,
    alpha: float = 0.05,
    tv: float = 0.01,
    space: Any = None,
    claim: Any = None,
    interface: str | None = None,
    progress: bool | None = None,
) -> LawComparison:
    """Test, word by word, whether ``candidate`` samples the same output law as ``reference``.

    For each word, ``n_samples`` outputs of the candidate are drawn. When the reference states
    its exact law (``output_distribution``), Pearson's goodness-of-fit test compares them with
    it (outputs of expected count below 5 pooled into one bin; any draw outside the reference's
    support is by itself evidence, with probability at most ``n * omitted_mass`` under the
    reference); otherwise the reference is sampled as much and a chi-square test of homogeneity
    compares the two samples (bins from the pooled counts, below 10 pooled: the choice depends
    only on the pooled sample, so the test keeps its level). Holm's step-down method controls
    the family-wise error over the words at ``alpha``.

    Total variation. ``tv_hat`` is the plug-in distance over a partition of the outputs fixed
    without the data it is computed on (from the exact law, or from the first half of both
    samples, the distance then on the second half). With ``B`` bins and ``n`` draws per law,
    McDiarmid's inequality and ``E TV_B(P_hat, P) <= sqrt(B / n) / 2`` bound the binned
    distance from both sides, and ``TV <= TV_B + P(tail bin)`` (the tail's mass bounded by a
    Clopper–Pearson upper bound when unknown) turns the upper bound into one on the whole law:
    ``tv_lower <= TV <= tv_upper`` each at ``1 - alpha``, simultaneously over the words
    (Bonferroni). ``n_for_power``: any alternative at total variation ``tv`` (at the
    resolution of the bins) has non-centrality at least ``4 n tv^2`` (goodness of fit; ``2 n
    tv^2`` for two samples of ``n``), so this many samples per word reject it with power 0.9 at
    the word's Bonferroni level.

    Parameters
    ----------
    candidate, reference : Mechanism, object or function
        Anything :func:`densitydp.as_mechanism` accepts; both on the same space (a function
        candidate takes the reference's space unless ``space`` is given).
    word_ids : array_like of int, or a list of words
        Words whose laws are compared (distinct ones are used).
    n_samples : int
        Draws per word from each sampled mechanism (at least 20).
    alpha : float
        Family-wise error rate of the test and error of each total-variation bound.
    tv : float
        Total-variation distance for which ``n_for_power`` is reported, in (0, 1].
    space, claim, interface
        For a function candidate, as in :func:`densitydp.as_mechanism`.

    Returns
    -------
    LawComparison

    Raises
    ------
    TypeError
        Either argument is not a mechanism (the message names the missing member).
    ValueError
        The two live on different vocabularies, or a parameter is out of range.

    References: Holm (1979), Scand. J. Statist. 6; McDiarmid (1989); the bias bound by
    Cauchy–Schwarz over ``B`` bins.
    """
    reference = checked_mechanism(reference)
    candidate = checked_mechanism(
        candidate, space=space if space is not None else _space_for(candidate, reference),
        claim=claim, interface=interface,
    )  # fmt: skip
    _same_vocabulary(candidate, reference)
    alpha = check_open_unit(alpha, "alpha")
    tv = float(tv)
    if not (0.0 < tv <= 1.0):
        raise ValueError(f"`tv` must be in (0, 1]; got {tv!r}.")
    n_samples = check_int(n_samples, "n_samples", minimum=20, maximum=MAX_SAMPLES)
    from ..mechanisms.base import mechanism_and_words

    if isinstance(word_ids, str) or (
        isinstance(word_ids, (list, tuple))
        and word_ids
        and all(isinstance(w, str) for w in word_ids)
    ):
        word_ids = reference.space.ids(word_ids)  # words, not ids (UnknownWordError names them)
    words = np.unique(mechanism_and_words(reference, word_ids))
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    started = time.perf_counter()
    mine, theirs = generator.spawn(2)
    first, second = sample_counts(candidate, words, n_samples, mine, progress=progress)
    table = law_table(candidate, reference, words, first, second, alpha, tv, theirs, progress)
    return LawComparison(
        candidate=repr(candidate),
        reference=repr(reference),
        alpha=alpha,
        correction="holm",
        n_samples=2 * (n_samples // 2),
        tv=tv,
        seed=seed,
        table=table,
        seconds=time.perf_counter() - started,
        notes=_notes(candidate),
    )


def _space_for(candidate: Any, reference: Mechanism) -> Any:
    """A function candidate takes the reference's space; an object keeps its own."""
    if isinstance(candidate, Mechanism) or hasattr(candidate, "sample"):
        return None
    return reference.space


def _same_vocabulary(candidate: Mechanism, reference: Mechanism) -> None:
    from .blackbox import same_vocabulary_and_vectors

    a, b = candidate.space, reference.space
    if same_vocabulary_and_vectors(a, b):
        return
    if len(a) != len(b) or list(a.vocabulary) != list(b.vocabulary):
        raise ValueError(
            f"`candidate` and `reference` must share a vocabulary (the same words in the same "
            f"order); got {len(a)} and {len(b)} words that differ."
        )


def _notes(candidate: Mechanism) -> list[str]:
    if getattr(candidate, "reproducible", True):
        return []
    return ["the candidate uses its own randomness: the seed does not reproduce its draws"]


def law_table(
    candidate: Mechanism,
    reference: Mechanism,
    words: np.ndarray,
    first: list[SparseCounts],
    second: list[SparseCounts],
    alpha: float,
    tv: float,
    generator: np.random.Generator,
    progress: bool | None = None,
    map_calls: MapCalls | None = None,
) -> pd.DataFrame:
    """One row per word (see :class:`LawComparison`) from the candidate's two halves of draws;
    the reference is sampled with ``generator`` as much when it has no exact law (its calls
    through ``map_calls``, see :func:`~densitydp.audit.sampling.sample_counts`)."""
    import pandas as pd

    from .blackbox import output_words

    n_half = _draws(first[0]) if first else 0
    per_word_alpha = alpha / len(words)  # bounds: simultaneous over the words (Bonferroni)
    if reference.exact:
        rows = [
            _against_law(reference, int(w), first[i], second[i], n_half, per_word_alpha, tv)
            for i, w in enumerate(words)
        ]
    else:
        ref_first, ref_second = sample_counts(
            reference, words, 2 * n_half, generator, progress=progress, map_calls=map_calls
        )
        rows = [
            _two_sample(
                (first[i], second[i]), (ref_first[i], ref_second[i]), n_half, per_word_alpha, tv
            )
            for i in range(len(words))
        ]
    table = pd.DataFrame(rows)
    table.insert(0, "word_id", words.astype(np.int64))
    table.insert(0, "word", output_words(candidate, words))
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", holm(table["p_value"]))
    table.insert(table.columns.get_loc("p_adjusted") + 1, "rejected", table["p_adjusted"] < alpha)
    # a word whose draws all fell in one bin was not tested (p = 1 says nothing)
    table.insert(table.columns.get_loc("bins") + 1, "tested", table["bins"] >= 2)
    return table


def _draws(counts: SparseCounts) -> int:
    return int(counts[1].sum())


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): reject where ``adjusted < alpha``
    controls the family-wise error rate at ``alpha`` under any dependence."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def samples_for_power(tv: float, bins: int, alpha: float, two_sample: bool = False) -> float:
    """Samples per law with which the chi-square test over ``bins`` bins at level ``alpha``
    rejects any alternative at total-variation distance ``tv`` (at the bins' resolution) with
    power :data:`POWER`: the non-centrality is at least ``4 n tv^2`` (``2 n tv^2`` for two
    samples of ``n``) by Cauchy–Schwarz. ``inf`` with a single bin."""
    from scipy import optimize, stats

    if bins < 2:
        return math.inf
    df = bins - 1
    critical = stats.chi2.isf(alpha, df)
    scale = (2.0 if two_sample else 4.0) * tv * tv

    def power(n: float) -> float:
        return float(stats.ncx2.sf(critical, df, scale * n))

    if power(1.0) >= POWER:
        return 1.0
    high = math.log(max(1.0, (critical + 10.0 * math.sqrt(2.0 * df) + 10.0) / scale))
    while power(math.exp(high)) < POWER:
        high += 1.0
    root = optimize.brentq(lambda log_n: power(math.exp(log_n)) - POWER, 0.0, high, xtol=1e-6)
    n = math.ceil(math.exp(root))  # then the smallest integer: the root is only near
    while power(n) < POWER:
        n += 1
    while n > 1 and power(n - 1) >= POWER:
        n -= 1
    return float(n)


def _deviation(bins: int, n: int, alpha: float) -> float:
    """Bound on ``TV_B(P_hat, P)`` for ``n`` draws over ``bins`` bins, at ``1 - alpha``:
    ``sqrt(B / n) / 2`` (its mean) plus McDiarmid's ``sqrt(ln(1 / alpha) / (2 n))``."""
    return 0.5 * math.sqrt(bins / n) + math.sqrt(math.log(1.0 / alpha) / (2.0 * n))


def _against_law(
    reference: Mechanism,
    word: int,
    first: SparseCounts,
    second: SparseCounts,
    n_half: int,
    alpha: float,
    tv: float,
) -> dict[str, Any]:
    from ..testing import _goodness_of_fit

    ids, counts = _merge([first, second])
    n = int(counts.sum())
    support, probabilities = reference.output_distribution(word)
    order = np.argsort(support)
    support, probabilities = support[order], probabilities[order]
    position = np.searchsorted(support, ids)
    inside = (position < len(support)) & (support[np.minimum(position, len(support) - 1)] == ids)
    observed = np.zeros(len(support), dtype=np.int64)
    observed[position[inside]] = counts[inside]
    outside = int(counts[~inside].sum())
    chi_p, bins, statistic = (
        _goodness_of_fit(observed, probabilities, n) if n - outside else (1.0, 1, 0.0)
    )
    omitted = float(getattr(reference, "omitted_mass", 0.0))
    p_value = chi_p
    if outside:  # P(any draw outside) <= n * omitted mass under the reference
        p_value = min(1.0, 2.0 * min(chi_p, min(1.0, n * omitted)))
    elif omitted:
        p_value = min(1.0, 2.0 * chi_p)  # the two tests, Bonferroni
    # total variation over a partition fixed by the law alone: the j most likely outputs, one
    # bin each, and the tail (the rest of the support, and everything outside it)
    ranked = np.argsort(-probabilities, kind="stable")
    cumulative = np.cumsum(probabilities[ranked])
    n_single = np.arange(1, len(ranked) + 1)
    cost = 0.5 * np.sqrt((n_single + 1) / n) + np.maximum(1.0 - cumulative, 0.0)
    j = int(np.argmin(cost)) + 1
    top = ranked[:j]
    frequencies = observed[top] / n
    tail_p = max(1.0 - float(probabilities[top].sum()), 0.0)
    tail_q = 1.0 - float(frequencies.sum())
    tv_hat = 0.5 * (float(np.abs(frequencies - probabilities[top]).sum()) + abs(tail_q - tail_p))
    deviation = _deviation(j + 1, n, alpha / 2.0)
    return {
        "test": "goodness of fit",
        "statistic": statistic,
        "bins": bins,
        "p_value": p_value,
        "outside": outside,
        "tv_hat": tv_hat,
        "tv_lower": max(0.0, tv_hat - deviation),
        "tv_upper": min(1.0, tv_hat + deviation + tail_p + omitted),
        "n_for_power": samples_for_power(tv, bins, alpha),
    }


def _two_sample(
    candidate: tuple[SparseCounts, SparseCounts],
    reference: tuple[SparseCounts, SparseCounts],
    n_half: int,
    alpha: float,
    tv: float,
) -> dict[str, Any]:
    from scipy import stats

    from .estimators import clopper_pearson_upper

    # the test: all draws, bins from the pooled counts
    cand_ids, cand_counts = _merge(list(candidate))
    ref_ids, ref_counts = _merge(list(reference))
    outputs = np.union1d(cand_ids, ref_ids)
    table = np.zeros((2, len(outputs)), dtype=np.int64)
    table[0, np.searchsorted(outputs, cand_ids)] = cand_counts
    table[1, np.searchsorted(outputs, ref_ids)] = ref_counts
    pooled = table.sum(axis=0)
    frequent = pooled >= MIN_BIN_COUNT
    binned = np.column_stack([table[:, frequent], table[:, ~frequent].sum(axis=1)])
    if binned[:, -1].sum() < MIN_BIN_COUNT and binned.shape[1] > 1:
        largest = int(np.argmax(binned[:, :-1].sum(axis=0)))
        binned[:, largest] += binned[:, -1]
        binned = binned[:, :-1]
    binned = binned[:, binned.sum(axis=0) > 0]
    if binned.shape[1] < 2:
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.chi2_contingency(binned, correction=False)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    # total variation: partition from the first halves, distance on the second halves
    (c1, c2), (r1, r2) = candidate, reference
    first_ids = np.union1d(c1[0], r1[0])
    first_pooled = np.zeros(len(first_ids))
    first_pooled[np.searchsorted(first_ids, c1[0])] += c1[1]
    first_pooled[np.searchsorted(first_ids, r1[0])] += r1[1]
    ranked = first_ids[np.argsort(-first_pooled, kind="stable")]
    share = np.sort(first_pooled)[::-1].cumsum() / max(first_pooled.sum(), 1.0)
    n_single = np.arange(1, len(ranked) + 1)
    cost = np.sqrt((n_single + 1) / n_half) + np.maximum(1.0 - share, 0.0)
    j = int(np.argmin(cost)) + 1 if len(ranked) else 0
    top = np.sort(ranked[:j])
    from .estimators import _lookup

    q = _lookup(c2[0], c2[1], top) / n_half
    p = _lookup(r2[0], r2[1], top) / n_half
    tail_q, tail_p = 1.0 - float(q.sum()), 1.0 - float(p.sum())
    tv_hat = 0.5 * (float(np.abs(q - p).sum()) + abs(tail_q - tail_p))
    deviation = 2.0 * _deviation(j + 1, n_half, alpha / 4.0)
    tail_bound = min(
        float(clopper_pearson_upper(round(tail_q * n_half), n_half, alpha / 4.0)),
        float(clopper_pearson_upper(round(tail_p * n_half), n_half, alpha / 4.0)),
    )
    return {
        "test": "two-sample",
        "statistic": statistic,
        "bins": int(binned.shape[1]),
        "p_value": p_value,
        "outside": 0,
        "tv_hat": tv_hat,
        "tv_lower": max(0.0, tv_hat - deviation),
        "tv_upper": min(1.0, tv_hat + deviation + tail_bound),
        "n_for_power": samples_for_power(tv, int(binned.shape[1]), alpha, two_sample=True),
    }
