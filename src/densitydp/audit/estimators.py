"""Privacy-loss estimators: exact losses of exact mechanisms, and Monte Carlo lower bounds with
Clopper–Pearson confidence for any mechanism.

For a pair of words ``(w, w')`` and an output ``y`` the loss is
``ln P(M(w) = y) - ln P(M(w') = y)``. The exact loss is its maximum over outputs (in both
directions); the Monte Carlo estimator chooses the most revealing output on one half of the
samples and bounds its loss from below on the other half, so the choice does not inflate the
bound (DP-Sniper, Bichsel et al. 2021; Jagielski et al. 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_open_unit
from .blackbox import checked_mechanism

__all__ = [
    "ExactLoss",
    "MonteCarloLoss",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "exact_privacy_loss",
    "max_demonstrable_loss",
    "monte_carlo_loss",
]


def clopper_pearson_lower(successes: Any, trials: Any, alpha: float) -> np.ndarray:
    """One-sided Clopper–Pearson lower bound: ``P(p >= bound) >= 1 - alpha``."""
    from scipy import stats

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(alpha, k, n - k + 1.0)
    return np.where(k <= 0, 0.0, bound)


def clopper_pearson_upper(successes: Any, trials: Any, alpha: float) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound: ``P(p <= bound) >= 1 - alpha``."""
    from scipy import stats

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = stats.beta.ppf(1.0 - alpha, k + 1.0, n - k)
    return np.where(k >= n, 1.0, bound)


def _loss_lower_bound(
    hits: Any, other_hits: Any, trials: int, alpha: float, delta: Any = 0.0
) -> np.ndarray:
    """``ln((p_lower - delta) / p_upper)`` from the two one-sided bounds (each at ``alpha``), or
    0 when nothing is shown (``p_lower <= delta``)."""
    lower = clopper_pearson_lower(hits, trials, alpha) - np.asarray(delta)
    upper = clopper_pearson_upper(other_hits, trials, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.log(np.maximum(lower, 0.0) / upper)
    return np.where(lower > 0, np.maximum(value, 0.0), 0.0)


def max_demonstrable_loss(trials: int, alpha: float, delta: float = 0.0) -> float:
    """The largest lower bound ``trials`` samples per word can ever give (every sample of one
    word hits the event, none of the other's): claims at or above it are untestable."""
    return float(_loss_lower_bound(trials, 0, trials, alpha, delta))


@dataclass(frozen=True)
class ExactLoss:
    """Result of :func:`exact_privacy_loss`."""

    word_id: int
    other_id: int
    loss: float
    output: int
    claimed: float
    unresolved: int
    lower_bound: bool = False

    @property
    def violation(self) -> bool:
        """Loss (or its certified lower bound) above the claim (beyond 1e-9 relative, for
        rounding)."""
        return self.loss > self.claimed * (1.0 + 1e-9) + 1e-12


def exact_privacy_loss(
    mechanism: Any, word_id: int | str, other_id: int | str, *, claim: Any = None
) -> ExactLoss:
    """``max_y |ln P(y | w) - ln P(y | w')|`` from the exact output distributions, its arg-max
    output and the claimed ``privacy_loss_bound(w, w')``.

    ``mechanism`` is any object stating its exact law (:class:`densitydp.ExactMechanismProtocol`:
    ``space``, ``sample``, ``output_distribution(word_id)``, and ``privacy_loss_bound`` or
    ``claim=``). Outputs below probability 1e-12 under both words are skipped (no relative
    precision). For a law that leaves out a tail of mass at most ``omitted_mass`` (the
    truncated Gumbel: 1e-15), an output present under one word and left out under the other
    has a loss of at least ``ln(p / omitted_mass)``: the result is then a certified lower bound
    (``lower_bound=True``; ``unresolved`` counts those outputs), never an understatement
    presented as exact.

    Raises
    ------
    TypeError
        ``mechanism`` states no exact law or no claim (the message names the missing member).
    """
    from ..testing import exact_loss

    mechanism = checked_mechanism(mechanism, claim=claim, needs_claim=True, needs_law=True)
    space = mechanism.space
    word = mechanism._check_word(space.ids(word_id) if isinstance(word_id, str) else word_id)
    other = mechanism._check_word(
        space.ids(other_id) if isinstance(other_id, str) else other_id, "other_id"
    )
    loss, output, unresolved, lower = exact_loss(mechanism, word, other)
    claimed = float(mechanism.privacy_loss_bound(word, other))
    return ExactLoss(word, other, loss, output, claimed, unresolved, lower)


@dataclass(frozen=True)
class MonteCarloLoss:
    """Result of :func:`monte_carlo_loss` for one pair.

    ``event`` is the output ``y`` of the event ``M(.) = y``; ``direction`` +1 bounds
    ``ln P(y | w) / P(y | w')``, -1 the reverse. Counts are of the confirmation half
    (``n_confirm`` samples per word); ``eps_hat`` is the plug-in estimate there (inf when the
    denominator's count is 0) and ``eps_lower`` the lower bound at the stated ``alpha`` per
    interval.
    """

    word_id: int
    other_id: int
    event: int
    direction: int
    hits: int
    other_hits: int
    n_confirm: int
    eps_hat: float
    eps_lower: float
    claimed: float
    delta: float
    alpha: float
    testable: bool

    @property
    def violation(self) -> bool:
        return self.eps_lower > self.claimed


def _lookup(ids: np.ndarray, counts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Counts of ``wanted`` ids in the sorted sparse table ``(ids, counts)`` (0 when absent)."""
    if len(ids) == 0:
        return np.zeros(len(wanted), dtype=np.int64)
    position = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return np.where(ids[position] == wanted, counts[position], 0)


def monte_carlo_loss(
    word_id: int,
    other_id: int,
    selection: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    confirmation: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    n_half: int,
    alpha: float,
    claimed: float,
    delta: float = 0.0,
) -> MonteCarloLoss:
    """Lower-bound the privacy loss of one pair from sampled outputs.

    ``selection`` and ``confirmation`` each hold the sparse output counts ``(ids, counts)`` of
    ``n_half`` samples of ``w`` and of ``w'``, drawn independently. On the selection half every
    single output ``y`` observed (``M = w`` among them) is scored in both directions by the
    lower bound it would give; the best is then bounded on the confirmation half:
    ``eps_lower = ln((p_lower(y | a) - delta) / p_upper(y | b))`` with one-sided Clopper–Pearson
    bounds at ``alpha`` each (so the pair's statement holds with probability ``>= 1 - 2 alpha``).
    """
    alpha = check_open_unit(alpha, "alpha")
    (sel_a, sel_b), (conf_a, conf_b) = selection, confirmation
    best = (-1.0, word_id, 1)
    for direction, (mine, theirs) in ((1, (sel_a, sel_b)), (-1, (sel_b, sel_a))):
        outputs = mine[0]
        if len(outputs) == 0:
            continue
        counts = mine[1]
        other_counts = _lookup(theirs[0], theirs[1], outputs)
        scores = _loss_lower_bound(counts, other_counts, n_half, alpha, delta)
        # ties: prefer the larger plug-in ratio, then the smaller id (deterministic)
        order = np.lexsort((outputs, -(counts + 1.0) / (other_counts + 1.0), -scores))
        top = int(order[0])
        if scores[top] > best[0]:
            best = (float(scores[top]), int(outputs[top]), direction)
    _, event, direction = best
    ours, theirs = (conf_a, conf_b) if direction == 1 else (conf_b, conf_a)
    wanted = np.array([event])
    hits = int(_lookup(ours[0], ours[1], wanted)[0])
    other_hits = int(_lookup(theirs[0], theirs[1], wanted)[0])
    eps_lower = float(_loss_lower_bound(hits, other_hits, n_half, alpha, delta))
    if hits == 0:
        eps_hat = 0.0 if other_hits == 0 else -math.inf
    elif other_hits == 0:
        eps_hat = math.inf
    else:
        eps_hat = math.log(hits / other_hits)
    return MonteCarloLoss(
        word_id=word_id,
        other_id=other_id,
        event=event,
        direction=direction,
        hits=hits,
        other_hits=other_hits,
        n_confirm=n_half,
        eps_hat=eps_hat,
        eps_lower=eps_lower,
        claimed=claimed,
        delta=delta,
        alpha=alpha,
        testable=max_demonstrable_loss(n_half, alpha, delta) > claimed,
    )
