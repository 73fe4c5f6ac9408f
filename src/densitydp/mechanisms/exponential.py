"""The exponential mechanism over the vocabulary: the exact reference."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax

from .._validation import check_epsilon, check_word_ids
from ..embeddings import EmbeddingSpace
from . import _kernels
from .base import IDEAL_ARITHMETIC, TABLE_K, Mechanism, PrivacyBound, group_tokens, neighbor_rows

__all__ = ["ExponentialMechanism"]

#: Cost of one proposal round of the rejection sampler, in units of the cost of one entry of a
#: full distance row (a float64 distance, its weight and its cumulative sum). Measured by
#: ``benchmarks/bench_exponential_rows.py`` on GloVe (about 150 ns a round against about 8 ns an
#: entry); it only chooses between two exact samplers, never changes the law.
ROUND_COST = 20.0


def _rejection_is_cheaper(
    n_tokens: np.ndarray,
    row_mass: np.ndarray,
    outside_mass: np.ndarray,
    n_words: int,
    width: int,
) -> np.ndarray:
    """Per distinct word: whether rejection from its neighbour row costs less than a full row.

    A token needs on average ``(row_mass + outside_mass) / total`` proposal rounds (``total`` the
    word's true weight sum, at least ``row_mass``), so ``n_tokens * (1 + outside_mass /
    row_mass) * ROUND_COST`` bounds the expected cost of the word's tokens by rejection; a full
    row costs ``n_words`` entries. The smaller wins; both samplers are exact.
    """
    rounds = 1.0 + outside_mass / row_mass
    return n_tokens * rounds * ROUND_COST < n_words + width


class ExponentialMechanism(Mechanism):
    """Exponential mechanism: ``P(w' | w) ~ exp(-epsilon * d(w, w') / 2)`` over all words.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter, > 0.

    Notes
    -----
    *Guarantee.* ``epsilon * d``-metric DP (d_chi-privacy): the utility ``-d(w, w')`` has
    sensitivity ``d(w, w'')`` in the input (triangle inequality), so the usual factor 1/2 gives
    ``epsilon * d(w, w'')``. Distances are computed in float64.

    Sampling is exact and has the law of Gumbel-max sampling without its ``O(V)`` cost per token.
    Tokens are grouped by distinct input word; each word takes one of two exact samplers (numba,
    parallel over words), chosen by expected cost:

    * *rejection from the neighbour row*: the word's 64 exact nearest neighbours with their
      weights, plus every word of the vocabulary proposed uniformly at the bound
      ``exp(-epsilon d_64 / 2)`` (no word outside the row is nearer than ``d_64``); a row word
      drawn that way is rejected, any other accepted with probability ``weight / bound``. A
      token needs on average at most ``1 + outside / row`` rounds (``row`` the row's weight,
      ``outside = V exp(-epsilon d_64 / 2)``), each one uniform draw and at most one exact
      distance (summed coordinate by coordinate, stopped as soon as it decides);
    * *a full row*: one exact float64 distance row over the vocabulary (BLAS) turned into a
      cumulative weight table that serves all of the word's tokens by binary search.

    The rule: rejection when ``n_tokens * (1 + outside / row) * ROUND_COST < V + 64``
    (:data:`ROUND_COST`, a round's cost in row entries, measured). Words with few tokens at low
    epsilon take rejection, very frequent words full rows. *Memory*: full rows are built in
    blocks of at most ``B = max(1, 2^24 // V)`` rows, so at most ``B`` rows of ``V`` float64
    (128 MB) are alive, plus ``24 V`` bytes of scratch per thread; rejection needs only the
    ``64``-wide rows. Each token draws from its own stream seeded by ``rng`` (a SplitMix64 seed,
    or uniforms drawn up front), so results do not depend on the number of threads.

    References
    ----------
    McSherry and Talwar, "Mechanism design via differential privacy", FOCS 2007; Chatzikokolakis
    et al., "Broadening the scope of differential privacy using metrics", PETS 2013.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.EmbeddingSpace(["a", "b", "c"], [[0.0], [1.0], [3.0]])
    >>> mechanism = dd.ExponentialMechanism(space, epsilon=2.0)
    >>> ids, probabilities = mechanism.output_distribution(0)
    >>> probabilities.round(4).tolist()
    [0.7054, 0.2595, 0.0351]
    """

    exact = True
    log_prob_precise = True  # log_prob is computed in log space

    def __init__(self, space: EmbeddingSpace, epsilon: float) -> None:
        super().__init__(space)
        self.epsilon = check_epsilon(epsilon)
        self._freeze()

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            f"exact sampling over the whole vocabulary; {IDEAL_ARITHMETIC}",
        )

    def _clip(self) -> float:
        """Distance above which every word has the same weight (TEM's threshold)."""
        return np.inf

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        words, _, token_order, starts = group_tokens(word_ids)
        out = np.empty(len(word_ids), dtype=np.int64)
        half_epsilon, gamma = self.epsilon / 2.0, self._clip()
        seeds = generator.integers(0, 2**63, size=len(word_ids), dtype=np.int64).view(np.uint64)
        row_ids, row_distances, reach = self._rows(words)
        # rejection from the rows pays when the outside words carry little proposal mass
        clipped = np.minimum(row_distances, gamma)
        with np.errstate(over="ignore"):  # an overflowing exponent is a weight of exactly 0
            row_mass = np.exp(-half_epsilon * clipped).sum(axis=1)
            outside_mass = len(self.space) * np.exp(-half_epsilon * np.minimum(reach, gamma))
        by_rows = _rejection_is_cheaper(
            np.diff(starts), row_mass, outside_mass, len(self.space), row_ids.shape[1]
        )
        if by_rows.any():
            slots = np.flatnonzero(by_rows)
            _kernels.sample_by_uniform_rejection(
                words[slots],
                row_ids[slots],
                row_distances[slots],
                reach[slots],
                _restart(starts, slots),
                token_order,
                seeds,
                self.space.vectors,
                half_epsilon,
                gamma,
                out,
            )
        scanned = np.flatnonzero(~by_rows)
        if scanned.size:
            u_choice = generator.random(len(word_ids))
            u_fallback = generator.random(len(word_ids))
            for first in range(0, len(scanned), self._block_rows()):
                slots = scanned[first : first + self._block_rows()]
                _kernels.sample_from_distance_rows(
                    self._distance_rows(words[slots]),
                    _restart(starts, slots),
                    token_order,
                    u_choice,
                    u_fallback,
                    half_epsilon,
                    gamma,
                    out,
                )
        return out

    def _rows(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact neighbour rows of ``words``, their float64 distances, and a lower bound on the
        distance of every word outside the row (the row's last exact distance, less a 1e-9
        relative margin)."""
        width = min(TABLE_K, len(self.space))
        ids, distances = neighbor_rows(self.space, words, width)
        reach = distances[:, -1] * (1.0 - 1e-9)
        if width == len(self.space):
            reach[:] = np.inf
        return ids, distances, reach

    def _block_rows(self) -> int:
        """Distance rows per block: about 16 million float64 values (128 MB)."""
        return max(1, (1 << 24) // len(self.space))

    def _distance_rows(self, words: np.ndarray) -> np.ndarray:
        """Float64 distances from each of ``words`` to every word, by BLAS.

        ``||x||^2 + ||y||^2 - 2 x.y`` in float64 (absolute error about 1e-14 times the squared
        norms), clamped at 0; a word's distance to itself is set to exactly 0.
        """
        space = self.space
        vectors = space._vectors64
        squared = space._sqnorms
        rows = vectors[words] @ vectors.T
        rows *= -2.0
        rows += squared[words, None]
        rows += squared[None, :]
        np.maximum(rows, 0.0, out=rows)
        np.sqrt(rows, out=rows)
        rows[np.arange(len(words)), words] = 0.0
        return rows

    def _distances(self, word_id: int) -> np.ndarray:
        return self._distance_rows(np.array([word_id]))[0]

    def _log_probabilities(self, word_id: int) -> np.ndarray:
        distances = np.minimum(self._distances(word_id), self._clip())
        with np.errstate(over="ignore"):  # an overflowing exponent is a weight of exactly 0
            return log_softmax(-0.5 * self.epsilon * distances)

    def output_distribution(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(all word ids, probabilities)``, exact (float64)."""
        word_id = self._check_word(word_id)
        return np.arange(len(self.space)), np.exp(self._log_probabilities(word_id))

    def log_prob(self, word_id: int, outputs: Any) -> np.ndarray:
        """Exact ``ln P(y | w)``, computed in log space (finite for every word)."""
        word_id = self._check_word(word_id)
        return self._log_probabilities(word_id)[check_word_ids(outputs, len(self.space), "outputs")]


def _restart(starts: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """``(len(slots), 2)`` token ranges ``[start, stop)`` of the chosen distinct words."""
    return np.ascontiguousarray(np.stack([starts[slots], starts[slots + 1]], axis=1))
