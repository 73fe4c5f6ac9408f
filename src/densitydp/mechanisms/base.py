"""The mechanism protocol: immutable, validated at construction, stateless about randomness.

A mechanism maps word ids to noisy word ids. Every mechanism states its guarantee with a
:class:`PrivacyBound` and the loss it claims for one pair of words with
:meth:`Mechanism.privacy_loss_bound`; exact mechanisms also give their output distribution.
"""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from .._rng import RNGLike, as_generator
from .._validation import check_word_ids
from ..embeddings import EmbeddingSpace
from ..neighbors import RowStore
from . import _kernels

__all__ = ["Mechanism", "PrivacyBound", "PrivacyWarning"]

#: Width of the exact neighbour rows the samplers start from.
TABLE_K = 64

Notion = Literal["metric", "pure", "approx"]


class PrivacyWarning(UserWarning):
    """A privacy-relevant situation: a guarantee weaker than it may seem, an approximation."""


@dataclass(frozen=True)
class PrivacyBound:
    """The guarantee a mechanism claims.

    Attributes
    ----------
    notion : {"metric", "pure", "approx"}
        ``metric``: for all words w, w' and outputs y,
        ``P[M(w) = y] <= exp(epsilon * d(w, w')) * P[M(w') = y] (+ delta)``; ``pure`` /
        ``approx``: the same with ``d`` replaced by 1 (any two inputs).
    epsilon, delta : float
        The parameters of the notion (``delta`` is 0 for metric and pure DP).
    assumptions : str
        What the guarantee assumes, in plain words.
    """

    notion: Notion
    epsilon: float
    delta: float = 0.0
    assumptions: str = ""

    def __str__(self) -> str:
        if self.notion == "metric":
            head = f"{self.epsilon:g} * d(w, w')-metric DP (d_chi-privacy)"
        elif self.notion == "pure":
            head = f"{self.epsilon:g}-DP"
        else:
            head = f"({self.epsilon:g}, {self.delta:g})-DP"
        if self.notion == "metric" and self.delta:
            head += f" + delta {self.delta:g}"
        return f"{head}; {self.assumptions}" if self.assumptions else head


#: What every guarantee of this package assumes about arithmetic.
IDEAL_ARITHMETIC = (
    "assumes exact real arithmetic: the sampled noise is floating point, and floating-point "
    "noise has known attacks (Mironov 2012)"
)


class Mechanism(ABC):
    """Base class of word-perturbation mechanisms.

    Subclasses validate their parameters in ``__init__`` (an invalid mechanism never exists),
    then call ``self._freeze()``; afterwards attributes cannot change. A mechanism stores no
    random state: every call to :meth:`sample` takes its own ``rng``.
    """

    #: True when :meth:`output_distribution` and :meth:`log_prob` are available and exact.
    exact: ClassVar[bool] = False
    #: True when :meth:`log_prob` carries relative precision for every output, however small
    #: (computed in log space); otherwise probabilities below 1e-12 are known only to about
    #: 1e-12 (see :func:`densitydp.exact_privacy_loss`).
    log_prob_precise: ClassVar[bool] = False
    _frozen: bool = False

    def __init__(self, space: EmbeddingSpace) -> None:
        if not isinstance(space, EmbeddingSpace):
            raise TypeError(f"`space` must be an EmbeddingSpace; got {type(space).__name__}.")
        self.space = space

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(
                f"{type(self).__name__} is immutable; build a new mechanism to change `{name}`."
            )
        object.__setattr__(self, name, value)

    # -- the protocol ---------------------------------------------------------------------------

    def sample(self, word_ids: Any, rng: RNGLike = None) -> np.ndarray:
        """Perturb each word id independently.

        Parameters
        ----------
        word_ids : int or array_like of int
            Ids in ``[0, len(space))``; any shape.
        rng : None, int, SeedSequence or Generator
            Randomness (SPEC 7). The same seed gives the same output.

        Returns
        -------
        ndarray of int64, same shape as ``word_ids``
        """
        ids = check_word_ids(word_ids, len(self.space))
        generator = as_generator(rng)
        flat = np.ascontiguousarray(ids.reshape(-1))
        if flat.size == 0:
            return np.empty(ids.shape, dtype=np.int64)
        return self._sample(flat, generator).astype(np.int64, copy=False).reshape(ids.shape)

    @abstractmethod
    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """Sample for a validated 1-D int64 array of ids."""

    @abstractmethod
    def privacy_bound(self) -> PrivacyBound:
        """The guarantee this mechanism claims."""

    def privacy_loss_bound(self, word_id: Any, other_id: Any) -> Any:
        """Claimed bound on ``max_y |ln P(y | w) - ln P(y | w')|`` for words ``w``, ``w'``.

        For a metric guarantee ``epsilon * d(w, w')`` (broadcast over arrays of ids).
        """
        bound = self.privacy_bound()
        if bound.notion == "metric":
            with np.errstate(over="ignore"):  # beyond the float range: an infinite claim
                return bound.epsilon * self.space.distance(word_id, other_id)
        same = np.asarray(word_id) == np.asarray(other_id)
        result = np.where(same, 0.0, bound.epsilon)
        return float(result) if result.ndim == 0 else result

    def privacy_delta_bound(self, word_id: Any, other_id: Any) -> Any:
        """Claimed additive term for one pair: ``P[M(w) in S] <= exp(loss) P[M(w') in S] +
        delta`` with ``loss = privacy_loss_bound(w, w')``; ``privacy_bound().delta`` unless a
        mechanism states a pair-dependent one (broadcast over arrays of ids)."""
        delta = self.privacy_bound().delta
        shape = np.broadcast(np.asarray(word_id), np.asarray(other_id)).shape
        return delta if shape == () else np.full(shape, delta)

    def _worst_claims(self, word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each word ``w`` of ``word_ids`` (int64, valid): an upper bound on
        ``max_w' privacy_loss_bound(w, w')`` -- the most a token of ``w`` may leak against any
        replacement -- and the partner ``w'`` it is reached at (for ``privacy_delta_bound``).

        A Euclidean metric guarantee: ``epsilon`` times the exact farthest distance; a pure or
        approximate one: ``epsilon`` (the partner is then any other word). Mechanisms whose
        per-pair claims are not of these forms (another metric, unprotected pairs) override it.
        """
        bound = self.privacy_bound()
        if bound.notion != "metric":
            partners = np.where(word_ids == 0, min(1, len(self.space) - 1), 0)
            return np.full(word_ids.size, bound.epsilon), partners.astype(np.int64)
        distances, farthest = self.space._farthest_rows(word_ids)
        with np.errstate(over="ignore"):  # a loss beyond the float range is an infinite claim
            return bound.epsilon * distances, farthest

    def output_distribution(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(output_ids, probabilities)`` for one input word (exact mechanisms only)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form output distribution; estimate it by "
            "sampling (see densitydp.audit)."
        )

    def log_prob(self, word_id: int, outputs: Any) -> np.ndarray:
        """``ln P(M(word_id) = y)`` for each ``y`` in ``outputs`` (exact mechanisms only)."""
        support, probabilities = self.output_distribution(word_id)
        wanted = check_word_ids(outputs, len(self.space), "outputs")
        dense = np.zeros(len(self.space))
        dense[support] = probabilities
        with np.errstate(divide="ignore"):
            return np.log(dense[wanted])

    # -- display --------------------------------------------------------------------------------

    def _parameters(self) -> dict[str, Any]:
        """Every parameter of the mechanism, for ``repr``."""
        return {}

    def __repr__(self) -> str:
        space = self.space.name or f"{len(self.space)} words"
        shown = ", ".join(f"{k}={v!r}" for k, v in self._parameters().items())
        return f"{type(self).__name__}(space={space!r}, {shown})"

    def _check_word(self, word_id: Any, name: str = "word_id") -> int:
        ids = check_word_ids(word_id, len(self.space), name)
        if ids.ndim != 0:
            raise TypeError(f"`{name}` must be a single word id; got shape {ids.shape}.")
        return int(ids)


def mechanism_and_words(mechanism: Any, word_ids: Any) -> np.ndarray:
    """Check that ``mechanism`` is a :class:`Mechanism` and return ``word_ids`` as a non-empty
    flat int64 array of valid ids."""
    if not isinstance(mechanism, Mechanism):
        raise TypeError(f"`mechanism` must be a Mechanism; got {type(mechanism).__name__}.")
    ids = check_word_ids(word_ids, len(mechanism.space)).reshape(-1)
    if ids.size == 0:
        raise ValueError("`word_ids` must hold at least one word; got none.")
    return ids


def group_tokens(word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group tokens by distinct word: ``(words, inverse, token_order, starts)``.

    ``words[inverse] == word_ids``; the tokens of ``words[t]`` are
    ``token_order[starts[t]:starts[t + 1]]`` (in their original order).
    """
    words, inverse = np.unique(word_ids, return_inverse=True)
    token_order = np.argsort(inverse, kind="stable")
    starts = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=len(words)), out=starts[1:])
    return words, inverse, token_order, starts


def neighbor_rows(
    space: EmbeddingSpace, words: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbour rows of the distinct ``words`` (each word first) as int64 ids, and their
    distances recomputed in float64 (the table stores float32).

    Rows are kept per space (a :class:`~densitydp.neighbors.RowStore` of float64 distances),
    so that the many small calls of a text
    loop pay one look-up, not a table query and a parallel kernel launch; a row of a wider
    width serves a narrower one (exact ranks do not depend on the width).
    """
    with _ROW_LOCK:
        cache = _ROW_CACHES.get(space)
        if cache is None or cache.width < width or cache.size >= ROW_CACHE_WORDS:
            cache = _ROW_CACHES[space] = RowStore(len(space), width, np.float64)
        slots = cache.slots[words]
        missing = slots < 0
        if missing.any():
            new_words = words[missing]
            table = space.neighbors(cache.width, word_ids=new_words, progress=False)
            ids = np.ascontiguousarray(table.rows(new_words)[0], dtype=np.int64)
            distances = np.empty(ids.shape)
            _kernels.row_distances(new_words, ids, space.vectors, distances)
            slots[missing] = cache.add(new_words, ids, distances)
        if width == cache.width:
            return cache.ids[slots].astype(np.int64), cache.distances[slots]
        return (
            np.ascontiguousarray(cache.ids[slots, :width], dtype=np.int64),
            np.ascontiguousarray(cache.distances[slots, :width]),
        )


#: Rows a space's row cache holds before it starts over (768 bytes a row at width 64).
ROW_CACHE_WORDS = 1 << 16


#: One row cache per space (dropped with the space).
_ROW_CACHES: weakref.WeakKeyDictionary[EmbeddingSpace, RowStore] = weakref.WeakKeyDictionary()
_ROW_LOCK = threading.RLock()
