"""SanText and SanText+ (Yue et al., Findings of ACL 2021): the exponential mechanism over a
sanitised vocabulary, and its utility-optimised variant that spends protection only on sensitive
words."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from scipy.special import log_softmax

from .._validation import check_epsilon, check_number, check_word_ids
from ..embeddings import EmbeddingSpace
from ..neighbors import RowStore, exact_search
from . import _kernels, _sampling_kernels
from .base import IDEAL_ARITHMETIC, Mechanism, PrivacyBound, group_tokens
from .exponential import ExponentialMechanism, _rejection_is_cheaper, _restart

__all__ = ["DEFAULT_P", "DEFAULT_SENSITIVE_FRACTION", "SanText", "SanTextPlus"]

#: SanText+'s probability of sanitising a non-sensitive word in the paper's experiments and the
#: authors' README example (``--p 0.3``; their script's argparse default is 0.2).
DEFAULT_P = 0.3
#: SanText+'s fraction ``w`` of sensitive (least frequent) words in the paper's experiments and
#: the README example (``--sensitive_word_percentage 0.9``; the argparse default is 0.5).
DEFAULT_SENSITIVE_FRACTION = 0.9
#: Width of the exact rows from a non-sensitive word to its nearest sensitive words (the
#: rejection sampler's envelope is exact on them): 256 rows of 12 bytes a word, kept per
#: mechanism for the non-sensitive words met (at most ``3 KB * (1 - w) n``).
OUTSIDE_WIDTH = 256
_OUTSIDE_LOCK = threading.Lock()


class SanText(ExponentialMechanism):
    """SanText: ``P(y | x) ~ exp(-epsilon d(x, y) / 2)`` over the whole vocabulary.

    Yue et al. (2021), Sec. 4.1: every token is replaced by a word drawn by the exponential
    mechanism with the utility ``-d_euc(x, y)`` (Euclidean distance between embeddings) over the
    sanitised vocabulary, here every word of ``space``. This is exactly the law of
    :class:`ExponentialMechanism`, and it is sampled by the same exact samplers.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter, > 0 (the paper uses 1 to 3 with GloVe).

    Notes
    -----
    *Guarantee.* ``epsilon * d_euc``-metric local DP (MLDP, the paper's Theorem 1): for all
    words ``x, x'`` and outputs ``y``, ``P(y | x) <= exp(epsilon d(x, x')) P(y | x')``. Exact
    distances in float64; ideal arithmetic. The authors' code restricts the vocabulary to the
    words of the task corpus; build the space that way (:meth:`EmbeddingSpace.subset`) to
    follow it.

    References
    ----------
    X. Yue, M. Du, T. Wang, Y. Li, H. Sun, S. S. M. Chow. "Differential Privacy for Text
    Analytics via Natural Text Sanitization". Findings of ACL-IJCNLP 2021, 3853-3866;
    arXiv 2106.01221; code github.com/xiangyue9607/SanText.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.EmbeddingSpace(["a", "b", "c"], [[0.0], [1.0], [3.0]])
    >>> dd.SanText(space, epsilon=2.0).output_distribution(0)[1].round(4).tolist()
    [0.7054, 0.2595, 0.0351]
    """

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            "MLDP over the whole vocabulary (Yue et al. 2021, Theorem 1), exact sampling; "
            f"{IDEAL_ARITHMETIC}",
        )


def _sensitive_mask(space: EmbeddingSpace, sensitive: Any, fraction: float) -> np.ndarray:
    """Boolean mask of the sensitive words (see :class:`SanTextPlus`)."""
    n_words = len(space)
    if sensitive is None:
        count = math.floor(fraction * n_words)
        mask = np.zeros(n_words, dtype=bool)
        mask[n_words - count :] = True
    elif isinstance(sensitive, str):
        raise TypeError("`sensitive` must be a boolean mask or an iterable of words or ids.")
    else:
        items = list(sensitive) if not isinstance(sensitive, np.ndarray) else sensitive
        array = np.asarray(items)
        if array.dtype == bool:
            if array.shape != (n_words,):
                raise ValueError(
                    f"`sensitive` as a boolean mask must have shape ({n_words},); "
                    f"got {array.shape}."
                )
            mask = array.copy()
        elif array.size and array.dtype.kind in "US":
            unknown = [w for w in array.tolist() if w not in space.vocabulary]
            if unknown:
                raise ValueError(
                    f"`sensitive` holds {len(unknown)} words not in the space (e.g. "
                    f"{unknown[0]!r})."
                )
            mask = np.zeros(n_words, dtype=bool)
            mask[[space.vocabulary.id(w) for w in array.tolist()]] = True
        else:
            ids = check_word_ids(
                array if array.size else np.empty(0, np.int64), n_words, "sensitive"
            )
            mask = np.zeros(n_words, dtype=bool)
            mask[ids] = True
    if mask.sum() < 2:
        raise ValueError(
            f"`sensitive` must select at least 2 words (the output set); got {int(mask.sum())} "
            f"(sensitive_fraction={fraction:g} of {n_words} words)."
        )
    return mask


class SanTextPlus(Mechanism):
    """SanText+: sensitive words always sanitised, non-sensitive words with probability ``p``.

    Yue et al. (2021), Sec. 4.2, as in the authors' code (``SanText_plus``): the vocabulary is
    split into sensitive words ``V_S`` and non-sensitive words ``V_N``. The output of a
    sanitised word ``x`` is drawn from ``V_S`` only, with
    ``P(y | x) ~ exp(-epsilon d_euc(x, y) / 2)`` for ``y`` in ``V_S`` (Euclidean distance,
    the same utility as :class:`SanText`). A sensitive word is always sanitised; a
    non-sensitive word is released unchanged with probability ``1 - p`` and sanitised with
    probability ``p``. So::

        x in V_S:  P(y | x) = softmax_{V_S}(-epsilon d(x, .) / 2)(y)
        x in V_N:  P(x | x) = 1 - p,  P(y | x) = p softmax_{V_S}(-epsilon d(x, .) / 2)(y)

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Metric privacy parameter, > 0.
    p : float
        Probability that a non-sensitive word is sanitised, in ``[0, 1]`` (default
        :data:`DEFAULT_P` = 0.3, the paper's setting).
    sensitive_fraction : float
        ``w``: the fraction of the vocabulary treated as sensitive when ``sensitive`` is not
        given, in ``(0, 1]`` (default :data:`DEFAULT_SENSITIVE_FRACTION` = 0.9, the paper's
        setting): the last ``floor(w * n)`` rows of ``space``.
    sensitive : array_like of bool (n_words,), iterable of str or of int, optional
        The sensitive words explicitly: a mask, words, or ids. At least two words.

    Notes
    -----
    *Which words are sensitive.* The paper takes the least frequent fraction ``w`` of the task
    corpus's vocabulary as sensitive. The default here assumes the rows of ``space`` are in
    decreasing corpus frequency (true of GloVe files, and of :func:`densitydp.load_glove`), so
    the last ``floor(w n)`` rows are the least frequent ones. For any other space, or to use a
    corpus's own counts, pass ``sensitive=``. (The authors' code takes one word more than
    ``floor(w n)``; here exactly ``floor(w n)``.)

    *Guarantee* ("utility-optimised metric LDP", UMLDP, the paper's Definition 2 and
    Theorem 2). What is protected:

    * two sensitive words ``x, x'``: every output ``y`` has
      ``P(y | x) <= exp(epsilon d(x, x')) P(y | x')`` (``epsilon * d``-metric LDP, as SanText);
    * on the *protected outputs* ``V_S`` only, any two words: the ratio is at most
      ``exp(epsilon d(x, x')) / p`` when exactly one of them is non-sensitive (the factor
      ``p`` of sanitising), ``exp(epsilon d(x, x'))`` when both are of the same kind.

    What is not: an output in ``V_N`` reveals its input exactly (it can only be a
    non-sensitive word released unchanged), so for ``p < 1`` a non-sensitive word has
    infinite loss against any other word. :meth:`privacy_loss_bound` (the loss over *all*
    outputs) is ``epsilon d(x, x')`` for two sensitive words (for every pair when ``p = 1``),
    0 for a word and itself, and ``inf`` for any other pair. The UMLDP guarantee also assumes
    that which words are sensitive is public. Ideal arithmetic.

    *Sampling* is exact: sensitive inputs use :class:`ExponentialMechanism` on the space of
    sensitive words (its exact samplers). A sanitised non-sensitive word is sampled, per
    distinct word of a call, either by rejection from its :data:`OUTSIDE_WIDTH` exact nearest
    sensitive words (exact search, rows kept per mechanism: at most 3 KB per non-sensitive
    word met), every other sensitive word proposed uniformly at the bound of the row's last
    distance, or from one exact float64 distance row to ``V_S`` (``O(|V_S| dim)``, blocks of
    at most 128 MB), whichever the exponential mechanism's cost rule expects to be cheaper
    (both exact). Each non-sensitive token's keep-or-sanitise coin is one uniform from
    ``rng``; every token's draws come from its own stream seeded by ``rng``, so results do not
    depend on the number of threads.

    References
    ----------
    Yue et al. 2021 (see :class:`SanText`).
    """

    exact = True
    log_prob_precise = True  # log-probabilities are computed in log space

    def __init__(
        self,
        space: EmbeddingSpace,
        epsilon: float,
        *,
        p: float = DEFAULT_P,
        sensitive_fraction: float = DEFAULT_SENSITIVE_FRACTION,
        sensitive: Any = None,
    ) -> None:
        super().__init__(space)
        self.epsilon = check_epsilon(epsilon)
        self.p = check_number(p, "p", minimum=0.0, strict=False, maximum=1.0)
        self.sensitive_fraction = check_number(
            sensitive_fraction, "sensitive_fraction", minimum=0.0, maximum=1.0
        )
        self._is_sensitive = _sensitive_mask(space, sensitive, self.sensitive_fraction)
        self._sensitive_ids = np.flatnonzero(self._is_sensitive)
        self.n_sensitive = int(self._sensitive_ids.size)
        self._sensitive_space = space.subset(self._sensitive_ids)
        self._inner = ExponentialMechanism(self._sensitive_space, self.epsilon)
        # position of each word in the sensitive space (-1 for non-sensitive words)
        self._position = np.full(len(space), -1, dtype=np.int64)
        self._position[self._sensitive_ids] = np.arange(self.n_sensitive)
        self._largest_norm = float(np.sqrt(space._sqnorms[self._sensitive_ids].max()))
        # exact rows of the non-sensitive words to the sensitive ones, filled as words come
        self._outside_cache = RowStore(len(space), min(OUTSIDE_WIDTH, self.n_sensitive), np.float64)
        self._freeze()

    def _parameters(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "p": self.p,
            "sensitive_fraction": self.sensitive_fraction,
            "n_sensitive": self.n_sensitive,
        }

    def is_sensitive(self, word_ids: Any) -> Any:
        """Whether each id is a sensitive word (always sanitised)."""
        result = self._is_sensitive[check_word_ids(word_ids, len(self.space))]
        return bool(result) if result.ndim == 0 else result

    # -- the guarantee -------------------------------------------------------------------------

    def _worst_claims(self, word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Against *any* replacement word: ``inf`` when ``p < 1`` and some word is
        non-sensitive (every word has an unprotected pair with it); otherwise ``epsilon``
        times the farthest Euclidean distance (every pair is ``epsilon * d``)."""
        if self.p < 1.0 and self.n_sensitive < len(self.space):
            return np.full(word_ids.size, np.inf), np.zeros(word_ids.size, dtype=np.int64)
        return super()._worst_claims(word_ids)

    def privacy_bound(self) -> PrivacyBound:
        return PrivacyBound(
            "metric",
            self.epsilon,
            0.0,
            f"UMLDP (Yue et al. 2021): epsilon * d between sensitive words ({self.n_sensitive} "
            f"of {len(self.space)}, assumed public); a non-sensitive word is released unchanged "
            f"with probability 1 - p = {1.0 - self.p:g}, and then reveals itself: its loss "
            "against any other word is unbounded (privacy_loss_bound is inf) unless p = 1; "
            f"{IDEAL_ARITHMETIC}",
        )

    def privacy_loss_bound(self, word_id: Any, other_id: Any) -> Any:
        """``epsilon d(w, w')`` when both words are sensitive (or ``p = 1``), 0 for a word and
        itself, ``inf`` otherwise (broadcast over arrays of ids)."""
        first, second = np.broadcast_arrays(
            check_word_ids(word_id, len(self.space), "word_id"),
            check_word_ids(other_id, len(self.space), "other_id"),
        )
        with np.errstate(over="ignore"):
            metric = self.epsilon * np.asarray(self.space.distance(first, second), np.float64)
        covered = (self._is_sensitive[first] & self._is_sensitive[second]) | (self.p == 1.0)
        result = np.where(first == second, 0.0, np.where(covered, metric, np.inf))
        return float(result) if result.ndim == 0 else result

    # -- the law -------------------------------------------------------------------------------

    def _distances_to_sensitive(self, words: np.ndarray) -> np.ndarray:
        """Exact float64 distances from ``words`` to every sensitive word, ``(len(words),
        n_sensitive)``, by BLAS (as :meth:`ExponentialMechanism._distance_rows`), a word's
        distance to itself exactly 0."""
        vectors = self.space._vectors64
        squared = self.space._sqnorms
        targets = self._sensitive_ids
        rows = vectors[words] @ vectors[targets].T
        rows *= -2.0
        rows += squared[words, None]
        rows += squared[None, targets]
        np.maximum(rows, 0.0, out=rows)
        np.sqrt(rows, out=rows)
        position = self._position[words]
        inside = np.flatnonzero(position >= 0)
        rows[inside, position[inside]] = 0.0
        return rows

    def _log_probabilities(self, word_id: int) -> np.ndarray:
        """``ln P(y | word_id)`` for every word ``y`` of the space."""
        distances = self._distances_to_sensitive(np.array([word_id]))[0]
        with np.errstate(over="ignore"):
            inner = log_softmax(-0.5 * self.epsilon * distances)
        result = np.full(len(self.space), -np.inf)
        if self._is_sensitive[word_id]:
            result[self._sensitive_ids] = inner
            return result
        with np.errstate(divide="ignore"):
            result[self._sensitive_ids] = np.log(self.p) + inner
            result[word_id] = np.log1p(-self.p)
        return result

    def output_distribution(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(output ids, probabilities)``, exact (float64): the sensitive words, and the word
        itself when it is non-sensitive; outputs of probability 0 (``p`` = 0 or 1) left out."""
        word_id = self._check_word(word_id)
        log_p = self._log_probabilities(word_id)
        support = np.flatnonzero(log_p > -np.inf)
        return support, np.exp(log_p[support])

    def log_prob(self, word_id: int, outputs: Any) -> np.ndarray:
        """Exact ``ln P(y | w)``, computed in log space (``-inf`` outside the support)."""
        word_id = self._check_word(word_id)
        return self._log_probabilities(word_id)[check_word_ids(outputs, len(self.space), "outputs")]

    # -- sampling ------------------------------------------------------------------------------

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        out = word_ids.copy()
        coins = generator.random(len(word_ids))
        sensitive = self._is_sensitive[word_ids]
        sanitised = sensitive | (coins < self.p)
        inner = np.flatnonzero(sanitised & sensitive)
        if inner.size:
            drawn = self._inner._sample(self._position[word_ids[inner]], generator)
            out[inner] = self._sensitive_ids[drawn]
        outer = np.flatnonzero(sanitised & ~sensitive)
        if outer.size:
            out[outer] = self._sensitive_ids[self._sample_outside(word_ids[outer], generator)]
        return out

    def _outside_rows(
        self, words: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For distinct non-sensitive ``words``: the positions of their
        :data:`OUTSIDE_WIDTH` exact nearest sensitive words with float64 distances (exact
        search, kept per mechanism), a lower bound on the distance of every sensitive word
        outside the row, the weight base (the row's first distance), and a lower bound on the
        true weight mass relative to that base (each word is at most ``|x| + max |y|`` away)."""
        width = min(OUTSIDE_WIDTH, self.n_sensitive)
        with _OUTSIDE_LOCK:
            cache = self._outside_cache
            slots = cache.slots[words]
            missing = slots < 0
            if missing.any():
                new_words = words[missing]
                found = exact_search(
                    np.ascontiguousarray(self.space._vectors64[new_words]),
                    self._sensitive_space.vectors,
                    width,
                    column_sqnorms=self._sensitive_space._sqnorms,
                    progress=False,
                )
                slots[missing] = cache.add(new_words, found.ids, np.sqrt(found.sqdist))
            row_ids = cache.ids[slots].astype(np.int64)
            row_distances = cache.distances[slots]
        reach = row_distances[:, -1] * (1.0 - 1e-9)
        if width == self.n_sensitive:
            reach[:] = np.inf
        base = row_distances[:, 0]
        half_epsilon = 0.5 * self.epsilon
        with np.errstate(over="ignore"):
            row_mass = np.exp(-half_epsilon * (row_distances - base[:, None])).sum(axis=1)
            farthest = np.sqrt(self.space._sqnorms[words]) + self._largest_norm
            others = self.n_sensitive - width
            lower_mass = row_mass + others * np.exp(-half_epsilon * (farthest - base))
        return row_ids, row_distances, reach, base, lower_mass

    def _sample_outside(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """Positions in the sensitive words for non-sensitive ``word_ids``, exact: per distinct
        word, rejection from its neighbour row or one full distance row, whichever the
        exponential mechanism's cost rule expects to be cheaper."""
        words, _, token_order, starts = group_tokens(word_ids)
        out = np.empty(len(word_ids), dtype=np.int64)
        seeds = generator.integers(0, 2**63, size=len(word_ids), dtype=np.int64).view(np.uint64)
        row_ids, row_distances, reach, base, lower_mass = self._outside_rows(words)
        half_epsilon = 0.5 * self.epsilon
        with np.errstate(over="ignore"):
            outside_mass = self.n_sensitive * np.exp(-half_epsilon * (reach - base))
        by_rows = _rejection_is_cheaper(
            np.diff(starts), lower_mass, outside_mass, self.n_sensitive, row_ids.shape[1]
        )
        if by_rows.any():
            slots = np.flatnonzero(by_rows)
            _sampling_kernels.sample_subset_by_rejection(
                self.space._vectors64[words[slots]],
                row_ids[slots],
                row_distances[slots],
                reach[slots],
                base[slots],
                _restart(starts, slots),
                token_order,
                seeds,
                self._sensitive_space.vectors,
                half_epsilon,
                out,
            )
        scanned = np.flatnonzero(~by_rows)
        if scanned.size:
            self._sample_from_rows(words, scanned, starts, token_order, generator, out)
        return out

    def _sample_from_rows(
        self,
        words: np.ndarray,
        scanned: np.ndarray,
        starts: np.ndarray,
        token_order: np.ndarray,
        generator: np.random.Generator,
        out: np.ndarray,
    ) -> None:
        """Exact, by one full distance row to the sensitive words per word of ``scanned``."""
        u_choice = generator.random(len(token_order))
        u_fallback = np.zeros(len(token_order))  # no clipping: the fallback is never used
        block = max(1, (1 << 24) // self.n_sensitive)
        for first in range(0, len(scanned), block):
            slots = scanned[first : first + block]
            ranges = _restart(starts, slots)
            rows = self._distances_to_sensitive(words[slots])
            rows -= rows.min(axis=1, keepdims=True)  # same law, no underflow of every weight
            _kernels.sample_from_distance_rows(
                rows,
                ranges,
                token_order,
                u_choice,
                u_fallback,
                0.5 * self.epsilon,
                np.inf,
                out,
            )
