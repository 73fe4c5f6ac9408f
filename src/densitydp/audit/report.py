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
from .estimators import exact_privacy_loss, monte_carlo_loss
from .sampling import FREQUENT, choose_pairs, sample_counts

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AuditReport", "audit"]

#: Largest number of distinct words whose sampled frequencies are checked against the exact
#: distribution (a chi-square test each).
GOF_WORDS = 20


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
        ``claimed`` at all), ``violation``; for exact mechanisms also ``exact_loss`` and
        ``exact_output``.
    goodness_of_fit : pandas.DataFrame or None
        Exact mechanisms: Pearson chi-square test of each word's sampled frequencies against
        its exact distribution (``word``, ``p_value``, ``bins``, ``outside``, ``passed``).
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

    @property
    def violations(self) -> pd.DataFrame:
        """The pairs whose loss provably exceeds the claim."""
        return self.table[self.table["violation"]]

    @property
    def passed(self) -> bool:
        """No violation and (exact mechanisms) no goodness-of-fit failure."""
        gof_ok = self.goodness_of_fit is None or bool(self.goodness_of_fit["passed"].all())
        return not bool(self.table["violation"].any()) and gof_ok

    def summary(self) -> dict[str, Any]:
        """Worst ratio ``eps_lower / claimed`` among testable pairs, testable and violating
        counts, exact-loss and goodness-of-fit results."""
        table = self.table
        testable = table[table["testable"]]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = (testable["eps_lower"] / testable["claimed"]).to_numpy()
        result: dict[str, Any] = {
            "passed": self.passed,
            "pairs": len(table),
            "testable_pairs": len(testable),
            "violations": int(table["violation"].sum()),
            "worst_ratio_eps_lower_to_claimed": float(np.nanmax(ratios)) if ratios.size else None,
            "confidence": self.confidence,
            "correction": self.correction,
        }
        if "exact_loss" in table:
            with np.errstate(divide="ignore", invalid="ignore"):
                exact_ratio = (table["exact_loss"] / table["claimed"]).to_numpy()
            result["worst_ratio_exact_loss_to_claimed"] = float(np.nanmax(exact_ratio))
        if self.goodness_of_fit is not None:
            result["goodness_of_fit_failures"] = int((~self.goodness_of_fit["passed"]).sum())
        return result

    def verdict(self) -> str:
        """One line: PASS or FAIL with the numbers behind it."""
        s = self.summary()
        worst = s["worst_ratio_eps_lower_to_claimed"]
        worst_text = "n/a" if worst is None else f"{worst:.3g}"
        head = "PASS" if s["passed"] else "FAIL"
        text = (
            f"{head}: {s['violations']} violation(s) among {s['pairs']} pairs "
            f"({s['testable_pairs']} testable at {self.n_samples:,} samples per word); "
            f"worst eps_lower / claimed {worst_text}"
        )
        if "worst_ratio_exact_loss_to_claimed" in s:
            text += f"; worst exact loss / claimed {s['worst_ratio_exact_loss_to_claimed']:.3g}"
        if "goodness_of_fit_failures" in s:
            text += f"; goodness-of-fit failures {s['goodness_of_fit_failures']}"
        return text + f" ({self.confidence:g} confidence, {self.correction})"

    def __repr__(self) -> str:
        return f"AuditReport({self.mechanism}; {self.verdict()})"

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """``eps_lower / distance`` (and the exact loss / distance, when known) against the pair
        distance, with the claimed epsilon drawn; saved atomically to ``path`` when given.
        Returns the matplotlib figure."""
        import matplotlib.pyplot as plt

        table = self.table
        figure, axes = plt.subplots(figsize=(6.5, 4))
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
        figure.tight_layout()
        if path is not None:
            save_figure(figure, path)
        return figure

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (``inf`` as the string ``"inf"``)."""
        return _json_ready(
            {
                "mechanism": self.mechanism,
                "privacy_bound": self.bound,
                "confidence": self.confidence,
                "correction": self.correction,
                "n_samples": self.n_samples,
                "pairs": self.pair_strategy,
                "seed": self.seed,
                "seconds": self.seconds,
                "versions": self.versions,
                "summary": self.summary(),
                "verdict": self.verdict(),
                "table": self.table.to_dict(orient="records"),
                "goodness_of_fit": None
                if self.goodness_of_fit is None
                else self.goodness_of_fit.to_dict(orient="records"),
            }
        )

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        with atomic_write(path, "w", encoding="utf-8") as stream:
            json.dump(self.to_dict(), stream, indent=1, allow_nan=False)
            stream.write("\n")


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
    mechanism: Mechanism,
    pairs: str | Any = "nearest",
    n_pairs: int = 50,
    n_samples: int = 200_000,
    confidence: float = 0.95,
    rng: RNGLike = None,
    *,
    frequent: int = FREQUENT,
    progress: bool | None = None,
) -> AuditReport:
    """Audit ``mechanism`` empirically against the loss it claims, pair by pair.

    For each pair ``(w, w')`` (see :func:`densitydp.audit.choose_pairs` for ``pairs``), draw
    ``n_samples`` outputs of each word through ``mechanism.sample``; choose the most revealing
    single output (``M = y``, the word itself among them) on the first half of the draws and
    bound its loss from below on the second half with Clopper–Pearson intervals
    (:func:`densitydp.audit.monte_carlo_loss`). A pair is a **violation** when the lower bound
    exceeds the claimed ``privacy_loss_bound(w, w')`` (with the claimed additive
    ``privacy_delta_bound``, if any, subtracted first), or, for exact mechanisms, when the exact
    loss does.

    Multiplicity: Bonferroni. The total error ``1 - confidence`` is split over every pair and
    the two intervals of each (for exact mechanisms, half of it goes to the goodness-of-fit
    tests, which are Bonferroni-corrected over the words), so a correct mechanism is flagged
    with probability at most ``1 - confidence``. A pair whose claim is too large for
    ``n_samples`` to show (even if every draw of one word hit the event and none of the
    other's) is reported as untestable, not as passed evidence.

    Exact mechanisms also get the exact loss of every pair and a Pearson chi-square test of
    sampled frequencies against the exact distribution for up to 20 of the words (a check the
    exact loss cannot make: it catches a sampler that does not follow the stated distribution).

    What it proves and does not: a violation is a statistical proof (at ``confidence``) that the
    implementation breaks its claim on that pair. Passing proves nothing in general: only the
    chosen pairs and single-output events are examined, and large claimed losses cannot be
    reached by any feasible number of samples.
    """
    if not isinstance(mechanism, Mechanism):
        raise TypeError(f"`mechanism` must be a Mechanism; got {type(mechanism).__name__}.")
    confidence = check_open_unit(confidence, "confidence")
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    generator = as_generator(rng)
    seed = seed_entropy(generator)
    started = time.perf_counter()
    space = mechanism.space
    pair_ids = choose_pairs(space, pairs, n_pairs, frequent=frequent, rng=generator)
    words, inverse = np.unique(pair_ids, return_inverse=True)
    inverse = inverse.reshape(pair_ids.shape)
    first, second = sample_counts(mechanism, words, n_samples, generator, progress=progress)
    n_half = n_samples // 2
    total_alpha = 1.0 - confidence
    loss_alpha = total_alpha / 2.0 if mechanism.exact else total_alpha
    alpha = loss_alpha / (2.0 * len(pair_ids))  # Bonferroni: pairs x two intervals
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
            "event": f"M({space.words(source)}) = {space.words(estimate.event)}",
            "event_id": estimate.event,
            "hits": estimate.hits,
            "other_hits": estimate.other_hits,
            "n": n_half,
            "testable": estimate.testable,
            "violation": estimate.violation,
        }
        if mechanism.exact:
            exact = exact_privacy_loss(mechanism, int(word), int(other))
            row["exact_loss"] = exact.loss
            row["exact_output"] = exact.output
            row["unresolved"] = exact.unresolved
            row["violation"] = bool(row["violation"] or exact.violation)
        rows.append(row)
    import pandas as pd

    table = pd.DataFrame(rows)
    gof = _goodness_of_fit(mechanism, words, first, second, total_alpha / 2.0, n_half)
    return AuditReport(
        mechanism=repr(mechanism),
        bound=str(mechanism.privacy_bound()),
        confidence=confidence,
        correction="bonferroni",
        n_samples=n_samples,
        pair_strategy=pairs if isinstance(pairs, str) else "explicit",
        seed=seed,
        table=table,
        goodness_of_fit=gof,
        seconds=time.perf_counter() - started,
        versions=_versions(),
    )


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
    if not mechanism.exact:
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
        p_value, bins = g_test(dense[support], probabilities, 2 * n_half)
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
