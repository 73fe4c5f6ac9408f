"""Audit anyone's mechanism: the structural protocols the auditors need, and
:func:`as_mechanism`, which turns a foreign object or a plain function into a checked
:class:`~densitydp.Mechanism`.

Nothing has to subclass anything. An object qualifies when it has what the auditors use:

- :class:`MechanismProtocol`: ``space`` (an :class:`~densitydp.EmbeddingSpace`),
  ``sample(word_ids, rng)`` and ``privacy_loss_bound(word_id, other_id)`` (or a ``claim`` given
  to the auditor);
- :class:`ExactMechanismProtocol`: also ``output_distribution(word_id)`` returning
  ``(output_ids, probabilities)``, for the exact loss and the goodness-of-fit test.

A plain function works too: ``fn(word_ids, rng) -> word_ids`` (``interface="ids"``), or, for
libraries that work on text, ``fn(words) -> words`` on lists of strings with the function's own
randomness (``interface="words"``; then no seed can reproduce the draws, and reports say so).
Everything a foreign mechanism returns is checked (shape, integer ids in range, probabilities
that sum to 1), so a faulty implementation gets an error naming what it returned, never a
silently wrong audit.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..embeddings import EmbeddingSpace
from ..mechanisms.base import Mechanism, PrivacyBound

__all__ = [
    "INTERFACES",
    "ExactMechanismProtocol",
    "MechanismError",
    "MechanismProtocol",
    "as_mechanism",
    "checked_mechanism",
    "output_words",
]

#: How a plain function is called: on int64 id arrays with a Generator, or on lists of words.
INTERFACES = ("ids", "words")

#: Tokens per call of a foreign sampler (smaller than for ours: a progress bar that moves, and
#: bounded memory for string lists).
FOREIGN_TOKENS_PER_CALL = 200_000

#: How far a foreign distribution's total may be from 1.
SUM_TOLERANCE = 1e-6


class MechanismError(RuntimeError):
    """The audited mechanism raised, or returned something invalid (wrong shape, ids outside
    its space, non-strings from a word-level function, a distribution that does not sum to
    1): the audit cannot go on, and this is not a verdict about its privacy."""


@runtime_checkable
class MechanismProtocol(Protocol):
    """What the sampling auditors need (:func:`~densitydp.audit`,
    :func:`~densitydp.plausible_deniability`, :func:`~densitydp.semantic_similarity`,
    :func:`~densitydp.compare_laws`, :func:`~densitydp.testing.check_mechanism`).

    ``sample(word_ids, rng)`` takes an int64 array of ids in ``[0, len(space))`` and a
    :class:`numpy.random.Generator` and returns an integer array of ids of the same shape;
    ``privacy_loss_bound(word_id, other_id)`` is the claimed bound (in nats) on
    ``max_y |ln P(y | w) - ln P(y | w')|``. Optional: ``privacy_delta_bound(word_id,
    other_id)`` (an additive term, default 0) and ``privacy_bound()`` (a
    :class:`~densitydp.PrivacyBound`, shown in reports).
    """

    space: EmbeddingSpace

    def sample(self, word_ids: Any, rng: Any) -> Any: ...

    def privacy_loss_bound(self, word_id: Any, other_id: Any) -> Any: ...


@runtime_checkable
class ExactMechanismProtocol(MechanismProtocol, Protocol):
    """A mechanism that states its exact law: ``output_distribution(word_id)`` returns
    ``(output_ids, probabilities)`` (ids in range, probabilities >= 0 summing to 1). Needed by
    :func:`~densitydp.exact_privacy_loss`; used by :func:`~densitydp.audit` for exact losses and
    goodness-of-fit tests, and by :func:`~densitydp.compare_laws` as a reference law."""

    def output_distribution(self, word_id: int) -> Any: ...


def as_mechanism(
    mechanism: Any,
    *,
    space: EmbeddingSpace | None = None,
    claim: PrivacyBound | Callable[[Any, Any], Any] | None = None,
    interface: str | None = None,
    name: str | None = None,
) -> Mechanism:
    """A checked :class:`~densitydp.Mechanism` for ``mechanism``, whatever it is.

    Parameters
    ----------
    mechanism : Mechanism, object or callable
        One of our mechanisms (returned as it is, unless ``claim`` replaces its claim); an
        object providing :class:`MechanismProtocol` (no subclassing needed); or a plain
        function ``fn(word_ids, rng) -> word_ids`` or ``fn(words) -> words``.
    space : EmbeddingSpace, optional
        The space the words live in: required for a function; for an object, its ``space``
        (when given, it must be the same space).
    claim : PrivacyBound or callable, optional
        The claimed guarantee: a :class:`~densitydp.PrivacyBound` (``metric``: the claimed loss
        of a pair is ``epsilon * d(w, w')``, Euclidean in ``space``; ``pure`` / ``approx``:
        ``epsilon``) or a function ``(word_ids, other_ids) -> losses``. Required for a
        function; for an object, replaces its ``privacy_loss_bound`` when given.
    interface : {"ids", "words"}, optional
        How a function is called (default: from its signature, two required positional
        parameters for ``"ids"``, one for ``"words"``).
    name : str, optional
        How reports name the mechanism (default: the object's repr or the function's name).

    Returns
    -------
    Mechanism
        ``exact`` when the object states its law (``output_distribution``, and no
        ``exact = False``).

    Raises
    ------
    TypeError
        A member the auditors need is missing (the message names it), ``space`` or ``claim``
        has the wrong type, or a function's interface cannot be told from its signature.
    ValueError
        ``space`` differs from the object's own, or ``interface`` is not one of
        :data:`INTERFACES`.
    """
    if space is not None and not isinstance(space, EmbeddingSpace):
        raise TypeError(f"`space` must be an EmbeddingSpace; got {type(space).__name__}.")
    if claim is not None and not (isinstance(claim, PrivacyBound) or callable(claim)):
        raise TypeError(
            "`claim` must be a PrivacyBound or a function (word_ids, other_ids) -> losses; got "
            f"{type(claim).__name__}."
        )
    if interface is not None and interface not in INTERFACES:
        raise ValueError(f"`interface` must be one of {', '.join(INTERFACES)}; got {interface!r}.")
    if isinstance(mechanism, Mechanism) and claim is None and name is None:
        _same_space(mechanism.space, space)
        return mechanism
    if isinstance(mechanism, Mechanism) or _has(mechanism, "sample"):
        if interface is not None:
            raise TypeError(
                "`interface` is for plain functions; this object has `sample(word_ids, rng)`."
            )
        own_space = getattr(mechanism, "space", None)
        if own_space is None and space is None:
            raise TypeError(_missing(mechanism, "space", "the EmbeddingSpace its ids index"))
        if own_space is not None:
            if not isinstance(own_space, EmbeddingSpace):
                raise TypeError(
                    f"`mechanism.space` must be an EmbeddingSpace; got {type(own_space).__name__}."
                )
            _same_space(own_space, space)
        exact = getattr(mechanism, "exact", None)
        has_law = _has(mechanism, "output_distribution")
        if exact is True and not has_law:
            raise TypeError(_missing(mechanism, "output_distribution(word_id)", "exact = True"))
        is_exact = has_law and exact is not False
        kind = _ForeignExact if is_exact else _Foreign
        home: EmbeddingSpace = own_space if own_space is not None else space  # type: ignore[assignment]
        return kind(
            home,
            mechanism,
            mechanism.sample,
            "object",
            claim,
            name or repr(mechanism),
        )
    if not callable(mechanism):
        raise TypeError(
            "`mechanism` must be a Mechanism, an object with `space`, `sample(word_ids, rng)` "
            "and `privacy_loss_bound(word_id, other_id)`, or a function; got "
            f"{type(mechanism).__name__}."
        )
    if space is None:
        raise TypeError("`space` is required to audit a function (the words its ids index).")
    chosen = interface or _interface_of(mechanism)
    label = name or getattr(mechanism, "__qualname__", None) or repr(mechanism)
    return _Foreign(space, None, mechanism, chosen, claim, f"{label} (function on {chosen})")


def checked_mechanism(
    mechanism: Any,
    *,
    space: EmbeddingSpace | None = None,
    claim: PrivacyBound | Callable[[Any, Any], Any] | None = None,
    interface: str | None = None,
    needs_claim: bool = False,
    needs_law: bool = False,
) -> Mechanism:
    """:func:`as_mechanism`, then a clear ``TypeError`` when the caller needs a claim
    (``privacy_loss_bound`` or ``claim=``) or an exact law (``output_distribution``) that the
    mechanism does not provide."""
    checked = as_mechanism(mechanism, space=space, claim=claim, interface=interface)
    if (
        needs_claim
        and isinstance(checked, _Foreign)
        and checked.claim is None
        and not _has(checked.wrapped, "privacy_loss_bound")
    ):
        raise TypeError(_NO_CLAIM.format(label=checked._label))
    if needs_law and not checked.exact:
        source = getattr(checked, "wrapped", checked)
        why = (
            "declares exact = False"
            if isinstance(checked, _Foreign)
            and getattr(source, "exact", None) is False
            and _has(source, "output_distribution")
            else "does not state an exact law: it needs `output_distribution(word_id)` "
            "returning (output_ids, probabilities) (see densitydp.ExactMechanismProtocol)"
        )
        raise TypeError(f"`mechanism` ({checked!r}) {why}; sample it with densitydp.audit instead.")
    return checked


_NO_CLAIM = (
    "`mechanism` ({label}) states no claim: it does not provide "
    "`privacy_loss_bound(word_id, other_id)`; give claim=dd.PrivacyBound('metric', epsilon) "
    "(or a function (word_ids, other_ids) -> losses)."
)


def output_words(mechanism: Mechanism, output_ids: Any) -> Any:
    """Words of output ids, including the outputs of a word-level function that are not in the
    space (numbered from ``len(space)`` on, in the order first seen)."""
    extra = getattr(mechanism, "_extra_words", None)
    ids = np.asarray(output_ids, dtype=np.int64)
    n_words = len(mechanism.space)

    def one(i: int) -> str:
        if i < n_words:
            return mechanism.space.words(i)
        return extra[i - n_words] if extra is not None else f"<output {i}>"

    if ids.ndim == 0:
        return one(int(ids))
    return [one(int(i)) for i in ids.ravel()]


def _has(obj: Any, member: str) -> bool:
    return callable(getattr(obj, member, None))


def _missing(obj: Any, member: str, why: str) -> str:
    return (
        f"`mechanism` ({type(obj).__name__}) does not provide `{member}` ({why}); the auditors "
        "need `space`, `sample(word_ids, rng)` and `privacy_loss_bound(word_id, other_id)` "
        "(see densitydp.MechanismProtocol)."
    )


def same_vocabulary_and_vectors(a: EmbeddingSpace, b: EmbeddingSpace) -> bool:
    """Whether two spaces hold the same words, in the same order, with the same vectors."""
    return a is b or (
        len(a) == len(b)
        and a.dim == b.dim
        and list(a.vocabulary) == list(b.vocabulary)
        and np.array_equal(a.vectors, b.vectors)
    )


def _same_space(own: EmbeddingSpace, given: EmbeddingSpace | None) -> None:
    if given is not None and not same_vocabulary_and_vectors(own, given):
        raise ValueError(
            f"`space` ({len(given)} words) is not the mechanism's own space ({len(own)} words): "
            "the words, their order or their vectors differ; leave it out."
        )


def _interface_of(function: Any) -> str:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        if "rng" in signature.parameters:  # fn(word_ids, rng=None): ids, whatever its defaults
            return "ids"
        positional = [
            p
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        if len(positional) == 2:
            return "ids"
        if len(positional) == 1:
            return "words"
    raise TypeError(
        "cannot tell how to call this function from its signature: give interface='ids' for "
        "fn(word_ids, rng) -> word_ids or interface='words' for fn(list_of_words) -> words."
    )


class _Foreign(Mechanism):
    """A foreign sampler seen through :class:`Mechanism`: every output checked."""

    def __init__(
        self,
        space: EmbeddingSpace,
        wrapped: Any,
        sampler: Callable[..., Any],
        interface: str,
        claim: PrivacyBound | Callable[[Any, Any], Any] | None,
        label: str,
    ) -> None:
        super().__init__(space)
        self.wrapped = wrapped
        self.interface = interface
        self.claim = claim
        self._sampler = sampler
        self._label = label
        #: Outputs of a word-level function outside the space, numbered from len(space).
        self._extra_words: list[str] = []
        self._extra_ids: dict[str, int] = {}
        self._tokens_per_call = FOREIGN_TOKENS_PER_CALL
        #: Whether a seed reproduces the draws (not for a word-level function).
        self.reproducible = interface != "words"
        omitted = getattr(wrapped, "omitted_mass", 0.0)
        self.omitted_mass = float(omitted) if isinstance(omitted, (int, float)) else 0.0
        # whether the wrapped ``log_prob`` carries relative precision for every output (a
        # class-level flag on our mechanisms, per object here)
        precise = getattr(wrapped, "log_prob_precise", False) is True and _has(wrapped, "log_prob")
        object.__setattr__(self, "log_prob_precise", precise)
        self._freeze()

    def __repr__(self) -> str:
        return self._label

    # -- sampling ---------------------------------------------------------------------------

    def _sample(self, word_ids: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        if self.interface == "words":
            return self._sample_words(word_ids)
        try:
            returned = self._sampler(word_ids.copy(), generator)
        except Exception as exc:
            raise MechanismError(f"the audited mechanism {self._label} raised: {exc!r}") from exc
        return self._checked_ids(returned, len(word_ids))

    def _sample_words(self, word_ids: np.ndarray) -> np.ndarray:
        words = self.space.words(word_ids)
        try:
            returned = self._sampler(words)
        except Exception as exc:
            raise MechanismError(
                f"the audited function {self._label} raised: {exc!r} (it was called on a list of "
                "words; for fn(word_ids, rng) give interface='ids')"
            ) from exc
        if isinstance(returned, (str, bytes)) or not hasattr(returned, "__iter__"):
            raise MechanismError(
                f"{self._label} must return a list of words; got {type(returned).__name__}."
            )
        returned = list(returned)
        if len(returned) != len(words):
            raise MechanismError(
                f"{self._label} returned {len(returned)} words for {len(words)}: a word-level "
                "function must return one word per input word."
            )
        vocabulary = self.space.vocabulary
        out = np.empty(len(words), dtype=np.int64)
        for i, word in enumerate(returned):
            if not isinstance(word, str):
                raise MechanismError(
                    f"{self._label} returned {type(word).__name__} {word!r} at position {i}; "
                    "a word-level function must return strings."
                )
            found = vocabulary.lookup(word)
            out[i] = found if found >= 0 else self._extra_id(word)
        return out

    def _extra_id(self, word: str) -> int:
        found = self._extra_ids.get(word)
        if found is None:
            found = self._extra_ids[word] = len(self.space) + len(self._extra_words)
            self._extra_words.append(word)
        return found

    def _checked_ids(self, returned: Any, n_tokens: int) -> np.ndarray:
        array = np.asarray(returned)
        if array.shape != (n_tokens,):
            raise MechanismError(
                f"{self._label} returned shape {array.shape} for {n_tokens} ids; `sample` must "
                "return one id per input id, in the input's shape."
            )
        if array.dtype.kind not in "iu":
            raise MechanismError(
                f"{self._label} returned {array.dtype} values; `sample` must return integer "
                "word ids."
            )
        if n_tokens and (array.min() < 0 or array.max() >= len(self.space)):
            bad = int(array[(array < 0) | (array >= len(self.space))][0])
            raise MechanismError(
                f"{self._label} returned id {bad}, outside [0, {len(self.space)}): `sample` must "
                "return ids of its space."
            )
        return array.astype(np.int64, copy=False)

    # -- the claim --------------------------------------------------------------------------

    def privacy_bound(self) -> PrivacyBound:
        """The claimed guarantee: the given ``claim`` when it is a PrivacyBound, else the
        wrapped object's ``privacy_bound()``.

        Raises
        ------
        NotImplementedError
            The claim is stated only pair by pair (a function, or only
            ``privacy_loss_bound``).
        """
        if isinstance(self.claim, PrivacyBound):
            return self.claim
        if self.claim is None and _has(self.wrapped, "privacy_bound"):
            bound = self.wrapped.privacy_bound()
            if isinstance(bound, PrivacyBound):
                return bound
        raise NotImplementedError(f"{self._label} states its claim pair by pair only.")

    def privacy_loss_bound(self, word_id: Any, other_id: Any) -> Any:
        if isinstance(self.claim, PrivacyBound):
            return super().privacy_loss_bound(word_id, other_id)
        if self.claim is None and not _has(self.wrapped, "privacy_loss_bound"):
            raise TypeError(_NO_CLAIM.format(label=self._label))
        source = self.claim if self.claim is not None else self.wrapped.privacy_loss_bound
        return self._stated(source, word_id, other_id, "privacy_loss_bound", math.inf)

    def privacy_delta_bound(self, word_id: Any, other_id: Any) -> Any:
        if self.claim is None and _has(self.wrapped, "privacy_delta_bound"):
            source = self.wrapped.privacy_delta_bound
            return self._stated(source, word_id, other_id, "privacy_delta_bound", 1.0)
        if isinstance(self.claim, PrivacyBound):
            return super().privacy_delta_bound(word_id, other_id)
        shape = np.broadcast(np.asarray(word_id), np.asarray(other_id)).shape
        return 0.0 if shape == () else np.zeros(shape)

    def _stated(self, source: Any, word_id: Any, other_id: Any, member: str, upper: float) -> Any:
        """A claim of the foreign code for the pair(s), checked: real numbers in ``[0, upper]``,
        one per pair (the shape of the ids, broadcast)."""
        where = f"{self._label}.{member}"
        try:
            value = source(word_id, other_id)
        except Exception as exc:
            raise MechanismError(f"{where} raised: {exc!r}") from exc
        shape = np.broadcast(np.asarray(word_id), np.asarray(other_id)).shape
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" or array.shape != shape:
            raise MechanismError(
                f"{where} returned {value!r:.80}; a claim must be a real number per pair "
                f"(shape {shape}), in [0, {upper}]."
            )
        array = array.astype(np.float64)
        bad = np.isnan(array) | (array < 0) | (array > upper)
        if bad.any():
            raise MechanismError(
                f"{where} returned {array[bad].ravel()[0]!r}; a claim must be in [0, {upper}]."
            )
        return float(array) if array.ndim == 0 else array


class _ForeignExact(_Foreign):
    """A foreign mechanism that states its law: ``output_distribution`` checked."""

    exact = True

    def output_distribution(self, word_id: int) -> tuple[np.ndarray, np.ndarray]:
        word_id = self._check_word(word_id)
        try:
            ids, probabilities = self.wrapped.output_distribution(word_id)
        except Exception as exc:
            raise MechanismError(
                f"the audited mechanism {self._label} raised in output_distribution: {exc!r}"
            ) from exc
        ids = np.asarray(ids)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        where = f"{self._label}.output_distribution({word_id})"
        if ids.ndim != 1 or ids.shape != probabilities.shape or ids.dtype.kind not in "iu":
            raise MechanismError(
                f"{where} must return (ids, probabilities): two 1-D arrays of the same length, "
                f"integer ids; got shapes {ids.shape} and {probabilities.shape}, {ids.dtype} ids."
            )
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.space)):
            raise MechanismError(f"{where} returned ids outside [0, {len(self.space)}).")
        if len(np.unique(ids)) != len(ids):
            raise MechanismError(f"{where} returned a repeated id.")
        if not np.isfinite(probabilities).all() or (probabilities < 0).any():
            raise MechanismError(f"{where} returned a negative or non-finite probability.")
        total = float(probabilities.sum())
        if abs(total - 1.0) > SUM_TOLERANCE + self.omitted_mass:
            raise MechanismError(f"{where} sums to {total!r}, not 1 (tolerance {SUM_TOLERANCE:g}).")
        return ids.astype(np.int64), probabilities

    def log_prob(self, word_id: int, outputs: Any) -> np.ndarray:
        """The wrapped ``log_prob`` when it states one (checked: one finite-or-minus-infinity
        value <= 0 per output), else the logarithm of :meth:`output_distribution`."""
        if not _has(self.wrapped, "log_prob"):
            return super().log_prob(word_id, outputs)
        wanted = np.atleast_1d(np.asarray(outputs, dtype=np.int64))
        where = f"{self._label}.log_prob({word_id}, ...)"
        try:
            values = np.asarray(self.wrapped.log_prob(self._check_word(word_id), wanted))
        except Exception as exc:
            raise MechanismError(f"{where} raised: {exc!r}") from exc
        if values.shape != wanted.shape or values.dtype.kind != "f":
            raise MechanismError(
                f"{where} returned {values.dtype} values of shape {values.shape} for "
                f"{len(wanted)} outputs; it must return one float per output."
            )
        if np.isnan(values).any() or (values > 1e-9).any():
            raise MechanismError(f"{where} returned NaN or a log-probability above 0.")
        return np.minimum(values.astype(np.float64), 0.0)

    def log_prob_upper_bound(self, word_id: int, outputs: Any) -> np.ndarray:
        """The wrapped mechanism's certified upper bound on ``ln P(y | w)`` when it states one,
        else ``ln omitted_mass`` (0 for a complete law: no bound)."""
        wanted = np.atleast_1d(np.asarray(outputs, dtype=np.int64))
        stated = getattr(self.wrapped, "log_prob_upper_bound", None)
        if callable(stated):
            return np.asarray(stated(self._check_word(word_id), wanted), dtype=np.float64)
        return np.full(len(wanted), math.log(self.omitted_mass) if self.omitted_mass else 0.0)
