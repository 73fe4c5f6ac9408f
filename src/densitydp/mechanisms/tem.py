"""TEM, the truncated exponential mechanism (Carvalho, Vasiloudis, Feyisetan 2021)."""

from __future__ import annotations

import math
from typing import Any

from .._validation import check_epsilon, check_open_unit
from ..embeddings import EmbeddingSpace
from .base import IDEAL_ARITHMETIC, PrivacyBound
from .exponential import ExponentialMechanism

__all__ = ["TruncatedExponential"]


class TruncatedExponential(ExponentialMechanism):
    """TEM: exponential mechanism inside a radius, a bottom element and a uniform fallback.

    With ``gamma = (2 / epsilon) ln((1 - beta)(n - 1) / beta)`` and
    ``L_w = {w' : d(w, w') <= gamma}``, every ``w'`` in ``L_w`` scores ``-d(w, w')`` and a bottom
    element scores ``-gamma + (2 / epsilon) ln |W \\ L_w|``; Gumbel(0, 2 / epsilon) noise is
    added to every score and the argmax wins; if the bottom element wins, a uniformly random word
    of ``W \\ L_w`` is returned. Equivalently ``P(w' | w) ~ exp(-epsilon min(d, gamma) / 2)``,
    which is how it is sampled (exactly, by inverse CDF) and how :meth:`output_distribution` is
    computed.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter, > 0.
    beta : float
        In (0, 1): the probability mass the threshold is tuned for (default 1e-3).

    Notes
    -----
    *Guarantee.* ``epsilon * d``-metric DP (Carvalho et al., Theorem 1). When an exact neighbour row
    reaches beyond ``gamma`` it holds all of ``L_w`` (distances recomputed in float64) and the
    bottom element's uniform fallback is drawn among the other words directly; otherwise sampling
    proceeds as for :class:`ExponentialMechanism` (rejection from the row, or a full row).

    References
    ----------
    R. S. Carvalho, T. Vasiloudis, O. Feyisetan. "TEM: High Utility Metric Differential Privacy
    on Text". arXiv 2107.07928.
    """

    def __init__(self, space: EmbeddingSpace, epsilon: float, beta: float = 1e-3) -> None:
        super(ExponentialMechanism, self).__init__(space)
        self.epsilon = check_epsilon(epsilon)
        self.beta = check_open_unit(beta, "beta")
        n_words = len(space)
        self.gamma = (2.0 / self.epsilon) * math.log((1.0 - self.beta) * (n_words - 1) / self.beta)
        self._freeze()

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "beta": self.beta}

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            f"threshold gamma = {self.gamma:.6g} on exact distances; {IDEAL_ARITHMETIC}",
        )

    def _clip(self) -> float:
        return self.gamma
