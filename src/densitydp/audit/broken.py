"""Deliberately broken mechanisms, for testing auditors (never for privacy).

Each claims the guarantee of the correct mechanism it imitates but does something else, the
kinds of bugs seen in public implementations. The exact ones report their **true** output
distribution, so an exact audit can see the excess loss; the audit must flag every one of them
(``tests/test_audit.py`` checks that it does).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import log_softmax

from .._validation import check_number
from ..embeddings import EmbeddingSpace
from ..mechanisms.base import group_tokens
from ..mechanisms.exponential import ExponentialMechanism
from ..mechanisms.gumbel import TruncatedGumbel
from ..mechanisms.laplace import MultivariateLaplace
from ..mechanisms.tem import TruncatedExponential

__all__ = [
    "BROKEN_MECHANISMS",
    "ExponentialWithoutHalf",
    "MiscalibratedLaplace",
    "SquaredDistanceGumbel",
    "TEMWithWrongBottom",
]


class _SamplesItsDistribution:
    """Exact sampling by inverse CDF from ``output_distribution``, one distinct word at a time
    (slow: ``O(V)`` per distinct word; fine for tests)."""

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        words, _, token_order, starts = group_tokens(word_ids)
        out = np.empty(len(word_ids), dtype=np.int64)
        uniforms = generator.random(len(word_ids))
        for t, word in enumerate(words):
            ids, probabilities = self.output_distribution(int(word))  # type: ignore[attr-defined]
            cumulative = np.cumsum(probabilities)
            tokens = token_order[starts[t] : starts[t + 1]]
            chosen = np.searchsorted(cumulative, uniforms[tokens] * cumulative[-1], side="right")
            out[tokens] = ids[np.minimum(chosen, len(ids) - 1)]
        return out


class ExponentialWithoutHalf(_SamplesItsDistribution, ExponentialMechanism):
    """BROKEN: ``P(w' | w) ~ exp(-epsilon d)`` (the factor 1/2 is missing) while claiming
    ``epsilon * d``; its true loss reaches ``2 epsilon d``."""

    def _log_probabilities(self, word_id: int) -> np.ndarray:
        return log_softmax(-self.epsilon * self._distances(word_id))


class TEMWithWrongBottom(_SamplesItsDistribution, TruncatedExponential):
    """BROKEN: TEM whose bottom element scores ``-gamma`` instead of
    ``-gamma + (2 / epsilon) ln |W \\ L_w|``, so the words beyond ``gamma`` share the bottom's
    weight instead of each having it."""

    def _log_probabilities(self, word_id: int) -> np.ndarray:
        distances = self._distances(word_id)
        inside = distances <= self.gamma
        n_outside = int((~inside).sum())
        scores = -0.5 * self.epsilon * np.minimum(distances, self.gamma)
        if n_outside:
            scores[~inside] -= math.log(n_outside)
        return log_softmax(scores)


class SquaredDistanceGumbel(TruncatedGumbel):
    """BROKEN: the truncated Gumbel mechanism with noise added to **squared** distances while
    its calibration (and claim) are for distances."""

    def _candidate_rows(self, words: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        ids, distances = super()._candidate_rows(words, width)
        return ids, distances**2


class MiscalibratedLaplace(MultivariateLaplace):
    """BROKEN: multivariate Laplace noise calibrated for ``factor * epsilon`` (less noise) while
    claiming ``epsilon * d``."""

    def __init__(self, space: EmbeddingSpace, epsilon: float, factor: float = 10.0) -> None:
        self.factor = check_number(factor, "factor", minimum=1.0, strict=False)
        super().__init__(space, epsilon)

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "factor": self.factor}

    def _noise(self, n_samples: int, generator: np.random.Generator) -> np.ndarray:
        return super()._noise(n_samples, generator) / self.factor


#: Name -> class of every broken mechanism.
BROKEN_MECHANISMS = {
    "exponential-without-half": ExponentialWithoutHalf,
    "tem-wrong-bottom": TEMWithWrongBottom,
    "gumbel-squared-distances": SquaredDistanceGumbel,
    "laplace-miscalibrated": MiscalibratedLaplace,
}
