"""Split text into words and separators, map the words, and put the text back together.

The tokenizer is lossless: ``"".join(tokenize(text)) == text`` for every string, and a text whose
words are all mapped to themselves comes back byte for byte (:class:`TextCodec`). Words are looked
up in their exact form, then their other case forms (:meth:`Vocabulary.lookup`); a replacement
takes the case pattern of the word it replaces (``lower``, ``Title``, ``UPPER``; mixed case such
as ``iPhone`` is left to the vocabulary's form).
Words that are not in the vocabulary follow a policy (:data:`UNKNOWN_POLICIES`): ``"mask"``
(replaced by a mask token, ``"[UNK]"`` by default: the default of every call that privatises
text), ``"drop"`` (removed), ``"keep"`` (left as they are: no guarantee covers them, and
:func:`perturb_text` warns) or ``"error"``.

Word pieces are maximal runs of letters and digits, each with the combining marks that follow
it (Unicode-aware; a vowel sign or a decomposed accent stays with its letter, and a mark whose base
is punctuation or a space stays with that separator), so ``"don't"`` is ``don``, ``'``, ``t`` and
``"state-of-the-art"`` is four words; pass another ``pattern`` for another rule. Texts that differ
only in their Unicode normalization form (NFC, NFD) give the same words and the same output for
the same seed, each output word in its input word's form (see ``docs/text.md``).

Files and streams are read in bounded chunks: memory is bounded by bytes, not by lines (see
:meth:`TextCodec.map_file`).
"""

from __future__ import annotations

import codecs
import functools
import itertools
import math
import os
import re
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, overload

import numpy as np
from tqdm.auto import tqdm

from ._io import atomic_write
from ._rng import RNGLike, as_generator, seed_entropy
from ._validation import check_choice, check_int
from .embeddings import UnknownWordError, Vocabulary
from .mechanisms.base import Mechanism, PrivacyBound, PrivacyWarning

__all__ = [
    "DEFAULT_MASK",
    "UNKNOWN_POLICIES",
    "WORD_PATTERN",
    "EncodedText",
    "PerturbationReport",
    "TextCodec",
    "match_case",
    "perturb_file",
    "perturb_text",
    "perturb_texts",
    "tokenize",
]


def _combining_marks() -> str:
    """A regex character class of every Unicode combining mark (categories Mn, Mc, Me) of this
    Python's Unicode database: vowel signs, accents of decomposed text, variation selectors."""
    ranges: list[str] = []
    start = None
    for code in [*range(0x0300, 0x1F000), *range(0xE0100, 0xE01F0), 0x10FFFF]:
        mark = unicodedata.category(chr(code)).startswith("M") and code != 0x10FFFF
        if mark and start is None:
            start = code
        elif not mark and start is not None:
            last = code - 1
            ranges.append(_escape(start) if last == start else f"{_escape(start)}-{_escape(last)}")
            start = None
    return "[" + "".join(ranges) + "]"


def _escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


_MARKS = _combining_marks()

#: Default word pattern: runs of Unicode letters and digits, each followed by its combining
#: marks (so that a vowel sign or the accent of decomposed text stays with its letter; a mark
#: after punctuation, a space or at the start of a text stays with that separator). Word
#: boundaries are the same in every canonical normalization form (NFC, NFD).
WORD_PATTERN = rf"(?:[^\W_]{_MARKS}*)+"
#: What can happen to a word outside the vocabulary; the first is the default of every call that
#: privatises text.
UNKNOWN_POLICIES = ("mask", "drop", "keep", "error")
#: The default replacement of an unknown word under ``unknown="mask"``.
DEFAULT_MASK = "[UNK]"

_DEFAULT_REGEX = re.compile(f"({WORD_PATTERN})")
#: The last character that can end a chunk of a long line: one that is neither a letter, a digit
#: nor a combining mark (so a cut before it never splits a word or a combining sequence).
_LAST_SEPARATOR = re.compile(rf"(?s).*(?:[^\w{_MARKS[1:-1]}]|_)")
_FIRST_SEPARATOR = re.compile(rf"(?:[^\w{_MARKS[1:-1]}]|_)")
_NEWLINE = re.compile("\r\n|\r|\n")

#: ``replace`` maps an int64 array of word ids to an array of the same shape.
Replace = Callable[[np.ndarray], np.ndarray]
#: ``observe(encoded, known_ids, new_ids, counts, ends)`` sees every batch a codec maps: the
#: encoded fragments (a long text may be cut between words into several fragments, over several
#: batches), the known ids, their new ids, the known words of each fragment, and whether each
#: fragment ends its text.
Observe = Callable[[list["EncodedText"], np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]

#: Streaming limits (characters of text, word tokens): chunks a long line is cut into, the
#: longest run of letters, digits and marks accepted without a separator, and the size of one
#: vectorised batch besides its number of texts (see ``docs/text.md``).
CHUNK_CHARS = 1 << 18
MAX_RUN_CHARS = 1 << 20
BATCH_WORDS = 1 << 17
BATCH_CHARS = 1 << 22
_READ_BYTES = 1 << 20


def _compile(pattern: str | None) -> re.Pattern[str]:
    """The splitting regex of ``pattern`` (one capturing group around it)."""
    if pattern is None:
        return _DEFAULT_REGEX
    if not isinstance(pattern, str):
        raise TypeError(f"`pattern` must be a str or None; got {type(pattern).__name__}.")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"`pattern` must be a valid regular expression; got {exc}.") from None
    if compiled.groups:
        raise ValueError(
            "`pattern` must not hold capturing groups (they would split words into pieces that "
            f"are published as separators); use (?:...) instead; got {pattern!r}."
        )
    if compiled.match(""):
        raise ValueError(f"`pattern` must not match the empty string; got {pattern!r}.")
    return re.compile(f"({pattern})")


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
    """Give ``word`` the case pattern of ``template``: lower, Title or UPPER (a single capital
    letter, as in ``I``, counts as Title); a template without letters or with mixed case
    (``iPhone``) leaves the word in its vocabulary form.

    >>> match_case("queen", "King"), match_case("queen", "KING"), match_case("Paris", "king")
    ('Queen', 'QUEEN', 'paris')
    """
    letters = [c for c in template if c.isalpha()]
    if not letters:
        return word
    if template.islower():
        return word.lower()
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
        Usually ``space.vocabulary``. Words are looked up with
        :meth:`~densitydp.embeddings.Vocabulary.lookup` (exact form, then the other case forms).
    unknown : {"keep", "mask", "drop", "error"}
        What to do with a word outside the vocabulary: keep it unchanged (the codec's default,
        as a general mapper; :func:`perturb_text` defaults to ``"mask"``), replace it by
        ``mask_token``, remove it (with one of the blanks around it, see :meth:`decode`), or
        raise :class:`~densitydp.embeddings.UnknownWordError` naming its position.
    mask_token : str
        The replacement under ``unknown="mask"`` (default :data:`DEFAULT_MASK`), written as is;
        no line breaks.
    pattern : str, optional
        Regular expression of a word piece (default :data:`WORD_PATTERN`), without capturing
        groups (use ``(?:...)``).
    keep_spelling : bool
        True (the codec's default): a known word mapped to itself keeps its input spelling, so
        the identity mapping returns the input byte for byte. False (what
        :func:`perturb_text` uses): every known word is written from its output word and the
        input's case pattern only (:func:`match_case`), so a word that comes back unchanged
        looks exactly like one the mechanism drew: otherwise ``kING``, ``Nasa`` (vocabulary
        ``NASA``) or ``strasse`` (``straße``) would only ever come out of themselves.

    Examples
    --------
    >>> codec = TextCodec(Vocabulary(["the", "king", "queen"]))
    >>> swap = {1: 2, 2: 1}
    >>> codec.map_texts("The KING met Anne.", lambda ids: np.array([swap.get(i, i) for i in ids]))
    'The QUEEN met Anne.'
    >>> TextCodec(codec.vocabulary, unknown="mask").map_texts("The king met Anne.", lambda a: a)
    'The king [UNK] [UNK].'
    >>> TextCodec(codec.vocabulary, unknown="drop").map_texts("The king met Anne.", lambda a: a)
    'The king.'
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        *,
        unknown: str = "keep",
        mask_token: str = DEFAULT_MASK,
        pattern: str | None = None,
        keep_spelling: bool = True,
    ) -> None:
        if not isinstance(vocabulary, Vocabulary):
            raise TypeError(f"`vocabulary` must be a Vocabulary; got {type(vocabulary).__name__}.")
        if not isinstance(mask_token, str):
            raise TypeError(f"`mask_token` must be a str; got {type(mask_token).__name__}.")
        if not mask_token or any(
            c in mask_token for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
        ):
            raise ValueError(
                "`mask_token` must be a non-empty string without line breaks (an empty mask "
                "is unknown='drop'; a line break would shift lines); got "
                f"{mask_token!r}."
            )
        self.vocabulary = vocabulary
        self.unknown = check_choice(unknown, "unknown", UNKNOWN_POLICIES)
        self.mask_token = mask_token
        self.keep_spelling = bool(keep_spelling)
        self._regex = _compile(pattern)
        # memos (bounded, see _MEMO_LIMIT): a word piece's id, a template's style, and the
        # output spelling of (style, id); the vocabulary is immutable, so they never go stale
        self._ids = _IdMemo(vocabulary)
        self._styles = _StyleMemo()
        self._rendered = [_RenderMemo(vocabulary, style) for style in range(8)]
        # the batch path's memos: piece -> 8 * id + style (-1 unknown); 8 * id + style -> output
        self._codes = _CodeMemo(self._ids, self._styles)
        self._outputs = _OutputMemo(self._rendered, self.mask_token)

    def __repr__(self) -> str:
        mask = f", mask_token={self.mask_token!r}" if self.unknown == "mask" else ""
        return (
            f"TextCodec(n_words={len(self.vocabulary)}, unknown={self.unknown!r}{mask}, "
            f"pattern={self._regex.pattern[1:-1]!r})"
        )

    def encode(self, text: str, *, where: str = "") -> EncodedText:
        """Tokenize ``text`` and look its words up: their NFC form (the form of GloVe and most
        vocabularies; then NFD), each with the case back-off of
        :meth:`~densitydp.embeddings.Vocabulary.lookup`. Canonically equivalent spellings
        (``"café"`` composed or decomposed) therefore get the same id."""
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a str; got {type(text).__name__}.")
        return self._encode(text, where)

    def _encode(self, text: str, where: str | Callable[[], str], offset: int = 0) -> EncodedText:
        """:meth:`encode` of a fragment starting at character ``offset`` of its text."""
        pieces = self._regex.split(text)
        memo = self._ids
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        ids = np.fromiter(
            map(memo.__getitem__, pieces[1::2]), dtype=np.int64, count=len(pieces) // 2
        )
        if self.unknown == "error" and (ids < 0).any():
            position = int(np.flatnonzero(ids < 0)[0])
            offset += sum(len(p) for p in pieces[: 2 * position + 1])
            raise UnknownWordError(
                f"unknown word {pieces[2 * position + 1]!r} at character {offset}"
                f"{where() if callable(where) else where} "
                "(not in the vocabulary; with the unknown-word policy mask, drop or keep the "
                "call goes on)."
            )
        return EncodedText(pieces, ids)

    def decode(self, encoded: EncodedText, new_ids: np.ndarray) -> str:
        """Rebuild the text with each known word replaced by ``new_ids`` (same length).

        A word whose id is unchanged keeps its original spelling, so the identity mapping gives
        the input back exactly when every word is known (or ``unknown="keep"``). A replaced word
        takes the case pattern of the input word (:func:`match_case`). Unknown words are kept,
        replaced by ``mask_token`` or dropped; a dropped word takes the spaces and tabs that
        follow it along when it stands at the start of the text or after a blank, so that
        ``"met Anne there"`` becomes ``"met there"``, not ``"met  there"``.
        """
        if len(new_ids) != len(encoded.word_ids):
            raise ValueError(
                f"`new_ids` must have one id per word ({len(encoded.word_ids)}); "
                f"got {len(new_ids)}."
            )
        pieces = self._output_pieces(encoded, new_ids)
        if self.unknown == "drop":
            for index in range(1, len(pieces), 2):
                if pieces[index] is None:
                    pieces[index] = ""
                    _close_gap(pieces, index)  # type: ignore[arg-type]
        return "".join(pieces)  # type: ignore[arg-type]

    def _output_pieces(self, encoded: EncodedText, new_ids: np.ndarray) -> list[str | None]:
        """The pieces of ``encoded`` with each word mapped: a known word written from its new
        id in the input word's case pattern and normalization form, an unknown one kept or
        masked; ``None`` marks a dropped word."""
        return self._render(encoded.pieces, encoded.word_ids.tolist(), np.asarray(new_ids).tolist())

    def _render(self, pieces: list[str], old: list[int], new: list[int]) -> list[str | None]:
        """:meth:`_output_pieces` on lists of ids."""
        if len(old) != len(new):
            raise ValueError(f"`new_ids` must have one id per word ({len(old)}); got {len(new)}.")
        out: list[str | None] = list(pieces)
        out[1::2] = self._render_words(pieces[1::2], old, new)
        return out

    def _render_words(
        self, templates: Iterable[str], old: list[int], new: list[int]
    ) -> list[str | None]:
        """The output of each word: ``templates`` are the input words, ``old`` their ids (-1
        unknown), ``new`` their new ids; ``None`` marks a dropped word."""
        styles, rendered = self._styles, self._rendered
        if len(styles) > _MEMO_LIMIT:
            styles.clear()
        policy = self.unknown
        unknown: str | None = self.mask_token if policy == "mask" else None
        keep_unknown = policy in ("keep", "error")
        if self.keep_spelling:
            return [
                (template if n == o else rendered[styles[template]][n])
                if o >= 0
                else (template if keep_unknown else unknown)
                for template, o, n in zip(templates, old, new, strict=True)
            ]
        return [
            rendered[styles[template]][n] if o >= 0 else (template if keep_unknown else unknown)
            for template, o, n in zip(templates, old, new, strict=True)
        ]

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

    @overload
    def map_texts(  # type: ignore[overload-overlap]
        self, texts: str, replace: Replace, *, batch_size: int = ..., observe: Observe | None = ...
    ) -> str: ...
    @overload
    def map_texts(  # type: ignore[overload-overlap]
        self,
        texts: list[str] | tuple[str, ...],
        replace: Replace,
        *,
        batch_size: int = ...,
        observe: Observe | None = ...,
    ) -> list[str]: ...
    @overload
    def map_texts(
        self,
        texts: Iterable[str],
        replace: Replace,
        *,
        batch_size: int = ...,
        observe: Observe | None = ...,
    ) -> Iterator[str]: ...
    def map_texts(
        self,
        texts: Any,
        replace: Replace,
        *,
        batch_size: int = 4096,
        observe: Observe | None = None,
    ) -> Any:
        """Map the words of one text, a sequence of texts, or a stream of texts.

        ``replace`` receives the ids of all known words of a batch at once (one vectorised call
        per ``batch_size`` texts) and returns their new ids. ``observe``, when given, is called
        once per batch with ``(encoded, known_ids, new_ids, counts)`` (what
        :class:`PerturbationReport` counts).

        Returns
        -------
        str, list of str or iterator of str
            A str for a str; a list for a list, tuple or other sized, indexable sequence (numpy
            array, pandas Series); for any other iterable (a generator, an open file) a lazy
            iterator that holds at most ``batch_size`` texts in memory. Bytes, mappings and sets
            are refused (``TypeError``).
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if isinstance(texts, str):
            return "".join(self._whole_texts(iter([texts]), replace, batch_size, observe, None))
        if isinstance(texts, (bytes, bytearray, Mapping, AbstractSet)):
            what = (
                "bytes (decode them first)"
                if isinstance(texts, (bytes, bytearray))
                else (f"an unordered {type(texts).__name__}")
            )
            raise TypeError(f"`texts` must be a str or an ordered iterable of str; got {what}.")
        if not isinstance(texts, (list, tuple)) and _is_sequence(texts):
            texts = list(texts)  # a numpy array, a pandas Series: a list comes back
        if isinstance(texts, (list, tuple)):
            return list(self._whole_texts(iter(texts), replace, batch_size, observe))
        if not isinstance(texts, Iterable):
            raise TypeError(
                f"`texts` must be a str or an iterable of str; got {type(texts).__name__}."
            )
        return self._whole_texts(iter(texts), replace, batch_size, observe)

    def _whole_texts(
        self,
        texts: Iterator[str],
        replace: Replace,
        batch_size: int,
        observe: Observe | None,
        label: str | None = "text",
    ) -> Iterator[str]:
        """One output string per input text (the texts are whole fragments)."""
        parts: list[str] = []
        fragments = ((_checked_text(text), True) for text in texts)
        for output, ends in self._stream(fragments, replace, batch_size, label, observe):
            parts.append(output)
            if ends:
                yield "".join(parts)
                parts.clear()

    def _stream(
        self,
        fragments: Iterable[tuple[str, bool]],
        replace: Replace,
        batch_lines: int,
        label: str | None,
        observe: Observe | None,
    ) -> Iterator[tuple[str, bool]]:
        """Map a stream of text fragments ``(fragment, ends_its_text)``; yield the output as
        ``(fragment, ends_its_text)``, batch by batch as :meth:`_stream_general` does.

        The common batch (``batch_lines`` whole texts, under the word and character limits,
        no word refused) is mapped in one pass over all its words; the first batch that is
        not hands the rest of the stream to :meth:`_stream_general`, which starts a batch at
        the same place: the batches, hence the draws and the output, are the same.
        """
        fragments = iter(fragments)
        if self.unknown == "drop":
            yield from self._stream_general(fragments, replace, batch_lines, label, observe)
            return
        split, memo, first = self._regex.split, self._codes, 0
        while chunk := list(itertools.islice(fragments, batch_lines)):
            texts = [part for part, _ in chunk]
            pieces = [split(text) for text in texts]
            sizes = [len(p) >> 1 for p in pieces]
            n_words = sum(sizes)
            simple = (
                all(ends for _, ends in chunk)
                and n_words < BATCH_WORDS
                and sum(map(len, texts)) < BATCH_CHARS
            )
            if simple:
                if len(memo) > _MEMO_LIMIT:
                    memo.clear()
                codes = np.fromiter(
                    map(memo.__getitem__, itertools.chain.from_iterable(p[1::2] for p in pieces)),
                    dtype=np.int64,
                    count=n_words,
                )
                simple = self.unknown != "error" or not (codes < 0).any()
            if not simple:  # the general path from here on (it also names a refused word)
                rest = itertools.chain(chunk, fragments)
                yield from self._stream_general(rest, replace, batch_lines, label, observe, first)
                return
            first += len(chunk)
            yield from self._map_batch(pieces, sizes, codes, replace, observe)

    def _map_batch(
        self,
        pieces: list[list[str]],
        sizes: list[int],
        codes: np.ndarray,
        replace: Replace,
        observe: Observe | None,
    ) -> Iterator[tuple[str, bool]]:
        """One batch of whole texts (their pieces, words per text and every word's code, see
        :class:`_CodeMemo`): one ``replace`` call, then each text's output."""
        every = codes >> 3  # the ids (-1 stays -1)
        known = every >= 0
        flat = every[known]
        mapped = self._checked_ids(np.asarray(replace(flat)) if flat.size else flat, flat)
        bounds = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        if observe is not None:
            seen = np.zeros(len(every) + 1, dtype=np.int64)
            np.cumsum(known, out=seen[1:])
            starts = bounds.tolist()
            encoded = [
                EncodedText(p, every[a:b])
                for p, a, b in zip(pieces, starts, starts[1:], strict=False)
            ]
            observe(encoded, flat, mapped, np.diff(seen[bounds]), np.ones(len(sizes), bool))
        new = every.copy()
        new[known] = mapped
        if self.keep_spelling:
            templates = itertools.chain.from_iterable(p[1::2] for p in pieces)
            words = self._render_words(templates, every.tolist(), new.tolist())
        else:  # every known word written from (new id, style): one memo look-up each
            keys = np.where(known, (new << 3) | (codes & 7), -1)
            words = list(map(self._outputs.__getitem__, keys.tolist()))
            if self.unknown != "mask" and not known.all():  # unknown words kept as they are
                inputs = list(itertools.chain.from_iterable(p[1::2] for p in pieces))
                for position in np.flatnonzero(~known).tolist():
                    words[position] = inputs[position]
        first = 0
        for piece_list, size in zip(pieces, sizes, strict=True):
            piece_list[1::2] = words[first : first + size]  # type: ignore[assignment]
            first += size
            yield "".join(piece_list), True

    def _stream_general(
        self,
        fragments: Iterable[tuple[str, bool]],
        replace: Replace,
        batch_lines: int,
        label: str | None,
        observe: Observe | None,
        first_text: int = 0,
    ) -> Iterator[tuple[str, bool]]:
        """Map a stream of text fragments ``(fragment, ends_its_text)``; yield the output as
        ``(fragment, ends_its_text)``. ``first_text`` is the index of the first one's text.

        A batch (one ``replace`` call) closes after ``batch_lines`` texts end, after
        ``batch_words`` word tokens, or once it spans ``batch_chars`` characters (at that
        character, or at the end of the word holding it). These rules depend on the text only,
        never on how it was cut into fragments, so the output is the same for every chunking.
        """
        batch_words, batch_chars = BATCH_WORDS, BATCH_CHARS
        batch: list[_Fragment] = []
        n_ended = n_words = span = 0
        text, offset = first_text, 0
        writer = _DropWriter() if self.unknown == "drop" else None
        for part, ends in fragments:
            encoded = self._encode(part, functools.partial(_place, label, text, 0), offset)
            offset = 0 if ends else offset + len(part)
            n_fragment_words = len(encoded.word_ids)
            if n_words + n_fragment_words < batch_words and span + len(part) < batch_chars:
                batch.append(_Fragment(encoded, ends))  # the common case: no cut inside
                n_words += n_fragment_words
                span += len(part)
            else:
                for piece, close in _cut(encoded, ends, n_words, span, batch_words, batch_chars):
                    batch.append(piece)
                    if close:
                        yield from self._flush(batch, replace, observe, writer)
                        n_ended = n_words = span = 0
                n_words = sum(len(f.encoded.word_ids) for f in batch)
                span = sum(len(p) for f in batch for p in f.encoded.pieces)
            if ends:
                text += 1
                n_ended += 1
                if n_ended >= batch_lines:
                    yield from self._flush(batch, replace, observe, writer)
                    n_ended = n_words = span = 0
        yield from self._flush(batch, replace, observe, writer)

    def _flush(
        self,
        batch: list[_Fragment],
        replace: Replace,
        observe: Observe | None,
        writer: _DropWriter | None,
    ) -> Iterator[tuple[str, bool]]:
        """Call ``replace`` once on the batch's known ids; yield its output fragments."""
        if not batch:
            return
        encoded = [f.encoded for f in batch]
        sizes = [len(e.word_ids) for e in encoded]
        every = np.concatenate([e.word_ids for e in encoded]) if encoded else _NO_IDS
        known = every >= 0
        flat = every[known]
        bounds = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        seen = np.zeros(len(every) + 1, dtype=np.int64)
        np.cumsum(known, out=seen[1:])
        counts = np.diff(seen[bounds])
        mapped = self._checked_ids(np.asarray(replace(flat)) if flat.size else flat, flat)
        if observe is not None:
            observe(encoded, flat, mapped, counts, np.array([f.ends for f in batch]))
        new = every.copy()
        new[known] = mapped
        old_list, new_list = every.tolist(), new.tolist()
        first = 0
        for fragment, size in zip(batch, sizes, strict=True):
            pieces = self._render(
                fragment.encoded.pieces,
                old_list[first : first + size],
                new_list[first : first + size],
            )
            first += size
            if writer is None:
                yield "".join(pieces), fragment.ends  # type: ignore[arg-type]
            else:
                yield writer.write(pieces, fragment.ends), fragment.ends
        batch.clear()

    def _checked_ids(self, mapped: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """``replace``'s answer, checked: one integer id in range per input id."""
        if mapped.shape != flat.shape:
            raise ValueError(
                f"`replace` must return one id per input id; got shape {mapped.shape} "
                f"for {flat.shape}."
            )
        if mapped.size and (mapped.dtype.kind not in "iu"):
            raise TypeError(f"`replace` must return integer word ids; got dtype {mapped.dtype}.")
        if mapped.size and (mapped.min() < 0 or mapped.max() >= len(self.vocabulary)):
            bad = int(mapped[(mapped < 0) | (mapped >= len(self.vocabulary))][0])
            raise ValueError(
                f"`replace` must return word ids in [0, {len(self.vocabulary) - 1}]; got {bad}."
            )
        return mapped

    def map_file(
        self,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        replace: Replace,
        *,
        encoding: str = "utf-8",
        batch_lines: int = 4096,
        progress: bool | None = None,
        observe: Observe | None = None,
        _chunk_chars: int = CHUNK_CHARS,
        _tag: str = "",
    ) -> Path:
        """Stream ``source`` into ``destination``, mapping the words.

        ``source`` is read in bounded chunks (a regular file, a FIFO, a device): memory is
        bounded by bytes, not by lines. A line longer than :data:`CHUNK_CHARS` characters is
        cut before a character that is neither a letter, a digit nor a combining mark, so no
        word, combining sequence, line break or UTF-8 sequence is split and the output is the
        same as for the whole line; a run of more than :data:`MAX_RUN_CHARS` letters, digits
        and marks without any other character is refused (``ValueError``). Line endings
        (``\\n``, ``\\r\\n``, ``\\r``) and bytes that are not valid in ``encoding`` are written
        back as they are (``surrogateescape``). Each line is one text of a batch of
        ``batch_lines`` (see :meth:`map_texts`). The output is written to a temporary file in
        the destination folder and renamed into place only when complete
        (:func:`densitydp._io.atomic_write`: a symlink is written through, a FIFO or device is
        written directly); ``source`` is never modified and may not be the destination.
        ``observe`` as in :meth:`map_texts`.
        """
        source, destination = Path(source), Path(destination)
        if not source.exists() or source.is_dir():
            raise FileNotFoundError(f"`source` must be an existing file; got {str(source)!r}.")
        if destination.exists() and destination.resolve() == source.resolve():
            raise ValueError(
                "`destination` must differ from `source` (the input is never modified)."
            )
        batch_lines = check_int(batch_lines, "batch_lines", minimum=1)
        codecs.lookup(encoding)  # an unknown encoding fails before the output is touched
        disable = None if progress is None else not progress
        size = source.stat().st_size if source.is_file() else None
        with (
            open(source, "rb") as reader,
            atomic_write(destination, "wb", tag=_tag) as writer,
            tqdm(
                total=size, unit="B", unit_scale=True, desc=source.name, disable=disable,
                leave=False,
            ) as bar,
        ):  # fmt: skip
            self._map_binary(
                reader, writer, replace, encoding, batch_lines, observe, bar, _chunk_chars
            )
        return destination

    def _map_binary(
        self,
        reader: IO[bytes],
        writer: IO[bytes],
        replace: Replace,
        encoding: str,
        batch_lines: int,
        observe: Observe | None,
        bar: Any = None,
        chunk_chars: int = CHUNK_CHARS,
    ) -> None:
        """Map the words of a binary stream into a binary stream (files, stdin / stdout: the
        same bytes everywhere). Lines are cut into chunks only for the default pattern (a
        custom pattern may not be local)."""
        custom = self._regex is not _DEFAULT_REGEX
        fragments = _read_fragments(
            reader, encoding, MAX_RUN_CHARS * 64 if custom else chunk_chars, bar, custom
        )
        parts: list[str] = []
        size = 0
        for output, _ in self._stream(fragments, replace, batch_lines, "line", observe):
            parts.append(output)
            size += len(output)
            if size >= 1 << 16:
                writer.write("".join(parts).encode(encoding, "surrogateescape"))
                parts.clear()
                size = 0
        writer.write("".join(parts).encode(encoding, "surrogateescape"))


class _Fragment(NamedTuple):
    """A piece of a text (a whole text, or a part cut between words) and whether it ends it."""

    encoded: EncodedText
    ends: bool


def _checked_text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str; got {type(text).__name__}{_missing(text)}.")
    return text


def _missing(value: Any) -> str:
    """`` (a missing value?)`` for None, NaN and pandas' NA / NaT, else ``''``."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    missing = missing or type(value).__name__ in ("NAType", "NaTType")
    return " (a missing value?)" if missing else ""


def _lookup(lookup: Callable[[str], int], word: str) -> int:
    """The id of ``word`` in its NFC form (then NFD): every canonically equivalent spelling of
    a word gets the same id."""
    if word.isascii():
        return lookup(word)
    composed = unicodedata.normalize("NFC", word)
    found = lookup(composed)
    if found < 0:
        decomposed = unicodedata.normalize("NFD", composed)
        if decomposed != composed:
            found = lookup(decomposed)
    return found


#: Entries a codec memo holds before it is emptied (memory stays bounded on any stream).
_MEMO_LIMIT = 1 << 17
_NO_IDS = np.empty(0, dtype=np.int64)
#: Case codes of a template (see :func:`match_case`); a style is ``code + 4 * decomposed``.
_KEEP, _LOWER, _UPPER, _FIRST = 0, 1, 2, 3


class _IdMemo(dict[str, int]):
    """``memo[piece]``: the id of a word piece (:func:`_lookup`), looked up once."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        super().__init__()
        self._lookup = vocabulary.lookup

    def __missing__(self, word: str) -> int:
        found = self[word] = _lookup(self._lookup, word)
        return found


class _StyleMemo(dict[str, int]):
    """``memo[template]``: the style of a word piece: how :func:`match_case` and
    :func:`_in_form_of` treat a word written in its place (a function of the template only)."""

    def __missing__(self, template: str) -> int:
        letters = [c for c in template if c.isalpha()]
        if not letters:
            code = _KEEP
        elif template.islower():
            code = _LOWER
        elif template.isupper():
            code = _UPPER if len(letters) > 1 else _FIRST
        elif letters[0].isupper() and all(c.islower() for c in letters[1:]):
            code = _FIRST
        else:
            code = _KEEP
        decomposed = (
            not template.isascii()
            and not unicodedata.is_normalized("NFC", template)
            and unicodedata.is_normalized("NFD", template)
        )
        style = self[template] = code + 4 * decomposed
        return style


class _CodeMemo(dict[str, int]):
    """``memo[piece]``: ``8 * id + style`` of a word piece (its id and its
    :class:`_StyleMemo` style in one int), -1 when it is not in the vocabulary."""

    def __init__(self, ids: _IdMemo, styles: _StyleMemo) -> None:
        super().__init__()
        self._ids, self._styles = ids, styles

    def __missing__(self, word: str) -> int:
        found = self._ids[word]
        code = self[word] = (found << 3) | self._styles[word] if found >= 0 else -1
        return code


class _OutputMemo(dict[int, str]):
    """``memo[8 * id + style]``: the output spelling of word ``id`` in ``style``; ``memo[-1]``
    is the mask token."""

    def __init__(self, rendered: list[_RenderMemo], mask_token: str) -> None:
        super().__init__()
        self._rendered, self._mask = rendered, mask_token
        self[-1] = mask_token

    def __missing__(self, key: int) -> str:
        if len(self) > _MEMO_LIMIT:
            self.clear()
            self[-1] = self._mask
        word = self[key] = self._rendered[key & 7][key >> 3]
        return word


class _RenderMemo(dict[int, str]):
    """``memo[word_id]``: the output spelling of a word in one style, i.e.
    ``_in_form_of(match_case(word, template), template)`` for any template of that style."""

    def __init__(self, vocabulary: Vocabulary, style: int) -> None:
        super().__init__()
        self._words = vocabulary
        self._code = style % 4
        self._form: Literal["NFC", "NFD"] = "NFD" if style >= 4 else "NFC"

    def __missing__(self, word_id: int) -> str:
        if len(self) > _MEMO_LIMIT:
            self.clear()
        word = self._words[word_id]
        code = self._code
        if code == _LOWER:
            word = word.lower()
        elif code == _UPPER:
            word = word.upper()
        elif code == _FIRST:
            word = word[:1].upper() + word[1:]
        if not word.isascii():
            word = unicodedata.normalize(self._form, word)
        self[word_id] = word
        return word


def _in_form_of(word: str, template: str) -> str:
    """``word`` in the normalization form of ``template``: NFD when the template is NFD and not
    NFC (decomposed input), otherwise NFC (also when the template is in both forms or in
    neither)."""
    if word.isascii():
        return word
    decomposed = (
        not template.isascii()
        and not unicodedata.is_normalized("NFC", template)
        and unicodedata.is_normalized("NFD", template)
    )
    return unicodedata.normalize("NFD" if decomposed else "NFC", word)


def _cut(
    encoded: EncodedText,
    ends: bool,
    n_words: int,
    span: int,
    batch_words: int,
    batch_chars: int,
) -> Iterator[tuple[_Fragment, bool]]:
    """Cut a fragment where the batch rules of :meth:`TextCodec._stream` close a batch: yield
    ``(sub-fragment, the batch closes after it)``; the last one never closes. ``n_words`` and
    ``span`` are the batch's words and characters before the fragment."""
    pieces, ids = list(encoded.pieces), encoded.word_ids
    start = index = 0  # the current sub-fragment starts at pieces[start] (a separator)
    while index < len(pieces):
        piece = pieces[index]
        if index % 2 == 0:  # a separator: the batch closes at its character batch_chars
            if span + len(piece) >= batch_chars:
                at = batch_chars - span
                sub = EncodedText([*pieces[start:index], piece[:at]], ids[start // 2 : index // 2])
                yield _Fragment(sub, False), True
                n_words = span = 0
                pieces[index] = piece[at:]
                start = index
                continue  # the rest of the separator opens the next batch
            span += len(piece)
        else:  # a word: the batch closes after it
            n_words += 1
            span += len(piece)
            if n_words >= batch_words or span >= batch_chars:
                sub = EncodedText(
                    [*pieces[start : index + 1], ""], ids[start // 2 : index // 2 + 1]
                )
                yield _Fragment(sub, False), True
                n_words = span = 0
                start = index + 1
        index += 1
    yield _Fragment(EncodedText(pieces[start:], ids[start // 2 :]), ends), False


class _DropWriter:
    """Writes fragments under ``unknown="drop"``: a dropped word takes one of the blanks
    around it along, exactly as :meth:`TextCodec.decode` does for a whole text (see
    :func:`_close_gap`), but with the state carried from one fragment of a text to the next.
    Trailing spaces and tabs of the last written piece are held (as run lengths) until it is
    known that no dropped word removes them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.started = False  # something of the text was written ("before is not None")
        self.ends_space = False  # the last non-empty piece ends with whitespace
        self.core_ends_space = False  # ... once its trailing blanks are gone
        self.held: list[list[Any]] = []  # [blank, count] runs after the last piece's core
        self.whole = False  # the last piece is all blanks (held entirely)
        self.previous = (False, False)  # (started, ends_space) before the last piece
        self.in_separator = False  # the current separator already wrote a part
        self.pending = False  # a word was dropped, the first character after it is unknown
        self.stripping = False  # removing the blanks after a dropped word
        self.out: list[str] = []

    def write(self, pieces: list[str | None], ends: bool) -> str:
        last = len(pieces) - 1
        for index, piece in enumerate(pieces):
            if index % 2 == 0:
                self._separator(piece or "", continues=not ends and index == last)
            else:
                self._word(piece)
        if ends:
            self._flush()
            out = "".join(self.out)
            self._reset()
            return out
        out = "".join(self.out)
        self.out.clear()
        return out

    def _separator(self, piece: str, continues: bool) -> None:
        if self.pending and (piece or not continues):
            if piece[:1] in _BLANKS_SET:
                if not self.started or self.ends_space:
                    self.stripping = True
            elif self.started:
                self._drop_held()
            self.pending = False
        if self.stripping and piece:
            piece = piece.lstrip(_BLANKS)
            if piece:
                self.stripping = False
        if piece:
            self._emit(piece, separator=True)

    def _word(self, word: str | None) -> None:
        self.in_separator = False
        self.stripping = False
        if self.pending:  # the separator after the last dropped word was empty
            if self.started:
                self._drop_held()
            self.pending = False
        if word is None:
            self.pending = True
        elif word:
            self._emit(word, separator=False)

    def _emit(self, piece: str, separator: bool) -> None:
        core = piece.rstrip(_BLANKS)
        if separator and self.in_separator:  # the same separator as the last part
            if core:
                self._flush()
                self.out.append(core)
                self.whole = False
                self.core_ends_space = core[-1].isspace()
        else:
            self._flush()
            self.previous = (self.started, self.ends_space)
            if core:
                self.out.append(core)
            self.whole = not core
            self.core_ends_space = bool(core) and core[-1].isspace()
            self.started = True
            self.in_separator = separator
        _add_blanks(self.held, piece[len(core) :])
        self.ends_space = piece[-1].isspace()

    def _drop_held(self) -> None:
        """``rstrip`` of the last non-empty piece (see :func:`_close_gap`)."""
        self.held = []
        if self.whole:  # the piece was all blanks: it is gone, the one before is the last
            self.started, self.ends_space = self.previous
            self.core_ends_space = self.ends_space
            self.whole = False
        else:
            self.ends_space = self.core_ends_space

    def _flush(self) -> None:
        for blank, count in self.held:
            self.out.append(blank * count)
        self.held = []


_BLANKS_SET = (" ", "\t")


def _add_blanks(runs: list[list[Any]], blanks: str) -> None:
    for match in re.finditer(" +|\t+", blanks):
        blank, count = match.group()[0], match.end() - match.start()
        if runs and runs[-1][0] == blank:
            runs[-1][1] += count
        else:
            runs.append([blank, count])


def _read_fragments(
    reader: IO[bytes], encoding: str, chunk_chars: int, bar: Any, whole_lines: bool
) -> Iterator[tuple[str, bool]]:
    """Decode a binary stream (``surrogateescape``) into line fragments ``(text, ends_line)``
    of at most about ``chunk_chars`` characters, each cut before a character that is neither a
    letter, a digit nor a combining mark (``whole_lines``: lines are never cut)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    read = getattr(reader, "read1", reader.read)
    buffer = ""
    line = 1
    while True:
        block = read(_READ_BYTES)
        final = not block
        if bar is not None and block:
            bar.update(len(block))
        buffer += decoder.decode(block, final)
        start = 0
        for match in _NEWLINE.finditer(buffer):
            if match.group() == "\r" and match.end() == len(buffer) and not final:
                break  # a "\r\n" may be split between two reads
            yield from _chunks(buffer[start : match.end()], True, chunk_chars, line)
            line += 1
            start = match.end()
        buffer = buffer[start:]
        if final:
            if buffer:
                yield from _chunks(buffer, True, chunk_chars, line)
            return
        if not whole_lines:
            while len(buffer) > chunk_chars:
                cut = _safe_cut(buffer, chunk_chars, line)
                if cut < 0:
                    break  # a long run of letters: read on
                yield buffer[:cut], False
                buffer = buffer[cut:]
        elif len(buffer) > chunk_chars:
            raise ValueError(
                f"line {line} is longer than {chunk_chars:,} characters; with a custom "
                "`pattern` lines are read whole (use the default pattern to stream long lines)."
            )


def _chunks(text: str, ends: bool, chunk_chars: int, line: int) -> Iterator[tuple[str, bool]]:
    """Cut a complete line into fragments of about ``chunk_chars`` characters."""
    while len(text) > chunk_chars:
        cut = _safe_cut(text, chunk_chars, line)
        if cut < 0 or cut >= len(text) - 2:  # never between "\r" and "\n"
            break
        yield text[:cut], False
        text = text[cut:]
    yield text, ends


def _safe_cut(text: str, limit: int, line: int) -> int:
    """A position ``0 < p`` at which ``text`` may be cut: ``text[p]`` is neither a letter, a
    digit nor a combining mark, so no word or combining sequence spans it; the last such
    position up to ``limit``, or the first after it (-1 when the run goes on past the text)."""
    match = _LAST_SEPARATOR.match(text, 0, limit + 1)
    if match is not None and match.end() > 1:
        cut = match.end() - 1
        if text[cut] == "\n" and text[cut - 1] == "\r":
            cut -= 1
        if cut > 0:
            return cut
    match = _FIRST_SEPARATOR.search(text, 1)
    if match is not None and match.start() <= MAX_RUN_CHARS:
        return match.start()
    if len(text) > MAX_RUN_CHARS:
        raise ValueError(
            f"line {line} holds a run of more than {MAX_RUN_CHARS:,} letters, digits and "
            "combining marks without a space or punctuation: not a word (it cannot be "
            "streamed in bounded memory); split it, or pass another `pattern`."
        )
    return -1


def _is_sequence(texts: Any) -> bool:
    """Sized and indexable (numpy arrays, pandas Series): mapped eagerly like a list."""
    return hasattr(texts, "__len__") and hasattr(texts, "__getitem__")


def _close_gap(pieces: list[str], index: int) -> None:
    """After dropping ``pieces[index]``, remove the blanks (spaces, tabs) the word leaves
    doubled: those after it when a blank follows and the text before ends with a blank (or is
    empty), or those before it when a line break, punctuation or the end of the text
    follows."""
    before = next((j for j in range(index - 1, -1, -1) if pieces[j]), None)
    after = pieces[index + 1]
    if after[:1] in (" ", "\t"):
        if before is None or pieces[before][-1].isspace():
            pieces[index + 1] = after.lstrip(_BLANKS)
    elif before is not None:  # a line break, punctuation or the end of the text follows
        pieces[before] = pieces[before].rstrip(_BLANKS)


_BLANKS = " \t"


def _place(label: str | None, first: int, position: int) -> str:
    """Where the text at ``position`` of a batch starting at ``first`` is: " of line 12"
    (nothing for a single text, ``label`` None)."""
    return "" if label is None else f" of {label} {first + position + 1}"


# ----------------------------------------------------------------------------- perturbation


@dataclass
class PerturbationReport:
    """What a call that privatises text did, and what it claims for each text.

    Returned by :func:`perturb_text` and :func:`perturb_file` with ``return_report=True`` (and
    printed by ``densitydp perturb`` on stderr). For a stream the counts grow as its iterator is
    consumed; ``complete`` turns True once it is exhausted.

    Attributes
    ----------
    mechanism : str
        The mechanism's repr.
    guarantee : PrivacyBound
        The mechanism's per-word guarantee.
    unknown, mask_token : str
        The policy for words outside the vocabulary, and the mask it writes.
    seed : dict
        Seed entropy of the call's generator (``densitydp._rng.seed_entropy``).
    n_texts, n_tokens : int
        Texts (lines for a file) and word tokens seen.
    n_perturbed : int
        Word tokens found in the vocabulary, each replaced by one draw of the mechanism.
    n_changed : int
        Perturbed tokens whose output word differs from the input word.
    n_unknown : int
        Word tokens outside the vocabulary (kept, masked, dropped: see the properties).
    one_word_epsilon, all_words_epsilon : float
        The claimed loss (the epsilon of pure DP) for a text and the same text with one word
        replaced by any other vocabulary word (the worst word and replacement), and with every
        word replaced, maximised over the texts. For a metric guarantee ``epsilon d`` the
        loss between texts ``x`` and ``x'`` of ``L`` words is at most
        ``epsilon * sum_i d(x_i, x'_i)`` (basic composition of independent draws); the worst
        ``x'`` replaces each ``x_i`` by its farthest word, so these are ``epsilon * max_i r(x_i)``
        and ``epsilon * sum_i r(x_i)`` with ``r = space.farthest_distance``. For pure and
        approximate DP they are ``epsilon`` and ``L * epsilon``. ``nan`` when
        ``return_report`` was not asked (claims cost one farthest-word search per distinct
        word).
    one_word_delta, all_words_delta : float
        The matching additive terms: ``delta`` and ``L * delta`` (0 for pure and metric DP).
    worst_text : int
        Index of the text with the largest ``all_words_epsilon`` (-1 before any word).
    complete : bool
        Whether every text has been processed.
    unit : str
        What a text is called in the summary (``"line"`` for files).

    Notes
    -----
    The claims cover texts that differ in vocabulary words only. A token outside the
    vocabulary has no embedding: kept, it is published as is (no guarantee); masked or dropped,
    what is published does not depend on which unknown word it was, but it shows that an
    out-of-vocabulary word stood there, so a text and its twin with a vocabulary word in that
    place can be told apart. Case patterns are published as they are (a substitute takes the
    input's case). Composition over the texts of one person (a user-level guarantee) adds up
    the claims of those texts.
    """

    mechanism: str
    guarantee: PrivacyBound
    unknown: str
    mask_token: str
    seed: dict[str, Any]
    n_texts: int = 0
    n_tokens: int = 0
    n_perturbed: int = 0
    n_changed: int = 0
    n_unknown: int = 0
    one_word_epsilon: float = 0.0
    all_words_epsilon: float = 0.0
    one_word_delta: float = 0.0
    all_words_delta: float = 0.0
    worst_text: int = -1
    complete: bool = False
    unit: str = "text"
    _claims: bool = field(default=True, repr=False, compare=False)
    _warned: bool = field(default=False, repr=False, compare=False)
    _open_cost: float = field(default=0.0, repr=False, compare=False)
    _open_delta: float = field(default=0.0, repr=False, compare=False)
    _open_words: int = field(default=0, repr=False, compare=False)

    @property
    def n_unknown_kept(self) -> int:
        """Unknown tokens published unchanged (``unknown="keep"``)."""
        return self.n_unknown if self.unknown == "keep" else 0

    @property
    def n_masked(self) -> int:
        """Unknown tokens replaced by ``mask_token``."""
        return self.n_unknown if self.unknown == "mask" else 0

    @property
    def n_dropped(self) -> int:
        """Unknown tokens removed."""
        return self.n_unknown if self.unknown == "drop" else 0

    @property
    def changed_share(self) -> float:
        """``n_changed / n_perturbed`` (nan before any perturbed token)."""
        return self.n_changed / self.n_perturbed if self.n_perturbed else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "mechanism": self.mechanism,
            "guarantee": str(self.guarantee),
            "unknown": self.unknown,
            "mask_token": self.mask_token if self.unknown == "mask" else None,
            "seed": self.seed,
            "n_texts": self.n_texts,
            "n_tokens": self.n_tokens,
            "n_perturbed": self.n_perturbed,
            "n_changed": self.n_changed,
            "n_unknown": self.n_unknown,
            "n_unknown_kept": self.n_unknown_kept,
            "n_masked": self.n_masked,
            "n_dropped": self.n_dropped,
            "one_word_epsilon": self.one_word_epsilon,
            "all_words_epsilon": self.all_words_epsilon,
            "one_word_delta": self.one_word_delta,
            "all_words_delta": self.all_words_delta,
            "worst_text": self.worst_text,
            "complete": self.complete,
            "unit": self.unit,
        }

    def __str__(self) -> str:
        unit = self.unit if self.n_texts == 1 else f"{self.unit}s"
        share = f", {self.changed_share:.1%}" if self.n_perturbed else ""
        unknown = (
            f"{self.n_unknown:,} outside the vocabulary, "
            f"{_UNKNOWN_DONE[self.unknown].format(mask=self.mask_token)}"
            if self.n_unknown
            else "none outside the vocabulary"
        )
        lines = [
            f"{self.n_tokens:,} word tokens in {self.n_texts:,} {unit}: {self.n_perturbed:,} "
            f"perturbed ({self.n_changed:,} changed{share}); {unknown}."
        ]
        lines.append(f"per word: {str(self.guarantee).split(';')[0]}")
        if self._claims and self.n_perturbed:
            which = (
                f"claimed for this {self.unit}"
                if self.n_texts == 1
                else f"claimed per {self.unit} (the worst of {self.n_texts:,})"
            )
            one = f"epsilon <= {self.one_word_epsilon:,.4g}"
            every = f"epsilon <= {self.all_words_epsilon:,.4g}"
            if self.all_words_delta:
                one += f", delta <= {self.one_word_delta:.3g}"
                every += f", delta <= {self.all_words_delta:.3g}"
            lines.append(
                f"{which}, by basic composition: one word replaced: {one}; every word "
                f"replaced: {every}"
            )
            if self.all_words_delta >= 1.0:
                scope = "every word" if self.one_word_delta < 1.0 else "a single word"
                lines.append(
                    "warning: the additive term reaches 1 (each word's delta grows with "
                    "exp(loss) against far words): no (epsilon, delta) guarantee holds at the "
                    f"{self.unit} level against {scope} replaced."
                )
        if not self.complete:
            lines.append("(so far: the stream has not been read to its end)")
        if self.n_unknown_kept:
            lines.append(
                f"warning: {self.n_unknown_kept:,} unknown word tokens were published unchanged; "
                "no guarantee covers them."
            )
        return "\n".join(lines)


_UNKNOWN_DONE = {
    "keep": "kept unchanged",
    "mask": "masked as {mask!r}",
    "drop": "dropped",
    "error": "refused",
}


def _start_report(
    mechanism: Mechanism, codec: TextCodec, generator: np.random.Generator, claims: bool
) -> PerturbationReport:
    nan = float("nan")
    return PerturbationReport(
        mechanism=repr(mechanism),
        guarantee=mechanism.privacy_bound(),
        unknown=codec.unknown,
        mask_token=codec.mask_token,
        seed=seed_entropy(generator),
        one_word_epsilon=0.0 if claims else nan,
        all_words_epsilon=0.0 if claims else nan,
        one_word_delta=0.0 if claims else nan,
        all_words_delta=0.0 if claims else nan,
        _claims=claims,
    )


def _observe(
    report: PerturbationReport,
    mechanism: Mechanism,
    encoded: list[EncodedText],
    known_ids: np.ndarray,
    new_ids: np.ndarray,
    counts: np.ndarray,
    ends: np.ndarray,
) -> None:
    """Add one mapped batch of fragments to ``report`` (see :meth:`TextCodec.map_texts`); a
    text's claim adds up over its fragments and counts once it ends."""
    n_tokens = sum(len(item.word_ids) for item in encoded)
    report.n_tokens += n_tokens
    report.n_perturbed += int(known_ids.size)
    report.n_changed += int(np.count_nonzero(known_ids != new_ids))
    n_unknown = n_tokens - int(known_ids.size)
    report.n_unknown += n_unknown
    if n_unknown and report.unknown == "keep" and not report._warned:
        report._warned = True
        _warn_kept(n_unknown)
    if not report._claims:
        report.n_texts += int(np.count_nonzero(ends))
        return
    if known_ids.size:
        costs, deltas = _token_claims(report.guarantee, mechanism, known_ids)
        report.one_word_epsilon = max(report.one_word_epsilon, float(costs.max()))
        report.one_word_delta = max(report.one_word_delta, float(deltas.max()))
        owner = np.repeat(np.arange(len(encoded)), counts)
        fragment_costs = np.bincount(owner, weights=costs, minlength=len(encoded)).tolist()
        fragment_deltas = np.bincount(owner, weights=deltas, minlength=len(encoded)).tolist()
    else:
        fragment_costs = fragment_deltas = [0.0] * len(encoded)
    for cost, delta, count, ending in zip(
        fragment_costs, fragment_deltas, counts.tolist(), ends.tolist(), strict=True
    ):
        report._open_cost += cost
        report._open_delta += delta
        report._open_words += count
        if ending:
            if report._open_words and report._open_cost > report.all_words_epsilon:
                report.all_words_epsilon = report._open_cost
                report.worst_text = report.n_texts
            if report._open_words:
                report.all_words_delta = max(report.all_words_delta, min(1.0, report._open_delta))
            report.n_texts += 1
            report._open_cost = report._open_delta = 0.0
            report._open_words = 0


def _token_claims(
    bound: PrivacyBound, mechanism: Mechanism, known_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each token's worst claimed loss and additive term against any replacement word: the
    mechanism's bound on ``max_w' privacy_loss_bound(w, w')`` (a Euclidean metric guarantee:
    ``epsilon * r(w)``, ``r`` the farthest distance; ``inf`` where a mechanism claims nothing
    for some pair) and its ``privacy_delta_bound`` for that pair, capped at 1."""
    costs, partners = mechanism._worst_claims(known_ids)
    if not bound.delta:
        return costs, np.zeros(known_ids.size)
    deltas = np.asarray(mechanism.privacy_delta_bound(known_ids, partners), dtype=np.float64)
    return costs, np.minimum(1.0, np.broadcast_to(deltas, known_ids.shape))


def _warn_kept(n_kept: int) -> None:
    """The PrivacyWarning of ``unknown="keep"``, attributed to the caller's first frame outside
    this package (the line that perturbs, or that consumes a stream)."""
    warnings.warn(
        f"{n_kept:,} word token(s) outside the vocabulary were published unchanged "
        "(unknown='keep'): no privacy guarantee covers them, and they are often the "
        "identifying ones (names, places). Pass unknown='mask' (the default) or 'drop'; "
        "the report (return_report=True) counts them all.",
        PrivacyWarning,
        skip_file_prefixes=(_PACKAGE,),
    )


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep + "densitydp"


def _finish_stream(outputs: Iterator[str], report: PerturbationReport) -> Iterator[str]:
    yield from outputs
    report.complete = True


def _prepare(
    mechanism: Mechanism,
    rng: RNGLike,
    unknown: str,
    mask_token: str,
    pattern: str | None,
    claims: bool,
) -> tuple[TextCodec, Replace, Observe | None, PerturbationReport]:
    """The codec, the sampling function, the observer (None when nobody reads the report)
    and the report of one call."""
    _check_mechanism(mechanism)
    generator = as_generator(rng)
    codec = _codec(mechanism, unknown, mask_token, pattern)
    report = _start_report(mechanism, codec, generator, claims)

    def replace(ids: np.ndarray) -> np.ndarray:
        return mechanism.sample(ids, rng=generator)

    # the report is read only when returned, or for the warning of unknown="keep"
    needed = claims or codec.unknown == "keep"
    observe = functools.partial(_observe, report, mechanism) if needed else None
    return codec, replace, observe, report


def _check_mechanism(mechanism: Any) -> None:
    if not isinstance(mechanism, Mechanism):
        raise TypeError(
            f"`mechanism` must be a densitydp Mechanism; got {type(mechanism).__name__}."
        )


#: Codecs per space and options, kept on the space (``EmbeddingSpace._codecs``), so that a
#: codec's memos (ids, case styles, output spellings) serve the next call on the same space and
#: go with it (a module-level cache held the last 8 vocabularies: 50-70 MB each at 400,000
#: words after their spaces were dropped; on the vocabulary, the codec -> vocabulary cycle
#: waited for the cyclic collector). At most this many option sets per space.
_CODECS_PER_SPACE = 8
_CODEC_LOCK = threading.Lock()


def _codec(mechanism: Mechanism, unknown: str, mask_token: str, pattern: str | None) -> TextCodec:
    """The codec :func:`perturb_text` uses (``keep_spelling=False``), built once per
    vocabulary and options and reused; the options are validated on every call."""
    space = mechanism.space
    key = (unknown, mask_token, pattern)
    cacheable = type(unknown) is str and type(mask_token) is str
    cacheable = cacheable and type(pattern) in (str, type(None))
    if cacheable:
        found = space._codecs.get(key)
        if found is not None:
            return found
    codec = TextCodec(
        space.vocabulary,
        unknown=unknown,
        mask_token=mask_token,
        pattern=pattern,
        keep_spelling=False,
    )
    if cacheable:
        with _CODEC_LOCK:
            codecs = space._codecs
            if len(codecs) >= _CODECS_PER_SPACE:
                del codecs[next(iter(codecs))]
            codecs[key] = codec
    return codec


def perturb_text(
    texts: Any,
    mechanism: Mechanism,
    *,
    rng: RNGLike = None,
    unknown: str = "mask",
    mask_token: str = DEFAULT_MASK,
    pattern: str | None = None,
    batch_size: int = 4096,
    return_report: bool = False,
) -> Any:
    """Replace every known word of ``texts`` by ``mechanism``'s noisy substitute.

    Whitespace and punctuation are kept; a substitute takes the case pattern of the word it
    replaces. Words are found in the vocabulary by their exact form, then their other case
    forms (:meth:`~densitydp.embeddings.Vocabulary.lookup`). One call to ``mechanism.sample``
    per batch of texts; every draw is independent, so a text of ``L`` words composes to the sum
    of the per-word losses (see :class:`PerturbationReport`).

    Parameters
    ----------
    texts : str, list of str, or iterable of str
        One document (must not be empty), a list (returns a list) or a stream (returns a lazy
        iterator holding at most ``batch_size`` texts).
    mechanism : Mechanism
        Any densitydp mechanism; its space gives the vocabulary.
    rng : None, int or numpy.random.Generator
        The same seed gives the same output.
    unknown : {"mask", "drop", "keep", "error"}
        Words outside the vocabulary (often the identifying ones: names, places): replaced by
        ``mask_token`` (default), removed, published unchanged (a :class:`PrivacyWarning` is
        issued when any was), or refused with
        :class:`~densitydp.embeddings.UnknownWordError`.
    mask_token : str
        What ``unknown="mask"`` writes (default ``"[UNK]"``).
    pattern : str, optional
        Regular expression of a word piece (default :data:`WORD_PATTERN`).
    batch_size : int
        Texts per call to ``mechanism.sample``.
    return_report : bool
        Also return a :class:`PerturbationReport` (counts, seed and the claimed per-text
        guarantee).

    Returns
    -------
    str, list of str or iterator of str
        Like ``texts``; with ``return_report=True`` a pair ``(result, report)`` (for a stream
        the report fills as the iterator is consumed).

    Raises
    ------
    TypeError
        ``mechanism`` is not a Mechanism, ``texts`` is not text.
    ValueError
        ``texts`` is the empty string, ``unknown`` is not a policy.
    UnknownWordError
        ``unknown="error"`` and a word is outside the vocabulary.

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.EmbeddingSpace(["the", "king", "queen"], [[0.0, 0.0], [4.0, 0.0], [4.0, 0.1]])
    >>> dd.perturb_text("The King met Kowalski!", dd.ExponentialMechanism(space, 100.0), rng=0)
    'The King [UNK] [UNK]!'
    >>> text, report = dd.perturb_text(
    ...     "the king", dd.ExponentialMechanism(space, 100.0), rng=0, return_report=True
    ... )
    >>> report.n_perturbed, report.n_changed
    (2, 0)
    >>> round(report.one_word_epsilon, 3), round(report.all_words_epsilon, 3)  # 100 * (4.001 + 4)
    (400.125, 800.125)
    """
    if isinstance(texts, str) and not texts:
        raise ValueError("`texts` must be a non-empty string or an iterable of strings; got ''.")
    _refuse_frame(texts)
    codec, replace, observe, report = _prepare(
        mechanism, rng, unknown, mask_token, pattern, return_report
    )
    result = codec.map_texts(texts, replace, batch_size=batch_size, observe=observe)
    if isinstance(result, (str, list)):
        report.complete = True
    else:
        result = _finish_stream(result, report)
    return (result, report) if return_report else result


def _refuse_frame(texts: Any) -> None:
    """A data frame iterates over its column names: refuse it rather than perturb them."""
    if type(texts).__name__ == "DataFrame":
        raise TypeError(
            "`texts` must be an ordered iterable of str; got a DataFrame (its iteration gives "
            "the column names): pass one column, e.g. frame['text']."
        )


def perturb_texts(
    texts: Iterable[str],
    mechanism: Mechanism,
    *,
    rng: RNGLike = None,
    unknown: str = "mask",
    mask_token: str = DEFAULT_MASK,
    pattern: str | None = None,
    batch_size: int = 4096,
    return_report: bool = False,
) -> Any:
    """Perturb many short texts, each with its own random stream: the path to prefer over a
    loop (``df.text.apply(...)``) of :func:`perturb_text` calls.

    Text ``i`` is perturbed exactly as ``perturb_text(texts[i], mechanism, rng=children[i],
    ...)`` with ``children = numpy.random.default_rng(rng).spawn(len(texts))`` (the same
    options; an empty text gives ``""``), so each output depends on its text, its index and the
    seed only, never on the other texts or on ``batch_size``. The work shared by the texts is
    done once per batch of ``batch_size`` texts: tokenising, vocabulary look-ups, the exact
    neighbour rows of every distinct word of the batch (one query, for the mechanisms of this
    package that sample from them), and rebuilding the outputs; what is left per text is one
    ``mechanism.sample`` call on its own words.

    Parameters
    ----------
    texts : iterable of str
        A list, tuple, numpy array, pandas Series or any iterable (a generator is consumed
        batch by batch). A single str is refused: use :func:`perturb_text`.
    mechanism, unknown, mask_token, pattern, return_report
        As in :func:`perturb_text`.
    rng : None, int or numpy.random.Generator
        The parent of the per-text streams (``Generator.spawn``: a Generator passed in is
        advanced by ``len(texts)`` spawns).
    batch_size : int
        Texts encoded and prepared together (memory; the output does not depend on it).

    Returns
    -------
    list of str
        One output per text, in order; with ``return_report=True`` a pair ``(outputs,
        report)``: the :class:`PerturbationReport` of all the texts (its ``seed`` is the
        parent's).

    Examples
    --------
    >>> import densitydp as dd
    >>> space = dd.EmbeddingSpace(["the", "king", "queen"], [[0.0, 0.0], [4.0, 0.0], [4.0, 0.1]])
    >>> mechanism = dd.ExponentialMechanism(space, 100.0)
    >>> outputs = dd.perturb_texts(["The king", "", "the queen!"], mechanism, rng=0)
    >>> children = np.random.default_rng(0).spawn(3)
    >>> outputs[2] == dd.perturb_text("the queen!", mechanism, rng=children[2])
    True
    """
    if isinstance(texts, (str, bytes, bytearray, Mapping, AbstractSet)):
        raise TypeError(
            "`texts` must be an ordered iterable of str (a list, a pandas Series); got "
            f"{type(texts).__name__} (use perturb_text for one text)."
        )
    if not isinstance(texts, Iterable):
        raise TypeError(f"`texts` must be an iterable of str; got {type(texts).__name__}.")
    _refuse_frame(texts)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    _check_mechanism(mechanism)
    parent = as_generator(rng)
    codec = _codec(mechanism, unknown, mask_token, pattern)
    report = _start_report(mechanism, codec, parent, return_report)
    needed = return_report or codec.unknown == "keep"
    observe = functools.partial(_observe, report, mechanism) if needed else None
    outputs: list[str] = []
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, batch_size)):
        children = parent.spawn(len(batch))
        outputs.extend(_perturb_each(codec, mechanism, batch, children, observe, len(outputs)))
    report.complete = True
    return (outputs, report) if return_report else outputs


def _perturb_each(
    codec: TextCodec,
    mechanism: Mechanism,
    texts: list[Any],
    children: list[np.random.Generator],
    observe: Observe | None,
    first: int,
) -> list[str]:
    """One batch of :func:`perturb_texts`: every text as :func:`perturb_text` does it with
    its own generator."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"`texts` must hold only str; got {type(text).__name__}{_missing(text)} at "
                f"position {first + index}."
            )
    split, memo = codec._regex.split, codec._ids
    pieces = [split(text) for text in texts]
    sizes = [len(p) >> 1 for p in pieces]
    n_chars = [len(text) for text in texts]
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    every = np.fromiter(
        map(memo.__getitem__, itertools.chain.from_iterable(p[1::2] for p in pieces)),
        dtype=np.int64,
        count=sum(sizes),
    )
    known = every >= 0
    if known.any():
        _warm_up(mechanism, np.unique(every[known]))
    bounds = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    starts = bounds.tolist()
    outputs: list[str] = []
    for index, (text, child) in enumerate(zip(texts, children, strict=True)):
        start, stop = starts[index], starts[index + 1]
        ids = every[start:stop]
        whole = sizes[index] < BATCH_WORDS and n_chars[index] < BATCH_CHARS
        if not text or not whole or (codec.unknown == "error" and (ids < 0).any()):
            outputs.append(_perturb_alone(codec, mechanism, text, child, observe, first + index))
            continue
        mine = known[start:stop]
        words = ids[mine]
        new_ids = ids.copy()
        if words.size:
            new_ids[mine] = codec._checked_ids(
                np.asarray(mechanism.sample(words, rng=child)), words
            )
        if observe is not None:
            observe(
                [EncodedText(pieces[index], ids)],
                words,
                new_ids[mine],
                np.array([words.size]),
                np.ones(1, bool),
            )
        out: list[str | None] = codec._render(pieces[index], ids.tolist(), new_ids.tolist())
        if codec.unknown == "drop":
            for position in range(1, len(out), 2):
                if out[position] is None:
                    out[position] = ""
                    _close_gap(out, position)  # type: ignore[arg-type]
        outputs.append("".join(out))  # type: ignore[arg-type]
    return outputs


def _warm_up(mechanism: Mechanism, words: np.ndarray) -> None:
    """Fetch the exact neighbour rows of ``words`` in one query, for the mechanisms that
    sample from them (the rows are exact: only the time changes, never an output)."""
    from .mechanisms.base import TABLE_K, neighbor_rows
    from .mechanisms.exponential import ExponentialMechanism
    from .mechanisms.gumbel import TruncatedGumbel
    from .mechanisms.laplace import MultivariateLaplace

    if isinstance(mechanism, (ExponentialMechanism, TruncatedGumbel, MultivariateLaplace)):
        space = mechanism.space
        width = max(TABLE_K, int(getattr(mechanism, "table_k", 0)))
        neighbor_rows(space, words, min(len(space), width))


def _perturb_alone(
    codec: TextCodec,
    mechanism: Mechanism,
    text: str,
    child: np.random.Generator,
    observe: Observe | None,
    index: int,
) -> str:
    """A text :func:`perturb_texts` hands to the general path (empty, longer than one batch,
    or holding a refused word): exactly :func:`perturb_text` on it."""

    def replace(ids: np.ndarray) -> np.ndarray:
        return mechanism.sample(ids, rng=child)

    try:
        return "".join(codec._whole_texts(iter([text]), replace, 1, observe, None))
    except UnknownWordError as error:
        raise UnknownWordError(f"{error.args[0]} (text {index + 1})") from None


def perturb_file(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    mechanism: Mechanism,
    *,
    rng: RNGLike = None,
    unknown: str = "mask",
    mask_token: str = DEFAULT_MASK,
    pattern: str | None = None,
    encoding: str = "utf-8",
    batch_lines: int = 4096,
    progress: bool | None = None,
    return_report: bool = False,
    _chunk_chars: int = CHUNK_CHARS,
    _tag: str = "",
) -> Any:
    """Perturb a text file line by line into ``destination`` (atomic; see
    :meth:`TextCodec.map_file`), with a progress bar in bytes, in memory bounded by bytes (a
    long line is read in chunks cut between words; the output is the same).

    Parameters as in :func:`perturb_text`; each line is one text of the report. Returns the
    destination ``Path``, or ``(path, report)`` with ``return_report=True``. A
    :class:`PrivacyWarning` is issued when ``unknown="keep"`` published any unknown word.
    """
    codec, replace, observe, report = _prepare(
        mechanism, rng, unknown, mask_token, pattern, return_report
    )
    path = codec.map_file(
        source,
        destination,
        replace,
        encoding=encoding,
        batch_lines=batch_lines,
        progress=progress,
        observe=observe,
        _chunk_chars=_chunk_chars,
        _tag=_tag,
    )
    report.complete = True
    report.unit = "line"
    return (path, report) if return_report else path


def _perturb_stream(
    reader: IO[bytes],
    writer: IO[bytes],
    mechanism: Mechanism,
    *,
    rng: RNGLike = None,
    unknown: str = "mask",
    mask_token: str = DEFAULT_MASK,
    pattern: str | None = None,
    encoding: str = "utf-8",
    batch_lines: int = 4096,
    bar: Any = None,
    _chunk_chars: int = CHUNK_CHARS,
) -> PerturbationReport:
    """:func:`perturb_file` between two open binary streams (the command line's standard
    input and output): the same bytes as a file gets. Returns the report."""
    codec, replace, observe, report = _prepare(mechanism, rng, unknown, mask_token, pattern, True)
    codec._map_binary(reader, writer, replace, encoding, batch_lines, observe, bar, _chunk_chars)
    report.complete = True
    report.unit = "line"
    return report
