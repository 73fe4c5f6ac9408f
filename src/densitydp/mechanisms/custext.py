"""CusText and CusText+ (Chen et al., Findings of ACL 2023): the exponential mechanism inside a
customised output set of K words per input word."""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.special import log_softmax

from .._validation import check_choice, check_epsilon, check_int, check_word_ids
from ..embeddings import EmbeddingSpace
from . import _sampling_kernels
from .base import IDEAL_ARITHMETIC, Mechanism, PrivacyBound, PrivacyWarning, neighbor_rows

__all__ = ["DEFAULT_K", "CusText", "CusTextPlus"]

#: The output-set size of the paper's experiments and of the authors' code (``--top_k 20``).
DEFAULT_K = 20

#: Groups whose pairwise distances are computed at once when the conservative tables are built.
_GROUP_BLOCK = 256

MAPPINGS = ("conservative", "top-k")

#: Conservative groups per space and ``k`` (dropped with the space).
_GROUPS: weakref.WeakKeyDictionary[EmbeddingSpace, dict[int, Any]] = weakref.WeakKeyDictionary()
_GROUP_LOCK = threading.Lock()


def _scores(distances: np.ndarray, half_epsilon: float) -> np.ndarray:
    """CusText's exponents ``epsilon u / 2`` from the distances of one input word to the words of
    its output set (last axis): ``u = -(d - min d) / (max d - min d)`` in ``[-1, 0]`` (the
    paper's normalised utility, sensitivity 1); ``u = 0`` when all distances are equal."""
    low = distances.min(axis=-1, keepdims=True)
    spread = distances.max(axis=-1, keepdims=True) - low
    safe = np.where(spread > 0.0, spread, 1.0)
    utility = np.where(spread > 0.0, -(distances - low) / safe, 0.0)
    return half_epsilon * utility


def _set_distances(vectors: np.ndarray) -> np.ndarray:
    """Exact float64 distances between the words of each set: ``(..., s, dim) -> (..., s, s)``."""
    difference = vectors[..., :, None, :] - vectors[..., None, :, :]
    return np.sqrt(np.einsum("...ijk,...ijk->...ij", difference, difference))


class CusText(Mechanism):
    """CusText: the exponential mechanism inside a customised output set of ``k`` words.

    Each word ``x`` gets an output set ``S(x)`` of ``k`` words (``mapping``); the output is drawn
    from ``S(x)`` with ``P(y | x) ~ exp(epsilon u(x, y) / 2)``, where
    ``u(x, y) = -(d(x, y) - min_S d(x, .)) / (max_S d(x, .) - min_S d(x, .))`` is the Euclidean
    distance normalised to ``[0, 1]`` within the set (Chen et al. 2023, Sec. 3; the authors'
    code, ``mapping_strategy``): ``u`` has sensitivity 1, so two words with the *same* output set
    are ``epsilon``-indistinguishable.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon : float
        Privacy parameter (pure DP between words sharing an output set), > 0. The paper uses
        small values (1 to 3).
    k : int
        Output-set size ``K``, in ``[1, len(space)]`` (default :data:`DEFAULT_K` = 20, the
        paper's and its code's default).
    mapping : {"conservative", "top-k"}
        ``"conservative"`` (the paper's default, which its proof needs): words are taken in the
        space's row order; the first word not yet in a group leads a new group made of the
        ``k`` words nearest to it (exact Euclidean distance, itself included; ties broken by the
        smaller id) among the words not yet in a group; every member's output set is its
        group. When fewer than ``k`` words are left they form a last, smaller group (the
        authors' code instead fills that last set with words of earlier groups, which breaks the
        sharing; here every set is shared by exactly the words that map to it).
        ``"top-k"``: each word's own ``k`` nearest words (what pypantera does); sets are not
        shared, and the guarantee is only what :meth:`privacy_loss_bound` states (a
        :class:`PrivacyWarning` is emitted).

    Notes
    -----
    *Guarantee.* ``epsilon``-DP between two words whose output sets are equal: with the
    conservative mapping, between words of the same group; nothing is claimed across groups,
    where the supports differ and the loss is infinite (an output of one set has probability 0
    under the other input). :meth:`privacy_loss_bound` returns ``epsilon`` for distinct words
    with equal sets, 0 for a word and itself, ``inf`` otherwise. With ``mapping="top-k"`` two
    words rarely have equal sets: most pairs, nearest neighbours included, are unprotected
    (``inf``). The paper evaluates ``epsilon`` in 1..3 with ``K`` = 20.

    *Assumptions.* The groups depend on the row order, taken as the paper's order (corpus
    frequency, most frequent first: GloVe rows are in that order); to follow the paper on a
    corpus, build the space from the corpus vocabulary in frequency order (e.g. with
    :meth:`EmbeddingSpace.subset`). The paper's repository builds GloVe sets with Euclidean
    distance (used here) and its own counter-fitted vectors with inner products on normalised
    vectors; only the Euclidean form is implemented. Ideal arithmetic (probabilities are
    floating point).

    *Sampling* is exact inverse-CDF sampling from a per-word cumulative table (one uniform per
    token, numba, parallel over tokens; the same seed gives the same outputs for any thread
    count). Conservative: the groups and the tables are built once at construction: one pass
    over the ungrouped words per group, about ``n^2 dim / (2 k)`` multiply-adds (with an early
    stop per candidate), kept per space and ``k`` (another epsilon reuses it); then ``n k``
    float64 cumulative weights plus about ``3 n`` int64 ids (group, size, members: about 1.8 MB
    per 10,000 words at ``k = 20``). Top-k: the exact neighbour rows of the
    distinct words of a call (:func:`~densitydp.mechanisms.base.neighbor_rows`, cached per
    space) and their tables, ``O(distinct words * k)`` per call.

    References
    ----------
    S. Chen, F. Mo, Y. Wang, C. Chen, J.-Y. Nie, C. Wang, J. Cui. "A Customized Text
    Sanitization Mechanism with Differential Privacy". Findings of ACL 2023, 5747-5758;
    arXiv 2207.01193; code github.com/sai4july/CusText.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.EmbeddingSpace(list("abcde"), [[0.0], [1.0], [3.0], [10.0], [11.0]])
    >>> mechanism = dd.CusText(space, epsilon=2.0, k=3)
    >>> ids, probabilities = mechanism.output_distribution(0)
    >>> ids.tolist(), probabilities.round(4).tolist()
    ([0, 1, 2], [0.4798, 0.3438, 0.1765])
    >>> float(mechanism.privacy_loss_bound(0, 2)), float(mechanism.privacy_loss_bound(0, 3))
    (2.0, inf)
    """

    exact = True
    log_prob_precise = True  # log-probabilities are computed in log space

    def __init__(
        self,
        space: EmbeddingSpace,
        epsilon: float,
        *,
        k: int = DEFAULT_K,
        mapping: str = "conservative",
    ) -> None:
        super().__init__(space)
        self.epsilon = check_epsilon(epsilon)
        self.k = check_int(k, "k", minimum=1, maximum=len(space))
        self.mapping = check_choice(mapping, "mapping", MAPPINGS)
        if self.mapping == "conservative":
            self._group_of, self._members, self._sizes = _conservative_groups(space, self.k)
            self._word_sizes = self._sizes[self._group_of]
            self._cumulative = self._group_tables()
        else:
            warnings.warn(
                "CusText with mapping='top-k' gives each word its own k nearest words: words "
                "with different output sets are not protected at all (infinite loss; "
                "privacy_loss_bound is inf for them). The paper's guarantee needs "
                "mapping='conservative'.",
                PrivacyWarning,
                stacklevel=3 if type(self) is not CusText else 2,
            )
        self._freeze()

    def _parameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "k": self.k, "mapping": self.mapping}

    # -- the guarantee -------------------------------------------------------------------------

    def _worst_claims(self, word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Against *any* replacement word: ``inf`` whenever the vocabulary holds more than one
        output set (``k < n``: some word has another set, and nothing is claimed across sets);
        ``epsilon`` when every set is the whole vocabulary (``k = n``)."""
        if self.k < len(self.space):
            return np.full(word_ids.size, np.inf), np.zeros(word_ids.size, dtype=np.int64)
        return super()._worst_claims(word_ids)

    def privacy_bound(self) -> PrivacyBound:
        if self.mapping == "conservative":
            scope = (
                "epsilon-DP only between words of the same conservative group (equal output "
                f"sets of up to {self.k} words); nothing is claimed across groups (infinite "
                "loss: privacy_loss_bound is inf)"
            )
        else:
            scope = (
                "per-word top-k sets (not the paper's conservative mapping): epsilon-DP only "
                "between words whose k-nearest sets are equal; every other pair, nearest "
                "neighbours included, is unprotected (infinite loss)"
            )
        return PrivacyBound("pure", self.epsilon, 0.0, f"{scope}; {IDEAL_ARITHMETIC}")

    def privacy_loss_bound(self, word_id: Any, other_id: Any) -> Any:
        """``epsilon`` for distinct words with equal output sets, 0 for a word and itself,
        ``inf`` otherwise (broadcast over arrays of ids)."""
        first, second = np.broadcast_arrays(
            check_word_ids(word_id, len(self.space), "word_id"),
            check_word_ids(other_id, len(self.space), "other_id"),
        )
        shape = first.shape
        first, second = first.reshape(-1), second.reshape(-1)
        shared = self._same_set(first, second)
        result = np.where(first == second, 0.0, np.where(shared, self.epsilon, np.inf))
        return float(result[0]) if shape == () else result.reshape(shape)

    def _same_set(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if self.mapping == "conservative":
            return self._group_of[first] == self._group_of[second]
        words, inverse = np.unique(np.concatenate([first, second]), return_inverse=True)
        ids, _ = neighbor_rows(self.space, words, self.k)
        ids = np.sort(ids, axis=1)
        rows = ids[inverse]
        return (rows[: len(first)] == rows[len(first) :]).all(axis=1)

    # -- the law -------------------------------------------------------------------------------

    def output_set(self, word_id: int) -> np.ndarray:
        """The output set ``S(word_id)`` (int64 ids; conservative: the group, its leader first;
        top-k: the word and its ``k - 1`` nearest words by increasing distance)."""
        word_id = self._check_word(word_id)
        if self.mapping == "conservative":
            group = self._group_of[word_id]
            return self._members[group, : self._sizes[group]].copy()
        return neighbor_rows(self.space, np.array([word_id]), self.k)[0][0]

    def _log_probabilities(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        members = self.output_set(word_id)
        distances = self.space.distance(np.full(len(members), word_id), members)
        distances = np.asarray(distances, dtype=np.float64)
        distances[members == word_id] = 0.0
        return members, log_softmax(_scores(distances, 0.5 * self.epsilon))

    def output_distribution(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(output set, probabilities)``, exact (float64): the exponential mechanism on the
        normalised utility inside the word's output set."""
        members, log_p = self._log_probabilities(self._check_word(word_id))
        return members, np.exp(log_p)

    def log_prob(self, word_id: int, outputs: Any) -> np.ndarray:
        """Exact ``ln P(y | w)`` (log space; ``-inf`` outside the word's output set)."""
        members, log_p = self._log_probabilities(self._check_word(word_id))
        wanted = check_word_ids(outputs, len(self.space), "outputs")
        dense = np.full(len(self.space), -np.inf)
        dense[members] = log_p
        return dense[wanted]

    # -- sampling ------------------------------------------------------------------------------

    def _group_tables(self) -> np.ndarray:
        """``(n_words, k)`` cumulative weights of each word over its group (in member order;
        entries past the group's size repeat the total)."""
        vectors = self.space._vectors64
        half_epsilon = 0.5 * self.epsilon
        k = self._members.shape[1]
        cumulative = np.empty((len(self.space), k))
        for size in np.unique(self._sizes):
            groups = np.flatnonzero(self._sizes == size)
            for first in range(0, len(groups), _GROUP_BLOCK):
                block = groups[first : first + _GROUP_BLOCK]
                members = self._members[block, :size]
                distances = _set_distances(vectors[members])
                diagonal = np.arange(size)
                distances[:, diagonal, diagonal] = 0.0
                scores = _scores(distances, half_epsilon)
                weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
                table = np.cumsum(weights, axis=-1)
                cumulative[members.reshape(-1), :size] = table.reshape(-1, size)
                cumulative[members.reshape(-1), size:] = table.reshape(-1, size)[:, -1:]
        return cumulative

    def _tables(
        self, word_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(table_rows, cumulative, sizes, candidate_rows, candidates)`` for
        :func:`~densitydp.mechanisms._sampling_kernels.sample_from_tables`."""
        if self.mapping == "conservative":
            return (
                word_ids,
                self._cumulative,
                self._word_sizes,
                self._group_of,
                self._members,
            )
        words, inverse = np.unique(word_ids, return_inverse=True)
        ids, distances = neighbor_rows(self.space, words, self.k)
        scores = _scores(distances, 0.5 * self.epsilon)
        cumulative = np.cumsum(np.exp(scores - scores.max(axis=1, keepdims=True)), axis=1)
        sizes = np.full(len(words), self.k, dtype=np.int64)
        return inverse.astype(np.int64), cumulative, sizes, np.arange(len(words)), ids

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        uniforms = generator.random(len(word_ids))
        table_rows, cumulative, sizes, candidate_rows, candidates = self._tables(word_ids)
        out = np.empty(len(word_ids), dtype=np.int64)
        _sampling_kernels.sample_from_tables(
            table_rows, uniforms, cumulative, sizes, candidate_rows, candidates, out
        )
        return out


def _conservative_groups(
    space: EmbeddingSpace, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group_of (n,), members (n_groups, k) int64 padded with -1, sizes (n_groups,))``,
    computed once per space and ``k`` (kept while the space lives; read-only arrays): the
    groups do not depend on epsilon."""
    with _GROUP_LOCK:
        kept = _GROUPS.setdefault(space, {})
        if k not in kept:
            groups = _compute_groups(space, k)
            for array in groups:
                array.flags.writeable = False
            kept[k] = groups
        return kept[k]


def _compute_groups(space: EmbeddingSpace, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_words = len(space)
    group_of = np.full(n_words, -1, dtype=np.int64)
    members = np.full((-(-n_words // k), k), -1, dtype=np.int64)
    sizes = np.zeros(len(members), dtype=np.int64)
    n_groups = _sampling_kernels.conservative_groups(
        np.ascontiguousarray(space.vectors), k, group_of, members, sizes
    )
    return group_of, members[:n_groups].copy(), sizes[:n_groups].copy()


def _stop_word_ids(space: EmbeddingSpace, stop_words: Iterable[str]) -> np.ndarray:
    """Ids of the words of ``space`` in ``stop_words`` (exact spelling; others are ignored)."""
    if isinstance(stop_words, str):
        raise TypeError("`stop_words` must be an iterable of words, not a single str.")
    vocabulary = space.vocabulary
    ids = []
    for word in stop_words:
        if not isinstance(word, str):
            raise TypeError(f"`stop_words` must hold str; got {type(word).__name__}.")
        if word in vocabulary:
            ids.append(vocabulary.id(word))
    return np.unique(np.asarray(ids, dtype=np.int64))


def default_stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (318 words), CusText+'s default here.

    The paper's code uses nltk's English list (``nltk.corpus.stopwords.words("english")``, 179
    words), which ships as separately downloaded data, not in a registry package; pass it as
    ``stop_words=`` to follow the paper exactly.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class CusTextPlus(CusText):
    """CusText+: CusText that releases stop words unchanged.

    Parameters
    ----------
    space : EmbeddingSpace
    epsilon, k, mapping
        As for :class:`CusText` (the output sets are built over the whole vocabulary, stop words
        included, as in the authors' code: a non-stop word's set may contain stop words).
    stop_words : iterable of str, optional
        Words released unchanged (exact spelling; words not in the space are ignored). Default:
        :func:`default_stop_words` (scikit-learn's English list; the paper's code uses nltk's
        English list, see there).

    Notes
    -----
    *Guarantee.* A stop word has no protection: it is always released as itself, so its loss
    against any other word is infinite. Between two non-stop words the guarantee of
    :class:`CusText` holds unchanged (``epsilon`` when their output sets are equal, ``inf``
    otherwise). :meth:`privacy_loss_bound` returns these per-pair values.

    References
    ----------
    Chen et al. 2023 (see :class:`CusText`), CusText+ (``--save_stop_words True`` in the
    authors' code).
    """

    def __init__(
        self,
        space: EmbeddingSpace,
        epsilon: float,
        *,
        k: int = DEFAULT_K,
        mapping: str = "conservative",
        stop_words: Iterable[str] | None = None,
    ) -> None:
        Mechanism.__init__(self, space)  # checks `space` before its words are looked up
        words = default_stop_words() if stop_words is None else stop_words
        stop_ids = _stop_word_ids(space, words)
        self._is_stop = np.zeros(len(space), dtype=bool)
        self._is_stop[stop_ids] = True
        self.n_stop_words = int(stop_ids.size)
        super().__init__(space, epsilon, k=k, mapping=mapping)

    def _parameters(self) -> dict[str, Any]:
        return {**super()._parameters(), "n_stop_words": self.n_stop_words}

    def is_stop_word(self, word_ids: Any) -> Any:
        """Whether each id is a stop word of this mechanism (released unchanged)."""
        ids = check_word_ids(word_ids, len(self.space))
        result = self._is_stop[ids]
        return bool(result) if result.ndim == 0 else result

    def _worst_claims(self, word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :class:`CusText`, and ``inf`` for every word when the vocabulary has a stop word
        (a stop word is unprotected against any other word, and any word against it)."""
        losses, partners = super()._worst_claims(word_ids)
        if self._is_stop.any() and len(self.space) > 1:
            losses = np.full(word_ids.size, np.inf)
        return losses, partners

    def privacy_bound(self) -> PrivacyBound:
        bound = super().privacy_bound()
        return PrivacyBound(
            bound.notion,
            bound.epsilon,
            0.0,
            f"stop words ({self.n_stop_words} in the space) are released unchanged and have "
            f"no protection (infinite loss); between other words: {bound.assumptions}",
        )

    def privacy_loss_bound(self, word_id: Any, other_id: Any) -> Any:
        """As :meth:`CusText.privacy_loss_bound`, and ``inf`` for distinct words when either is
        a stop word."""
        loss = np.asarray(super().privacy_loss_bound(word_id, other_id), dtype=np.float64)
        first, second = np.broadcast_arrays(
            check_word_ids(word_id, len(self.space), "word_id"),
            check_word_ids(other_id, len(self.space), "other_id"),
        )
        stop = (self._is_stop[first] | self._is_stop[second]) & (first != second)
        result = np.where(stop, np.inf, loss)
        return float(result) if result.ndim == 0 else result

    def output_distribution(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``([word_id], [1.0])`` for a stop word, else as :meth:`CusText.output_distribution`."""
        word_id = self._check_word(word_id)
        if self._is_stop[word_id]:
            return np.array([word_id], dtype=np.int64), np.ones(1)
        return super().output_distribution(word_id)

    def log_prob(self, word_id: int, outputs: Any) -> np.ndarray:
        """Exact ``ln P(y | w)`` (0 for a stop word and itself, ``-inf`` elsewhere)."""
        word_id = self._check_word(word_id)
        if not self._is_stop[word_id]:
            return super().log_prob(word_id, outputs)
        wanted = check_word_ids(outputs, len(self.space), "outputs")
        return np.where(wanted == word_id, 0.0, -np.inf)

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        out = super()._sample(word_ids, generator)
        stop = self._is_stop[word_ids]
        out[stop] = word_ids[stop]
        return out
