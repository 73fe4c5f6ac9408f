"""Split text into words and separators, map the words, and put the text back together.

The tokenizer is lossless: ``"".join(tokenize(text)) == text`` for every string, and a text whose
words are all mapped to themselves comes back byte for byte. Words are looked up exactly and then
in lower case (GloVe is lower-case); a replacement takes the case pattern of the word it replaces
(``lower``, ``Title``, ``UPPER``; mixed case such as ``iPhone`` is left to the vocabulary's form).
Words that are not in the vocabulary follow a policy: ``"keep"`` (left as they are) or
``"error"``.

Word pieces are maximal runs of letters and digits (Unicode-aware, regex ``[^\\W_]+``), so
``"don't"`` is ``don``, ``'``, ``t`` and ``"state-of-the-art"`` is four words; pass another
``pattern`` for another rule.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
from tqdm.auto import tqdm

from ._io import atomic_write
from ._rng import RNGLike, as_generator
from ._validation import check_choice, check_int
from .embeddings import UnknownWordError, Vocabulary
from .mechanisms.base import Mechanism

__all__ = [
    "WORD_PATTERN",
    "EncodedText",
    "TextCodec",
    "match_case",
    "perturb_file",
    "perturb_text",
    "tokenize",
]

#: Default word pattern: runs of Unicode letters and digits.
WORD_PATTERN = r"[^\W_]+"
UNKNOWN_POLICIES = ("keep", "error")

#: ``replace`` maps an int64 array of word ids to an array of the same shape.
Replace = Callable[[np.ndarray], np.ndarray]


def _compile(pattern: str | None) -> re.Pattern[str]:
    return re.compile(f"({pattern or WORD_PATTERN})")


def tokenize(text: str, *, pattern: str | None = None) -> list[str]:
    """Split ``text`` into alternating pieces ``[separator, word, separator, ..., separator]``.

    Odd positions are words, even positions the (possibly empty) text between them, so the
    list always has odd length and ``"".join(tokenize(text)) == text``.

    >>> tokenize("The king's men.")
    ['', 'The', ' ', 'king', "'", 's', ' ', 'men', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str; got {type(text).__name__}.")
    return _compile(pattern).split(text)


def match_case(word: str, template: str) -> str:
    """Give ``word`` the case pattern of ``template``.

    >>> match_case("queen", "King"), match_case("queen", "KING"), match_case("queen", "king")
    ('Queen', 'QUEEN', 'queen')
    """
    letters = [c for c in template if c.isalpha()]
    if not letters or template.islower():
        return word
    if template.isupper():
        if len(letters) > 1:
            return word.upper()
        return word[:1].upper() + word[1:]  # "I", "A": a capital, not shouting
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return word[:1].upper() + word[1:]
    return word


@dataclass(frozen=True)
class EncodedText:
    """A tokenized text: ``pieces`` (see :func:`tokenize`) and the id of each word piece.

    ``word_ids[i]`` belongs to ``pieces[2 * i + 1]``; -1 marks a word outside the vocabulary.
    """

    pieces: list[str]
    word_ids: np.ndarray

    @property
    def known(self) -> np.ndarray:
        """Boolean mask of the words found in the vocabulary."""
        return self.word_ids >= 0


class TextCodec:
    """Encode texts to word ids and decode mapped ids back to text.

    Parameters
    ----------
    vocabulary : Vocabulary
        Usually ``space.vocabulary``.
    unknown : {"keep", "error"}
        What to do with a word outside the vocabulary: keep it unchanged, or raise
        :class:`~densitydp.embeddings.UnknownWordError` naming it and its position.
    pattern : str, optional
        Regular expression of a word piece (default :data:`WORD_PATTERN`).

    Examples
    --------
    >>> codec = TextCodec(Vocabulary(["the", "king", "queen"]))
    >>> swap = {1: 2, 2: 1}
    >>> codec.map_texts("The KING met Anne.", lambda ids: np.array([swap.get(i, i) for i in ids]))
    'The QUEEN met Anne.'
    """

    def __init__(
        self, vocabulary: Vocabulary, *, unknown: str = "keep", pattern: str | None = None
    ) -> None:
        if not isinstance(vocabulary, Vocabulary):
            raise TypeError(f"`vocabulary` must be a Vocabulary; got {type(vocabulary).__name__}.")
        self.vocabulary = vocabulary
        self.unknown = check_choice(unknown, "unknown", UNKNOWN_POLICIES)
        self._regex = _compile(pattern)

    def __repr__(self) -> str:
        return (
            f"TextCodec(n_words={len(self.vocabulary)}, unknown={self.unknown!r}, "
            f"pattern={self._regex.pattern[1:-1]!r})"
        )

    def encode(self, text: str, *, where: str = "") -> EncodedText:
        """Tokenize ``text`` and look its words up (exact form, then lower case)."""
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a str; got {type(text).__name__}.")
        pieces = self._regex.split(text)
        lookup = self.vocabulary.lookup
        ids = np.fromiter((lookup(w) for w in pieces[1::2]), dtype=np.int64, count=len(pieces) // 2)
        if self.unknown == "error" and (ids < 0).any():
            position = int(np.flatnonzero(ids < 0)[0])
            offset = sum(len(p) for p in pieces[: 2 * position + 1])
            raise UnknownWordError(
                f"unknown word {pieces[2 * position + 1]!r} at character {offset}{where} "
                "(not in the vocabulary; pass unknown='keep' to leave such words unchanged)."
            )
        return EncodedText(pieces, ids)

    def decode(self, encoded: EncodedText, new_ids: np.ndarray) -> str:
        """Rebuild the text with each known word replaced by ``new_ids`` (same length).

        A word whose id is unchanged keeps its original spelling, so the identity mapping gives
        the input back exactly.
        """
        if len(new_ids) != len(encoded.word_ids):
            raise ValueError(
                f"`new_ids` must have one id per word ({len(encoded.word_ids)}); "
                f"got {len(new_ids)}."
            )
        pieces = list(encoded.pieces)
        words = self.vocabulary
        for position, (old, new) in enumerate(zip(encoded.word_ids, new_ids, strict=True)):
            if old >= 0 and new != old:
                index = 2 * position + 1
                pieces[index] = match_case(words[int(new)], pieces[index])
        return "".join(pieces)

    def encode_batch(
        self, texts: Sequence[str], where: Callable[[int], str] = lambda i: ""
    ) -> tuple[list[EncodedText], np.ndarray, np.ndarray]:
        """Encode several texts: their encodings, the ids of all their known words concatenated
        (one vectorised call can map them all), and the number of known words of each."""
        encoded = [self.encode(text, where=where(i)) for i, text in enumerate(texts)]
        known = [e.word_ids[e.known] for e in encoded]
        flat = np.concatenate(known) if known else np.empty(0, dtype=np.int64)
        return encoded, flat, np.array([len(k) for k in known], dtype=np.int64)

    def decode_batch(
        self, encoded: Sequence[EncodedText], counts: np.ndarray, new_ids: np.ndarray
    ) -> list[str]:
        """Inverse of :meth:`encode_batch`: each text with its known words replaced by its
        slice of ``new_ids``."""
        out, start = [], 0
        for item, count in zip(encoded, counts, strict=True):
            ids = item.word_ids.copy()
            ids[item.known] = new_ids[start : start + count]
            start += count
            out.append(self.decode(item, ids))
        return out

    def _map_batch(
        self, texts: Sequence[str], replace: Replace, where: Callable[[int], str]
    ) -> list[str]:
        """Encode a batch, call ``replace`` once on all its known ids, decode."""
        encoded, flat, counts = self.encode_batch(texts, where)
        mapped = np.asarray(replace(flat)) if flat.size else flat
        if mapped.shape != flat.shape:
            raise ValueError(
                f"`replace` must return one id per input id; got shape {mapped.shape} "
                f"for {flat.shape}."
            )
        return self.decode_batch(encoded, counts, mapped)

    @overload
    def map_texts(  # type: ignore[overload-overlap]
        self, texts: str, replace: Replace, *, batch_size: int = ...
    ) -> str: ...
    @overload
    def map_texts(  # type: ignore[overload-overlap]
        self, texts: list[str] | tuple[str, ...], replace: Replace, *, batch_size: int = ...
    ) -> list[str]: ...
    @overload
    def map_texts(
        self, texts: Iterable[str], replace: Replace, *, batch_size: int = ...
    ) -> Iterator[str]: ...
    def map_texts(self, texts: Any, replace: Replace, *, batch_size: int = 4096) -> Any:
        """Map the words of one text, a sequence of texts, or a stream of texts.

        ``replace`` receives the ids of all known words of a batch at once (one vectorised call
        per ``batch_size`` texts) and returns their new ids.

        Returns
        -------
        str, list of str or iterator of str
            A str for a str; a list for a list or tuple; for any other iterable (a generator, an
            open file) a lazy iterator that holds at most ``batch_size`` texts in memory.
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if isinstance(texts, str):
            return self._map_batch([texts], replace, lambda i: "")[0]
        if isinstance(texts, (list, tuple)):
            return [
                out for batch in self._batches(iter(texts), replace, batch_size) for out in batch
            ]
        if not isinstance(texts, Iterable):
            raise TypeError(
                f"`texts` must be a str or an iterable of str; got {type(texts).__name__}."
            )
        return (out for batch in self._batches(iter(texts), replace, batch_size) for out in batch)

    def _batches(
        self, texts: Iterator[str], replace: Replace, batch_size: int, label: str = "text"
    ) -> Iterator[list[str]]:
        start = 0
        while True:
            batch = [t for _, t in zip(range(batch_size), texts, strict=False)]
            if not batch:
                return
            yield self._map_batch(batch, replace, functools.partial(_place, label, start))
            start += len(batch)

    def map_file(
        self,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        replace: Replace,
        *,
        encoding: str = "utf-8",
        batch_lines: int = 4096,
        progress: bool | None = None,
    ) -> Path:
        """Stream ``source`` line by line into ``destination``, mapping the words.

        Memory is bounded by ``batch_lines`` lines. Line endings and bytes that are not valid in
        ``encoding`` are preserved (``surrogateescape``). The output is written to a temporary file
        in the destination folder and renamed into place only when complete; ``source`` is never
        modified and may not be the destination.
        """
        source, destination = Path(source), Path(destination)
        if not source.is_file():
            raise FileNotFoundError(f"`source` must be an existing file; got {str(source)!r}.")
        if destination.exists() and destination.resolve() == source.resolve():
            raise ValueError(
                "`destination` must differ from `source` (the input is never modified)."
            )
        batch_lines = check_int(batch_lines, "batch_lines", minimum=1)
        disable = None if progress is None else not progress
        with (
            open(source, encoding=encoding, errors="surrogateescape", newline="") as reader,
            atomic_write(
                destination, "w", encoding=encoding, errors="surrogateescape", newline=""
            ) as writer,
            tqdm(
                total=source.stat().st_size,
                unit="B",
                unit_scale=True,
                desc=source.name,
                disable=disable,
                leave=False,
            ) as bar,
        ):
            lines = _counted(reader, bar, encoding)
            for batch in self._batches(lines, replace, batch_lines, label="line"):
                writer.writelines(batch)
        return destination


def _place(label: str, first: int, position: int) -> str:
    """Where the text at ``position`` of a batch starting at ``first`` is: " of line 12"."""
    return f" of {label} {first + position + 1}"


def _counted(lines: Iterable[str], bar: tqdm, encoding: str) -> Iterator[str]:
    """Yield ``lines``, advancing ``bar`` by each line's size in bytes."""
    for line in lines:
        bar.update(len(line.encode(encoding, "surrogateescape")))
        yield line


# ----------------------------------------------------------------------------- perturbation


def perturb_text(
    texts: Any,
    mechanism: Mechanism,
    *,
    rng: RNGLike = None,
    unknown: str = "keep",
    pattern: str | None = None,
    batch_size: int = 4096,
) -> Any:
    """Replace every known word of ``texts`` by ``mechanism``'s noisy substitute.

    Whitespace, punctuation and words outside the vocabulary (``unknown="keep"``) are kept as
    they are; a substitute takes the case pattern of the word it replaces. One call to
    ``mechanism.sample`` per batch of texts.

    Parameters
    ----------
    texts : str, list of str, or iterable of str
        One document (must not be empty), a list (returns a list) or a stream (returns a lazy
        iterator holding at most ``batch_size`` texts).
    mechanism : Mechanism
        Any densitydp mechanism; its space gives the vocabulary.
    rng : None, int or numpy.random.Generator
        The same seed gives the same output.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.EmbeddingSpace(["the", "king", "queen"], [[0.0, 0.0], [4.0, 0.0], [4.0, 0.1]])
    >>> dd.perturb_text("The King!", dd.ExponentialMechanism(space, epsilon=100.0), rng=0)
    'The King!'
    """
    if not isinstance(mechanism, Mechanism):
        raise TypeError(
            f"`mechanism` must be a densitydp Mechanism; got {type(mechanism).__name__}."
        )
    if isinstance(texts, str) and not texts:
        raise ValueError("`texts` must be a non-empty string or an iterable of strings; got ''.")
    generator = as_generator(rng)
    codec = TextCodec(mechanism.space.vocabulary, unknown=unknown, pattern=pattern)
    return codec.map_texts(
        texts, lambda ids: mechanism.sample(ids, rng=generator), batch_size=batch_size
    )


def perturb_file(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    mechanism: Mechanism,
    *,
    rng: RNGLike = None,
    unknown: str = "keep",
    pattern: str | None = None,
    encoding: str = "utf-8",
    batch_lines: int = 4096,
    progress: bool | None = None,
) -> Path:
    """Perturb a text file line by line into ``destination`` (atomic; see
    :meth:`TextCodec.map_file`), with a progress bar in bytes."""
    generator = as_generator(rng)
    codec = TextCodec(mechanism.space.vocabulary, unknown=unknown, pattern=pattern)
    return codec.map_file(
        source,
        destination,
        lambda ids: mechanism.sample(ids, rng=generator),
        encoding=encoding,
        batch_lines=batch_lines,
        progress=progress,
    )
