"""``audit``: does a mechanism, as implemented, meet the loss it claims? And the report."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import atomic_write, save_figure
from .._rng import RNGLike, as_generator, seed_entropy
from .._validation import check_int, check_open_unit
from ..mechanisms.base import Mechanism
from .blackbox import checked_mechanism, output_words
from .estimators import ExactLoss, exact_privacy_loss, max_demonstrable_loss, monte_carlo_loss
from .laws import LawComparison, _count, law_table
from .sampling import FREQUENT, MAX_SAMPLES, MapCalls, _map_here, choose_pairs, sample_counts

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AuditReport", "audit"]

#: Largest number of distinct words whose sampled frequencies are checked against the exact
#: distribution (a chi-square test each).
GOF_WORDS = 20

#: The three outcomes of an audit, and the exit status of ``densitydp audit`` for each.
OUTCOMES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}

#: Default share of the pairs that must be tested (exactly, or testable by sampling) for PASS.
MIN_TESTED = 0.5


@dataclass
class AuditReport:
    """What :func:`audit` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per pair: ``word``, ``other``, ``distance``, ``claimed`` (the claimed loss
        bound of the pair), ``eps_hat`` (plug-in loss of the chosen event on the confirmation
        half), ``eps_lower`` (its lower confidence bound), ``event`` (``M = y``), ``n`` (samples
        per word and half), ``testable`` (whether ``n`` samples can show a loss above
        ``claimed`` at all), ``tested`` (testable, or its exact loss known), ``violation``; for
        exact mechanisms also ``exact_loss``, ``exact_output``, ``exact_kind`` (``"exact"``, or
        ``"lower bound"`` when the loss is certified only from below) and ``unresolved``.
    goodness_of_fit : pandas.DataFrame or None
        Exact mechanisms: Pearson chi-square test of each word's sampled frequencies against
        its exact distribution (``word``, ``p_value``, ``bins``, ``outside``, ``passed``).
    law : LawComparison or None
        With a ``reference``: the test of the audited mechanism's law against it, on the
        words of the pairs (:func:`densitydp.compare_laws`).
    min_tested : float
        Share of the pairs that must be tested for the outcome PASS.
    notes : list of str
        What the reader must know (for example: a function using its own randomness).
    """

    mechanism: str
    bound: str
    confidence: float
    correction: str
    n_samples: int
    pair_strategy: str
    seed: dict[str, Any]
    table: pd.DataFrame
    goodness_of_fit: pd.DataFrame | None = None
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    law: LawComparison | None = None
    min_tested: float = MIN_TESTED
    loss_alpha: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> pd.DataFrame:
        """The pairs whose loss provably exceeds the claim."""
        return self.table[self.table["violation"]]

    @property
    def failed(self) -> bool:
        """A violation, a goodness-of-fit failure or a law that differs from the reference."""
        gof_bad = self.goodness_of_fit is not None and not bool(
            self.goodness_of_fit["passed"].all()
        )
        law_bad = self.law is not None and self.law.outcome == "FAIL"
        return bool(self.table["violation"].any()) or gof_bad or law_bad

    @property
    def outcome(self) -> str:
        """``"FAIL"`` (a violation, goodness-of-fit failure or law difference),
        ``"INCONCLUSIVE"`` (fewer than ``min_tested`` of the pairs, or none, could be tested:
        their claims are beyond what the samples can show and no exact loss decides them) or
        ``"PASS"`` (enough pairs tested, nothing found). A pair whose claim is infinite (the
        mechanism protects nothing there: CusText across output sets, SanText+ with a
        non-sensitive word) claims nothing to test and never counts as tested."""
        if self.failed:
            return "FAIL"
        tested = int((self.table["tested"] & np.isfinite(self.table["claimed"])).sum())
        if tested == 0 or tested < self.min_tested * len(self.table):
            return "INCONCLUSIVE"
        return "PASS"

    @property
    def passed(self) -> bool:
        """The outcome is PASS: pairs were tested and nothing was found."""
        return self.outcome == "PASS"

    @property
    def exit_code(self) -> int:
        """Exit status of ``densitydp audit`` for this outcome: 0 PASS, 1 FAIL,
        3 INCONCLUSIVE."""
        return OUTCOMES[self.outcome]

    def samples_needed(self, k: int = 5) -> pd.DataFrame:
        """Samples per word that would make the ``k`` smallest untested claims testable (at the
        same per-interval error, that is, the same number of pairs and confidence): one row per
        pair, smallest claim first, ``n_samples`` ``inf`` for a claim no sample size can reach
        (its additive ``delta`` is too large).

        With ``n`` confirmation draws the largest demonstrable loss is
        ``ln((q - delta) / (1 - q))``, ``q = alpha^(1/n)``; it exceeds ``c`` once
        ``n > ln(alpha) / ln(s)``, ``s = (e^c + delta) / (1 + e^c)``.
        """
        table = self.table
        untested = table[~table["tested"] & np.isfinite(table["claimed"])]
        untested = untested.sort_values("claimed", kind="stable")
        rows = []
        for row in untested.head(check_int(k, "k", minimum=1)).itertuples():
            rows.append(
                {
                    "word": row.word,
                    "other": row.other,
                    "claimed": row.claimed,
                    "n_samples": samples_to_test(row.claimed, row.delta, self.loss_alpha),
                }
            )
        import pandas as pd

        return pd.DataFrame(rows, columns=["word", "other", "claimed", "n_samples"])

    def summary(self) -> dict[str, Any]:
        """Worst ratio ``eps_lower / claimed`` among testable pairs, testable and violating
        counts, exact-loss and goodness-of-fit results."""
        table = self.table
        testable = table[table["testable"]]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = (testable["eps_lower"] / testable["claimed"]).to_numpy()
        result: dict[str, Any] = {
            "outcome": self.outcome,
            "passed": self.passed,
            "pairs": len(table),
            "tested_pairs": int((table["tested"] & np.isfinite(table["claimed"])).sum()),
            "testable_pairs": len(testable),
            "violations": int(table["violation"].sum()),
            "worst_ratio_eps_lower_to_claimed": float(np.nanmax(ratios)) if ratios.size else None,
            "confidence": self.confidence,
            "correction": self.correction,
        }
        if "exact_loss" in table:
            with np.errstate(divide="ignore", invalid="ignore"):
                exact_ratio = (table["exact_loss"] / table["claimed"]).to_numpy()
            exact_ratio = exact_ratio[np.isfinite(table["claimed"].to_numpy())]
            if exact_ratio.size and not np.isnan(exact_ratio).all():
                result["worst_ratio_exact_loss_to_claimed"] = float(np.nanmax(exact_ratio))
            result["exact_lower_bounds"] = int((table["exact_kind"] == "lower bound").sum())
        if self.goodness_of_fit is not None:
            result["goodness_of_fit_failures"] = int((~self.goodness_of_fit["passed"]).sum())
        if self.law is not None:
            result["law"] = self.law.summary()
        return result

    def verdict(self) -> str:
        """One line: PASS, FAIL or INCONCLUSIVE with the numbers behind it."""
        s = self.summary()
        worst = s["worst_ratio_eps_lower_to_claimed"]
        worst_text = "n/a" if worst is None else f"{worst:.3g}"
        text = (
            f"{s['outcome']}: {s['violations']} violation(s) among {s['pairs']} pairs, "
            f"{s['tested_pairs']} tested ({s['testable_pairs']} testable by sampling at "
            f"{self.n_samples:,} samples per word); worst eps_lower / claimed {worst_text}"
        )
        if "worst_ratio_exact_loss_to_claimed" in s:
            text += f"; worst exact loss / claimed {s['worst_ratio_exact_loss_to_claimed']:.3g}"
            if s["exact_lower_bounds"]:
                text += f" ({s['exact_lower_bounds']} certified from below)"
        if "goodness_of_fit_failures" in s:
            text += f"; goodness-of-fit failures {s['goodness_of_fit_failures']}"
        if self.law is not None:
            law = s["law"]
            text += (
                f"; law vs reference {law['outcome']}: {law['rejected']} of {law['words']} words "
                f"differ, {law['tested']} tested (TV <= {law['max_tv_upper']:.3g})"
            )
        unprotected = int(np.isinf(self.table["claimed"]).sum())
        if unprotected:
            text += f"; {unprotected} pair(s) with no claim at all (claimed loss inf)"
        if s["outcome"] == "INCONCLUSIVE":
            text += "; " + self._what_would_test()
        return text + f" ({self.confidence:g} confidence, {self.correction})"

    def _what_would_test(self, k: int = 5) -> str:
        needed = self.samples_needed(k)
        if needed.empty:
            return f"fewer than {self.min_tested:.0%} of the pairs tested"
        largest = float(needed["n_samples"].max())
        shown = "no sample size" if math.isinf(largest) else f"{_count(largest)} samples per word"
        return (
            f"need {self.min_tested:.0%} of the pairs tested: {shown} would make the "
            f"{len(needed)} smallest untested claim(s) testable"
        )

    def __repr__(self) -> str:
        return f"AuditReport({self.mechanism}; {self.verdict()})"

    def plot(self, path: str | os.PathLike[str] | None = None, *, ax: Any = None) -> Any:
        """``eps_lower / distance`` (and the exact loss / distance, when known) against the pair
        distance, with the claimed epsilon drawn, on ``ax`` (a matplotlib Axes; default a new
        figure); the figure is saved atomically to ``path`` when given. Returns the figure."""
        from .._io import axes_and_figure

        table = self.table
        figure, axes = axes_and_figure(ax, figsize=(6.5, 4))
        distance = table["distance"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            claimed_rate = table["claimed"].to_numpy() / distance
            lower_rate = table["eps_lower"].to_numpy() / distance
        axes.plot(distance, claimed_rate, "k_", markersize=12, label="claimed / d")
        testable = table["testable"].to_numpy()
        axes.scatter(distance[testable], lower_rate[testable], s=14, label="eps_lower / d")
        if (~testable).any():
            axes.scatter(
                distance[~testable], lower_rate[~testable], s=14, marker="x", color="grey",
                label="eps_lower / d (untestable)",
            )  # fmt: skip
        if "exact_loss" in table:
            with np.errstate(divide="ignore", invalid="ignore"):
                exact_rate = table["exact_loss"].to_numpy() / distance
            axes.scatter(distance, exact_rate, s=10, marker="^", label="exact loss / d")
        violating = table["violation"].to_numpy()
        if violating.any():
            axes.scatter(
                distance[violating], lower_rate[violating], s=60, facecolors="none",
                edgecolors="red", label="violation",
            )  # fmt: skip
        axes.set_xlabel("distance d(w, w')")
        axes.set_ylabel("privacy loss / distance")
        axes.set_title(self.mechanism, fontsize=8)
        axes.legend(fontsize=8)
        if ax is None:
            figure.tight_layout()
        if path is not None:
            save_figure(figure, path)
        return figure

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (``inf`` as the string ``"inf"``)."""
        return _json_ready(
            {
                "mechanism": self.mechanism,
                "outcome": self.outcome,
                "privacy_bound": self.bound,
                "confidence": self.confidence,
                "correction": self.correction,
                "n_samples": self.n_samples,
                "pairs": self.pair_strategy,
                "seed": self.seed,
                "seconds": self.seconds,
                "versions": self.versions,
                "min_tested": self.min_tested,
                "loss_alpha": self.loss_alpha,
                "notes": self.notes,
                "summary": self.summary(),
                "verdict": self.verdict(),
                "table": self.table.to_dict(orient="records"),
                "goodness_of_fit": None
                if self.goodness_of_fit is None
                else self.goodness_of_fit.to_dict(orient="records"),
                "law": None if self.law is None else self.law.to_dict(),
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditReport:
        """The report :meth:`to_dict` wrote (infinities and NaNs restored)."""
        try:
            gof = data["goodness_of_fit"]
            law = data.get("law")
            return cls(
                mechanism=data["mechanism"],
                bound=data["privacy_bound"],
                confidence=float(data["confidence"]),
                correction=data["correction"],
                n_samples=int(data["n_samples"]),
                pair_strategy=data["pairs"],
                seed=data["seed"],
                table=_table_from_records(data["table"]),
                goodness_of_fit=None if gof is None else _table_from_records(gof),
                seconds=float(data["seconds"]),
                versions=dict(data.get("versions", {})),
                law=None if law is None else LawComparison.from_dict(law),
                min_tested=float(data.get("min_tested", MIN_TESTED)),
                loss_alpha=float(data.get("loss_alpha", 0.0)),
                notes=list(data.get("notes", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"not an audit report written by AuditReport.to_dict: {exc!r}"
            ) from None

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> AuditReport:
        """Read a report written by :meth:`to_json` (``densitydp audit --json``).

        Raises
        ------
        ValueError
            The file is not JSON, or not an audit report.
        """
        with open(path, encoding="utf-8") as stream:
            try:
                data = json.load(stream)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{os.fspath(path)!r} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{os.fspath(path)!r} is not an audit report (not a JSON object).")
        return cls.from_dict(data)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        with atomic_write(path, "w", encoding="utf-8") as stream:
            json.dump(self.to_dict(), stream, indent=1, allow_nan=False)
            stream.write("\n")


#: Columns that JSON holds as "inf" / "-inf" strings or null.
_FLOAT_COLUMNS = (
    "distance", "claimed", "delta", "eps_hat", "eps_lower", "exact_loss", "p_value",
    "p_adjusted", "statistic", "tv_hat", "tv_lower", "tv_upper", "n_for_power",
)  # fmt: skip


def _table_from_records(records: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    table = pd.DataFrame(records)
    for column in _FLOAT_COLUMNS:
        if column in table:
            table[column] = table[column].map(_number).astype(np.float64)
    return table


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        return {"inf": math.inf, "-inf": -math.inf}[value]
    return float(value)


def samples_to_test(claimed: float, delta: float, alpha: float) -> float:
    """Samples per word (both halves) with which a claim of ``claimed`` nats (additive
    ``delta``) becomes testable at the per-interval error ``alpha``; ``inf`` when none can."""
    if not (alpha > 0.0) or math.isinf(claimed):
        return math.inf
    # ln s = ln((e^c + delta) / (1 + e^c)) = log1p(delta e^-c) - log1p(e^-c), stably
    log_s = math.log1p(delta * math.exp(-claimed)) - math.log1p(math.exp(-claimed))
    if log_s >= 0.0:
        return math.inf
    n_half = math.floor(math.log(alpha) / log_s) + 1
    while max_demonstrable_loss(n_half, alpha, delta) <= claimed and n_half < 2**62:
        n_half = max(n_half + 1, math.ceil(n_half * 1.0001))  # rounding at the boundary
    return float(2 * n_half)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return number
    return value


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("densitydp", "numpy", "scipy", "numba", "pandas"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            found[package] = "unknown"
    return found


def audit(
    mechanism: Any,
    pairs: str | Any = "nearest",
    n_pairs: int = 50,
    n_samples: int = 200_000,
    confidence: float = 0.95,
    rng: RNGLike = None,
    *,
    space: Any = None,
    claim: Any = None,
    interface: str | None = None,
    reference: Any = None,
    min_tested: float = MIN_TESTED,
    frequent: int = FREQUENT,
    progress: bool | None = None,
    _map_calls: MapCalls | None = None,
) -> AuditReport:
    """Audit ``mechanism`` empirically against the loss it claims, pair by pair.

    ``mechanism`` is anything :func:`densitydp.as_mechanism` accepts: one of ours, any object
    with ``space``, ``sample(word_ids, rng)`` and ``privacy_loss_bound(word_id, other_id)`` (no
    subclassing), or a plain function ``fn(word_ids, rng)`` / ``fn(words)`` with ``space=`` and
    ``claim=`` (a :class:`~densitydp.PrivacyBound`, or a function of a pair).

    For each pair ``(w, w')`` (see :func:`densitydp.audit.choose_pairs` for ``pairs``), draw
    ``n_samples`` outputs of each word through ``mechanism.sample``; choose the most revealing
    single output (``M = y``, the word itself among them) on the first half of the draws and
    bound its loss from below on the second half with Clopper–Pearson intervals
    (:func:`densitydp.audit.monte_carlo_loss`). A pair is a **violation** when the lower bound
    exceeds the claimed ``privacy_loss_bound(w, w')`` (with the claimed additive
    ``privacy_delta_bound``, if any, subtracted first), or, for exact mechanisms, when the exact
    loss (or its certified lower bound) does.

    Multiplicity: Bonferroni. The total error ``1 - confidence`` is split over every pair and
    the two intervals of each (for exact mechanisms, half of it goes to the goodness-of-fit
    tests, which are Bonferroni-corrected over the words; with a ``reference``, half of it to
    the law test first), so a correct mechanism is flagged with probability at most
    ``1 - confidence``.

    Outcome (:attr:`AuditReport.outcome`): **FAIL** on a violation, a goodness-of-fit failure
    or a law that differs from the reference's; else **INCONCLUSIVE** when fewer than
    ``min_tested`` of the pairs (or none) were tested, a pair being tested when its exact loss
    is known or its claim is within reach of ``n_samples`` (even if every draw of one word hit
    the event and none of the other's); else **PASS**.
    :meth:`AuditReport.samples_needed` says what sample size would make the smallest untested
    claims testable.

    Exact mechanisms also get the exact loss of every pair and a Pearson chi-square test of
    sampled frequencies against the exact distribution for up to 20 of the words (a check the
    exact loss cannot make: it catches a sampler that does not follow the stated distribution).
    With ``reference`` (a mechanism that should sample the same law), the audited mechanism's
    draws are also tested against the reference's law on the words of the pairs
    (:func:`densitydp.compare_laws`), in the same report.

    What it proves and does not: a violation is a statistical proof (at ``confidence``) that the
    implementation breaks its claim on that pair. Passing proves nothing in general: only the
    chosen pairs and single-output events are examined, and large claimed losses cannot be
    reached by any feasible number of samples.

    Raises
    ------
    TypeError
        ``mechanism`` lacks a member the audit needs (named in the message), or a function is
        given without ``space`` / ``claim``.
    ValueError
        A parameter is out of range; or the audited mechanism returned something invalid
        (wrong shape, ids outside the space, a distribution that does not sum to 1).
    RuntimeError
        The audited mechanism raised (the message carries its exception).
    """
    mechanism = checked_mechanism(
        mechanism, space=space, claim=claim, interface=interface, needs_claim=True
    )
    if reference is not None:
        from .laws import _same_vocabulary

        reference = checked_mechanism(reference)
        _same_vocabulary(mechanism, reference)
    confidence = check_open_unit(confidence, "confidence")
    n_samples = check_int(n_samples, "n_samples", minimum=2, maximum=MAX_SAMPLES)
    min_tested = float(min_tested)
    if not (0.0 <= min_tested <= 1.0):
        raise ValueError(f"`min_tested` must be in [0, 1]; got {min_tested!r}.")
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    started = time.perf_counter()
    space = mechanism.space
    pair_ids = choose_pairs(space, pairs, n_pairs, frequent=frequent, rng=generator)
    words, inverse = np.unique(pair_ids, return_inverse=True)
    inverse = inverse.reshape(pair_ids.shape)
    first, second = sample_counts(
        mechanism, words, n_samples, generator, progress=progress, map_calls=_map_calls
    )
    if mechanism.exact:  # one task per pair (on a cluster: spread over its workers)
        run = _map_calls if _map_calls is not None else _map_here
        exact_losses = list(run(_exact_loss, mechanism, [tuple(map(int, p)) for p in pair_ids]))
    n_half = n_samples // 2
    total_alpha = 1.0 - confidence
    law_alpha = total_alpha / 2.0 if reference is not None else 0.0
    rest = total_alpha - law_alpha
    gof_alpha = rest / 2.0 if mechanism.exact else 0.0
    alpha = (rest - gof_alpha) / (2.0 * len(pair_ids))  # Bonferroni: pairs x two intervals
    rows = []
    for p, (word, other) in enumerate(pair_ids):
        a, b = inverse[p]
        claimed = float(mechanism.privacy_loss_bound(word, other))
        delta = float(mechanism.privacy_delta_bound(word, other))
        estimate = monte_carlo_loss(
            int(word),
            int(other),
            (first[a], first[b]),
            (second[a], second[b]),
            n_half,
            alpha,
            claimed,
            delta,
        )
        source = int(word) if estimate.direction == 1 else int(other)
        row = {
            "word": space.words(int(word)),
            "other": space.words(int(other)),
            "word_id": int(word),
            "other_id": int(other),
            "distance": float(space.distance(int(word), int(other))),
            "claimed": claimed,
            "delta": delta,
            "eps_hat": estimate.eps_hat,
            "eps_lower": estimate.eps_lower,
            "event": f"M({space.words(source)}) = {output_words(mechanism, estimate.event)}",
            "event_id": estimate.event,
            "hits": estimate.hits,
            "other_hits": estimate.other_hits,
            "n": n_half,
            "testable": estimate.testable,
            "tested": estimate.testable,
            "violation": estimate.violation,
        }
        if mechanism.exact:
            exact = exact_losses[p]
            row["exact_loss"] = exact.loss
            row["exact_output"] = exact.output
            row["exact_kind"] = "lower bound" if exact.lower_bound else "exact"
            row["unresolved"] = exact.unresolved
            row["tested"] = bool(row["tested"] or not exact.lower_bound or exact.violation)
            row["violation"] = bool(row["violation"] or exact.violation)
        rows.append(row)
    import pandas as pd

    table = pd.DataFrame(rows)
    gof = _goodness_of_fit(mechanism, words, first, second, gof_alpha, n_half)
    law = None
    if reference is not None:
        law_started = time.perf_counter()
        law = LawComparison(
            candidate=repr(mechanism),
            reference=repr(reference),
            alpha=law_alpha,
            correction="holm",
            n_samples=2 * n_half,
            tv=LAW_TV,
            seed=seed,
            table=law_table(
                mechanism, reference, words, first, second, law_alpha, LAW_TV,
                generator.spawn(1)[0], progress, _map_calls,
            ),
            seconds=0.0,
        )  # fmt: skip
        law.seconds = time.perf_counter() - law_started
    notes = []
    if not getattr(mechanism, "reproducible", True):
        notes.append(
            "the mechanism uses its own randomness: the seed chooses the pairs but does not "
            "reproduce its draws"
        )
    return AuditReport(
        mechanism=repr(mechanism),
        bound=_claim_text(mechanism),
        confidence=confidence,
        correction="bonferroni",
        n_samples=n_samples,
        pair_strategy=pairs if isinstance(pairs, str) else "explicit",
        seed=seed,
        table=table,
        goodness_of_fit=gof,
        seconds=time.perf_counter() - started,
        versions=_versions(),
        law=law,
        min_tested=min_tested,
        loss_alpha=alpha,
        notes=notes,
    )


def _exact_loss(mechanism: Mechanism, pair: tuple[int, int]) -> ExactLoss:
    return exact_privacy_loss(mechanism, pair[0], pair[1])


#: Total-variation distance for which an audit's law test reports the sample size it needs.
LAW_TV = 0.01


def _claim_text(mechanism: Mechanism) -> str:
    try:
        return str(mechanism.privacy_bound())
    except NotImplementedError:
        return f"privacy_loss_bound(w, w') of {mechanism!r} (stated pair by pair)"


def _goodness_of_fit(
    mechanism: Mechanism,
    words: np.ndarray,
    first: list[tuple[np.ndarray, np.ndarray]],
    second: list[tuple[np.ndarray, np.ndarray]],
    alpha: float,
    n_half: int,
) -> pd.DataFrame | None:
    """Pearson chi-square test of each word's sampled frequencies (both halves) against its
    exact distribution, Bonferroni over at most :data:`GOF_WORDS` words."""
    if not mechanism.exact or alpha <= 0:
        return None
    import pandas as pd

    from ..testing import _goodness_of_fit as g_test
    from .sampling import _merge

    checked = min(len(words), GOF_WORDS)
    rows = []
    for i in range(checked):
        ids, counts = _merge([first[i], second[i]])
        support, probabilities = mechanism.output_distribution(int(words[i]))
        dense = np.zeros(len(mechanism.space), dtype=np.int64)
        dense[ids] = counts
        outside = int(counts.sum() - dense[support].sum())
        p_value, bins, _ = g_test(dense[support], probabilities, 2 * n_half)
        rows.append(
            {
                "word": mechanism.space.words(int(words[i])),
                "word_id": int(words[i]),
                "p_value": p_value,
                "bins": bins,
                "outside": outside,
                "passed": outside == 0 and p_value >= alpha / checked,
            }
        )
    return pd.DataFrame(rows)
