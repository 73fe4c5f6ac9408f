"""Embedding files: GloVe / word2vec / fastText text, word2vec binary; plain, gzip, bz2, xz.

The readers stream the file in bounded chunks into one preallocated float32 array (grown in place
when no header gives the number of words), so the memory peak is the vectors plus a few
megabytes, and a line longer than its dimension allows is refused as soon as it is seen. Numbers
are parsed a block of lines at a time by numpy, with Python ``float`` semantics (the decimal is
read as float64, then rounded to float32: the same values as numpy and gensim).

One strict line parser, :func:`split_line`, is the rule of the text formats: the fast path accepts
exactly the lines it accepts, the slow path uses it to name the problem of a refused line, and
the writer uses it to refuse a word that the reader would not give back.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import os
import stat
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import numpy as np

from ._io import atomic_write

Format = Literal["auto", "glove", "word2vec", "word2vec-binary", "fasttext"]
FORMATS = ("auto", "glove", "word2vec", "word2vec-binary", "fasttext")
WRITE_FORMATS = ("glove", "word2vec", "word2vec-binary", "fasttext")
DUPLICATE_POLICIES = ("error", "first", "last")

MAX_WORD_BYTES = 1 << 16  # longest word, in encoded bytes
MAX_NUMBER_BYTES = 64  # room per number on a line (sign, 17 digits, exponent: 25 are plenty)
MAX_FIRST_LINE = 1 << 24  # longest line while the dimension is not known yet (16 MiB)
CHUNK_BYTES = 1 << 20  # read size (1 MiB of decompressed data)
DIM_SAMPLE_LINES = 1000  # lines whose most common field count gives a headerless file's dim
MAX_HEADER_BYTES = 128

_COMPRESSIONS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))
_SUFFIX_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
#: Formats we do not read, by their first bytes (after decompression), and what to do instead.
_FOREIGN = (
    (b"PK\x03\x04", "a zip archive: extract the embeddings file from it first"),
    (b"\x28\xb5\x2f\xfd", "a zstandard-compressed file: decompress it first (zstd -d)"),
    (
        b"\x93NUMPY",
        "a NumPy .npy array: load it with numpy.load and pass words and vectors to "
        "EmbeddingSpace(words, vectors)",
    ),
    (
        b"\x89HDF",
        "an HDF5 file: read words and vectors with h5py and pass them to "
        "EmbeddingSpace(words, vectors)",
    ),
    (
        b"\xba\x16\x4f\x2f",
        "a fastText binary model (.bin): use its .vec file, or load the model "
        "with gensim and use EmbeddingSpace.from_gensim(model.wv)",
    ),
    (
        b"\x80\x02",
        "a Python pickle (such as a gensim model saved with .save()): load it with "
        "gensim and use EmbeddingSpace.from_gensim",
    ),
    (
        b"\x80\x03",
        "a Python pickle (such as a gensim model saved with .save()): load it with "
        "gensim and use EmbeddingSpace.from_gensim",
    ),
    (
        b"\x80\x04",
        "a Python pickle (such as a gensim model saved with .save()): load it with "
        "gensim and use EmbeddingSpace.from_gensim",
    ),
    (
        b"\x80\x05",
        "a Python pickle (such as a gensim model saved with .save()): load it with "
        "gensim and use EmbeddingSpace.from_gensim",
    ),
)
_UTF8_BOM = b"\xef\xbb\xbf"
_DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)
#: Bytes that Python's float() would strip around a number: never part of a text number.
_ODD_BYTES = (b"\t", b"\r", b"\x0b", b"\x0c")


class EmbeddingFileError(ValueError):
    """An embedding file is malformed; the message names the file and the line."""


class LineProblem(ValueError):
    """What is wrong with one text line (without the file and line: the caller adds them)."""


# ----------------------------------------------------------------------------- arguments


def check_encoding(encoding: Any) -> str:
    """Return the codec name of ``encoding`` if it is a text encoding in which the ASCII bytes of
    a text embedding file (digits, ``.+-eE``, space, line feed) mean themselves."""
    if not isinstance(encoding, str):
        raise TypeError(f"`encoding` must be a str; got {type(encoding).__name__}.")
    probe = "0123456789 .+-eE_abcXYZ\n\t\r"
    try:
        name = codecs.lookup(encoding).name
        same = probe.encode(encoding) == probe.encode("ascii")
    except (LookupError, UnicodeError, TypeError):
        raise ValueError(f"`encoding` must be a known text encoding; got {encoding!r}.") from None
    if not same:
        raise ValueError(
            "`encoding` must be an ASCII-compatible text encoding (utf-8, latin-1, cp1252, ...); "
            f"got {encoding!r}, which writes ASCII characters as other bytes."
        )
    return "utf-8" if name == "utf-8-sig" else name


# ----------------------------------------------------------------------------- the line rule


def _is_number(field: bytes) -> bool:
    if not field or any(odd in field for odd in _ODD_BYTES):
        return False
    try:
        float(field)
    except ValueError:
        return False
    return True


def _describe_odd(line: bytes) -> str | None:
    """The separator problem of a line (tabs, carriage returns inside it), if any."""
    if b"\t" in line:
        return (
            "holds a tab (U+0009); fields must be separated by single spaces (tab-separated "
            "files are not read: replace the tabs by spaces)"
        )
    if b"\r" in line:
        return (
            "holds a carriage return (U+000D) inside the line; lines end with a line feed "
            "(LF or CRLF)"
        )
    return None


def split_line(line: bytes, dim: int) -> tuple[bytes, list[bytes]]:
    """Split one text line (without its line ending and trailing spaces) into ``(word,
    number fields)``: the last ``dim`` fields are the vector, the rest is the word.

    A word may hold single spaces (GloVe 840B has ``. . .`` and ``at name@domain.com``) if its
    last part is not a number (otherwise an extra value and a word with a space could not be
    told apart). Raises :class:`LineProblem` naming what is wrong.
    """
    odd = _describe_odd(line)
    if odd is not None:
        raise LineProblem(odd)
    fields = line.split(b" ")
    if fields[0] == b"":
        raise LineProblem("empty word (the line starts with a space)")
    if b"" in fields:
        raise LineProblem(
            "two spaces in a row; fields must be separated by single spaces "
            f"(word {_show(fields[0])})"
        )
    if len(fields) < dim + 1:
        raise LineProblem(
            f"expected a word and {dim} numbers; got {len(fields)} fields "
            f"(word {_show(fields[0])}){_comma_hint(line)}"
        )
    numbers = fields[-dim:]
    for field in numbers:
        if not _is_number(field):
            raise LineProblem(
                f"{_show(field)} is not a number (word {_show(b' '.join(fields[:-dim]))})"
                f"{_comma_hint(field)}"
            )
    word_fields = fields[:-dim]
    if len(word_fields) > 1 and _is_number(word_fields[-1]):
        raise LineProblem(
            f"expected a word and {dim} numbers; got {len(fields)} fields "
            f"(word {_show(fields[0])}); a word may hold spaces only if its last part is not "
            "a number"
        )
    return b" ".join(word_fields), numbers


def _comma_hint(text: bytes) -> str:
    if b"," in text:
        return "; found a comma: fields must be separated by single spaces, not commas"
    return ""


def _show(raw: bytes) -> str:
    return repr(raw[:40].decode("utf-8", "replace"))


def line_error(path: Path, line_number: int, message: str) -> EmbeddingFileError:
    return EmbeddingFileError(f"{path}:{line_number}: {message}.")


# ----------------------------------------------------------------------------- the source


class _Source:
    """A regular file opened for bytes, decompressed by its magic bytes; reads name the line
    on which a decompression error happens."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"`path` must be an existing file; got {str(path)!r}."
            ) from None
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(info.st_mode)
                else "a FIFO (named pipe)"
                if stat.S_ISFIFO(info.st_mode)
                else "a character device"
                if stat.S_ISCHR(info.st_mode)
                else "a block device"
                if stat.S_ISBLK(info.st_mode)
                else "a socket"
                if stat.S_ISSOCK(info.st_mode)
                else "not a regular file"
            )
            raise ValueError(
                f"`path` must be a regular file (embedding files are read in bounded chunks and "
                f"sniffed for their format); got {str(path)!r}, which is {kind}."
            )
        self.size = info.st_size
        raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            magic = raw.read(6)
        except OSError as exc:
            raw.close()
            raise EmbeddingFileError(f"{path}: could not be read ({exc}).") from None
        raw.seek(0)
        self.compression = next((name for m, name in _COMPRESSIONS if magic.startswith(m)), None)
        self.stream: Any
        if self.compression == "gzip":
            self.stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif self.compression == "bz2":
            self.stream = bz2.BZ2File(raw, "rb")
        elif self.compression == "xz":
            self.stream = lzma.LZMAFile(raw, "rb")  # noqa: SIM115
        else:
            self.stream = raw
        self._raw = raw
        self._pushed = b""

    def read(self, size: int, where: str) -> bytes:
        """Up to ``size`` bytes (``b""`` at the end); ``where`` is ``"LINE"`` for messages."""
        if self._pushed:
            data, self._pushed = self._pushed, b""
            return data
        try:
            return self.stream.read(size)
        except _DECOMPRESSION_ERRORS as exc:
            if self.compression is None:
                raise EmbeddingFileError(
                    f"{self.path}:{where}: could not be read ({exc})."
                ) from None
            raise EmbeddingFileError(
                f"{self.path}:{where}: the {self.compression} data are truncated or corrupt "
                f"({type(exc).__name__}: {exc})."
            ) from None

    def push_back(self, data: bytes) -> None:
        self._pushed = data + self._pushed

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self._raw.close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- rows


class _Rows:
    """The vectors read so far: a float32 array grown in place, the words and their lines."""

    def __init__(
        self,
        path: Path,
        dim: int,
        capacity: int,
        encoding: str,
        on_duplicate: str,
        max_words: int | None,
        unit: str,
    ) -> None:
        self.path = path
        self.dim = dim
        self.encoding = encoding
        self.on_duplicate = on_duplicate
        self.max_words = max_words
        self.unit = unit  # how a position is named: "" (line numbers) or "record "
        if max_words is not None:
            capacity = min(capacity, max_words)
        # never more rows than the caller proved the file may hold (see _capacity)
        self.vectors = np.empty((max(capacity, 1), dim), dtype=np.float32)
        self.words: list[str] = []
        self.index: dict[str, int] = {}
        self.lines: list[int] = []  # where each kept word was read
        self.n_rows_read = 0  # rows in the file, duplicates included

    @property
    def full(self) -> bool:
        return self.max_words is not None and len(self.words) >= self.max_words

    def error(self, where: int, message: str) -> EmbeddingFileError:
        return EmbeddingFileError(f"{self.path}:{self.unit}{where}: {message}.")

    def _grow(self, needed: int) -> None:
        capacity = self.vectors.shape[0]
        if needed <= capacity:
            return
        # grow by half, or by 4 MiB of rows: never by a count of rows that a huge dimension
        # would turn into terabytes (rows are only added once they have been read)
        new = max(needed, capacity + max(capacity // 2, (1 << 22) // (4 * self.dim)))
        # realloc in place: large blocks are remapped, not copied beside the old ones
        self.vectors.resize((new, self.dim), refcheck=False)

    def add(self, raw_words: Sequence[bytes], values: np.ndarray, where: Sequence[int]) -> None:
        """Add rows (``values`` shape ``(len(raw_words), dim)``, finite float32) in order."""
        self.n_rows_read += len(raw_words)
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
            raise self.error(
                where[row],
                f"the vector of {_show(raw_words[row])} holds a NaN or infinite value "
                "(values beyond the float32 range become infinite)",
            )
        start = len(self.words)
        self._grow(start + len(raw_words))
        words, index, lines = self.words, self.index, self.lines
        simple = True
        for j, raw in enumerate(raw_words):
            try:
                word = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                hint = _MISALIGNED if self.unit else _binary_hint(raw)
                raise self.error(
                    where[j], f"not valid {self.encoding} text ({exc.reason}){hint}"
                ) from None
            if not word:
                raise self.error(where[j], "empty word")
            first = index.get(word)
            if first is None:
                if not simple:
                    self.vectors[len(words)] = values[j]
                index[word] = len(words)
                words.append(word)
                lines.append(where[j])
                if self.max_words is not None and len(words) >= self.max_words:
                    if simple:
                        self.vectors[start : len(words)] = values[: j + 1]
                    return
                continue
            if self.on_duplicate == "error":
                raise self.error(
                    where[j],
                    f"duplicate word {word!r} (first on {self.unit or 'line '}{lines[first]}); "
                    "on_duplicate='first' or 'last' keeps one of them",
                )
            if simple:  # rows so far are in place: copy them, then go row by row
                self.vectors[start : len(words)] = values[: len(words) - start]
                simple = False
            if self.on_duplicate == "last":
                self.vectors[first] = values[j]
        if simple:
            self.vectors[start : len(words)] = values

    def finish(self) -> tuple[list[str], np.ndarray]:
        vectors = self.vectors
        n_words = len(self.words)
        if vectors.shape[0] != n_words:
            vectors.resize((n_words, self.dim), refcheck=False)  # shrinks in place
        return self.words, vectors


#: What a word2vec binary file's garbled word most likely means.
_MISALIGNED = (
    "; the records are misaligned here: most likely an earlier word holds a space or a line "
    "feed (a word2vec binary file cannot hold such words, but gensim writes them as they "
    "are), or the header gives the wrong dimension"
)


def _binary_hint(raw: bytes) -> str:
    control = sum(byte < 0x20 and byte not in (0x09, 0x0A, 0x0D) for byte in raw)
    if b"\x00" in raw or control > 2:
        return "; the file holds binary data here: is it a binary format?"
    return ""


# ----------------------------------------------------------------------------- reading


def read_embeddings(
    path: Path,
    *,
    format: str,
    encoding: str,
    max_words: int | None,
    on_duplicate: str,
) -> tuple[list[str], np.ndarray]:
    """Read ``path``: ``(words, vectors)``, vectors a float32 C-contiguous ``(n_words, dim)``
    array nobody else holds. Raises EmbeddingFileError (file and line), FileNotFoundError, or
    ValueError for a path that is not a regular file."""
    with _Source(path) as source:
        head = source.read(CHUNK_BYTES, "1")
        for magic, what in _FOREIGN:
            if head.startswith(magic):
                raise EmbeddingFileError(
                    f"{path}: this looks like {what}; from_file reads GloVe, word2vec and fastText "
                    "text files and word2vec binary files (plain, gzip, bz2 or xz)."
                )
        if encoding == "utf-8" and head.startswith(_UTF8_BOM):
            head = head[len(_UTF8_BOM) :]  # a byte-order mark is not part of the first word
        header, body_start, body_line, head = _sniff_header(head, path, format, source, max_words)
        body = head[body_start:]
        binary = False
        if header is not None:
            ended = len(head) - body_start < _read_ahead(header[1])
            layout, sure = _detect_layout(body, header[0], header[1], ended)
            binary = layout == "binary"
            if format == "word2vec-binary":
                if layout == "text" and sure:
                    raise EmbeddingFileError(
                        f"{path}: this looks like a word2vec text file, not binary: use "
                        "format='word2vec' (or 'auto')."
                    )
                binary = True
            elif format in ("glove", "word2vec", "fasttext") and binary and sure:
                raise EmbeddingFileError(
                    f"{path}: this looks like a word2vec binary file: use "
                    "format='word2vec-binary' (or 'auto')."
                )
            elif format != "auto":
                binary = False
        if header is not None and format != "glove":
            source.push_back(body)
            n_words, dim = header
            rows = _Rows(
                path,
                dim,
                _capacity(n_words, dim, source, binary),
                encoding,
                on_duplicate,
                max_words,
                "record " if binary else "",
            )
            if binary:
                _read_binary(source, rows, n_words)
            else:
                _read_text(source, rows, first_line=body_line, dim=dim)
            return _finish(rows, path, n_words, binary, body_line - 1)
        source.push_back(head)
        return _read_headerless(source, path, encoding, on_duplicate, max_words)


def _capacity(n_words: int, dim: int, source: _Source, binary: bool) -> int:
    """Rows to preallocate: the header's count, but never more than a plain file can hold (a
    wrong header must not allocate terabytes; the array grows if it was too small). For a
    compressed file (whose size bounds nothing) at most 64 MiB up front, then grown as rows
    are read. The header's dimension was bounded by the file's bytes in _sniff_header."""
    if source.compression is None:
        per_row = 4 * dim + 2 if binary else 2 * dim + 1
        return max(1, min(n_words, source.size // per_row))
    return max(1, min(n_words, (1 << 24) // dim))


def _finish(
    rows: _Rows, path: Path, header_words: int | None, binary: bool, header_line: int = 1
) -> tuple[list[str], np.ndarray]:
    if not rows.words:
        raise EmbeddingFileError(f"{path}: holds no word vectors (empty file).")
    if header_words is not None and not rows.full and header_words != rows.n_rows_read:
        raise EmbeddingFileError(
            f"{path}:{header_line}: the header announces {header_words} words but the file holds "
            f"{rows.n_rows_read}{' (truncated?)' if binary else ''}."
        )
    if len(rows.words) < 2:
        raise EmbeddingFileError(f"{path}: holds {len(rows.words)} word; at least 2 are needed.")
    return rows.finish()


def parse_header(line: bytes) -> tuple[int, int] | None:
    """``(n_words, dim)`` if ``line`` is a word2vec header: two ASCII integers, dim >= 1."""
    fields = line.rstrip(b"\r").rstrip(b" ").split(b" ")
    if len(fields) == 2 and all(f.isdigit() for f in fields):  # bytes.isdigit: ASCII only
        n_words, dim = int(fields[0]), int(fields[1])
        if dim >= 1:
            return n_words, dim
    return None


def _non_ascii_digits(line: bytes) -> bool:
    try:
        fields = line.decode("utf-8").strip().split(" ")
    except UnicodeDecodeError:
        return False
    return (
        len(fields) == 2
        and all(f.isdigit() for f in fields)
        and not all(f.isascii() for f in fields)
    )


def _sniff_header(
    head: bytes, path: Path, format: str, source: _Source, max_words: int | None = None
) -> tuple[tuple[int, int] | None, int, int, bytes]:
    """The word2vec header of the file (None if there is none), where the body starts (offset
    in the returned bytes, line number), and the bytes read so far (``head`` and, after a
    header, enough more for the first record of a binary file)."""
    start = 0
    while head[start : start + 1] in (b"\n", b"\r"):  # blank lines before the header
        start += 1
    end = head.find(b"\n", start, start + MAX_HEADER_BYTES)
    first = head[start:end] if end >= 0 else head[start : start + MAX_HEADER_BYTES]
    header = parse_header(first) if end >= 0 or len(head) < CHUNK_BYTES else None
    line_number = head.count(b"\n", 0, start) + 1
    if header is None and format in ("word2vec", "word2vec-binary", "fasttext"):
        hint = " (its digits must be ASCII 0-9)" if _non_ascii_digits(first) else ""
        raise EmbeddingFileError(
            f"{path}:{line_number}: expected a word2vec header 'n_words dim'{hint}; got "
            f"{_show(first.strip())}."
        )
    if header is None and format == "auto" and _non_ascii_digits(first):
        raise EmbeddingFileError(
            f"{path}:{line_number}: {_show(first.strip())} looks like a word2vec header "
            "'n_words dim' but its digits are not ASCII 0-9."
        )
    if header is None:
        return None, 0, 1, head
    body_start = end + 1 if end >= 0 else len(head)
    if source.compression is None and format != "glove":  # the claim against the file's size
        _check_header_fits(header, max_words, source.size - body_start, path, line_number, "")
    # the first record of a binary file may not fit in what was read: read a little more
    while len(head) - body_start < _read_ahead(header[1]):
        more = source.read(CHUNK_BYTES, str(line_number + 1))
        if not more and format != "glove":
            _check_header_fits(  # a compressed file: what it holds once decompressed
                header, max_words, len(head) - body_start, path, line_number, " (decompressed)"
            )
        if not more:
            break
        head += more
    return header, body_start, line_number + 1, head


def _read_ahead(dim: int) -> int:
    """Bytes after the header read before the format is decided: the first binary record."""
    return MAX_WORD_BYTES + 4 * dim + 2


def _check_header_fits(
    header: tuple[int, int],
    max_words: int | None,
    available: int,
    path: Path,
    line_number: int,
    how: str,
) -> None:
    """Refuse a header that announces more numbers than the bytes after it can hold: a row of
    ``dim`` numbers takes at least ``2 * dim + 1`` bytes (a one-byte word, then a separator and
    a digit per number; binary rows take 4 bytes per number), so a file of S bytes holds at
    most about S / 2 numbers. Without this a header such as ``2 99999999999`` would allocate
    terabytes before the first row is read. (A header announcing more words than the file
    holds costs nothing up front, see _capacity: it is reported with the count read.)"""
    n_words, dim = header
    per_row = 2 * dim + 1
    if per_row > available and n_words > 0 and (max_words is None or max_words > 0):
        raise EmbeddingFileError(
            f"{path}:{line_number}: the header announces dimension {dim:,}, but a vector of "
            f"{dim:,} numbers takes at least {per_row:,} bytes and the file holds "
            f"{max(available, 0):,} bytes after the header{how}; is the header right?"
        )


#: Records compared when both layouts read the first one (text and binary look alike).
DETECT_RECORDS = 64


def _text_progress(
    body: bytes, dim: int, ended: bool, limit: int, n_words: int
) -> tuple[int, bool]:
    """How many leading lines of ``body`` (blank lines skipped) are text records of ``dim``
    numbers, and whether reading stopped at one that is not, or at the end of the file before
    the header's ``n_words`` (``False``: ran out of what was read)."""
    count = 0
    position = 0
    while count < limit:
        end = body.find(b"\n", position)
        if end < 0:
            if not ended or position >= len(body):
                return count, ended and count < n_words
            end = len(body)
        line = body[position:end].rstrip(b"\r").rstrip(b" ")
        position = end + 1
        if not line:
            continue
        try:
            split_line(line, dim)
        except LineProblem:
            return count, True
        count += 1
    return count, False


class _BinaryWalk(NamedTuple):
    """The first records of a body read as word2vec binary."""

    records: int  # records with the layout
    failed: bool  # stopped at bytes without it (False: ran out of what was read)
    printable: bool  # every vector's bytes were printable ASCII (as text would be)
    exact: bool  # the file ended exactly after the header's count of records


def _binary_progress(body: bytes, dim: int, ended: bool, limit: int, n_words: int) -> _BinaryWalk:
    """Follow the word2vec binary layout (a word without a line feed, a space, ``4 * dim``
    bytes, an optional line feed) over the first records of ``body``. Values are not judged:
    a NaN is the reader's error to report, with its record."""
    size = 4 * dim
    count = 0
    position = 0
    printable = True
    while count < limit and position < len(body):
        space = body.find(b" ", position, position + MAX_WORD_BYTES + 1)
        if space < 0:
            failed = ended or len(body) - position > MAX_WORD_BYTES
            return _BinaryWalk(count, failed, printable, False)
        word = body[position:space]
        if not word or b"\n" in word:
            return _BinaryWalk(count, True, printable, False)
        if space + 1 + size > len(body):
            return _BinaryWalk(count, ended, printable, False)
        blob = body[space + 1 : space + 1 + size]
        printable = printable and all(0x20 <= byte < 0x7F or byte == 0x0A for byte in blob)
        position = space + 1 + size
        if body[position : position + 1] == b"\n":
            position += 1
        count += 1
    rest = body[position:].strip(b"\n") if ended else b""
    exact = ended and count == n_words and not rest
    short = count < n_words and position >= len(body)  # the file ends before the count
    failed = ended and (short or (count == n_words and bool(rest)))
    return _BinaryWalk(count, bool(failed), printable, exact)


def _detect_layout(body: bytes, n_words: int, dim: int, ended: bool) -> tuple[str, bool]:
    """After a ``count dim`` header: ``("text" | "binary", sure)``. Each layout is followed
    over the first records; binary is chosen when the whole file fits the binary layout
    exactly and not the text one (a vector whose bytes read ``b"1 2 3 4 "``), or when text
    cannot read even the first record and binary reads further through bytes that are not
    all printable ASCII (a NaN, almost any float32). Otherwise text, and its reader names the
    line at fault. ``sure``: binary, and text cannot read the first record; text, and binary
    fails before text does (an explicit format that says otherwise is refused; when not sure,
    it is trusted)."""
    limit = max(1, min(n_words, DETECT_RECORDS))
    text, text_failed = _text_progress(body, dim, ended, limit, n_words)
    walk = _binary_progress(body, dim, ended, limit, n_words)
    text_reach = text if text_failed else limit + 1
    binary_reach = walk.records if walk.failed else limit + 1
    if binary_reach > text_reach and (walk.exact or (text_reach == 0 and not walk.printable)):
        return "binary", text_reach == 0
    if text_reach >= binary_reach and text_reach > 0:
        return "text", text_reach > binary_reach
    # neither layout reads the first record, or binary reads further only through printable
    # bytes: by the bytes after the first word
    return ("binary" if _blob_is_binary(body, dim) else "text"), False


def _blob_is_binary(body: bytes, dim: int) -> bool:
    space = body.find(b" ", 0, MAX_WORD_BYTES + 1)
    if space <= 0:
        return False
    blob = body[space + 1 : space + 1 + 4 * dim]
    # text after a word: printable ASCII numbers; a float32 blob: almost surely other bytes
    return not all(0x20 <= byte < 0x7F or byte in (0x0A, 0x0D) for byte in blob)


def _line_blocks(
    source: _Source, path: Path, first_line: int, max_line: list[int]
) -> Iterator[tuple[int, list[bytes], bool]]:
    """Blocks of complete lines: ``(number of the first line, lines, odd)``, CRLF turned into LF,
    ``odd`` when the block holds a byte that only the strict parser may judge. ``max_line[0]``
    is the longest line allowed (it may change between blocks)."""
    pending = b""
    line_number = first_line
    while True:
        chunk = source.read(CHUNK_BYTES, str(line_number))
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        end = data.rfind(b"\n")
        if end < 0:
            pending = data
            _check_length(len(pending), max_line[0], path, line_number)
            continue
        complete, pending = data[:end], data[end + 1 :]
        if b"\r" in complete:  # CRLF; the last line's CR is before the LF at data[end]
            complete = complete.replace(b"\r\n", b"\n").removesuffix(b"\r")
        lines = complete.split(b"\n")
        if len(complete) > max_line[0]:
            longest = max(range(len(lines)), key=lambda i: len(lines[i]))
            _check_length(len(lines[longest]), max_line[0], path, line_number + longest)
        odd = any(byte in complete for byte in _ODD_BYTES)
        yield line_number, lines, odd
        line_number += len(lines)
        _check_length(len(pending), max_line[0], path, line_number)
    if pending:
        pending = pending.removesuffix(b"\r")
        yield line_number, [pending], any(byte in pending for byte in _ODD_BYTES)


def _check_length(length: int, limit: int, path: Path, line_number: int) -> None:
    if length > limit:
        raise EmbeddingFileError(
            f"{path}:{line_number}: the line is longer than {limit:,} bytes, more than its "
            f"dimension allows ({MAX_WORD_BYTES:,} bytes of word and {MAX_NUMBER_BYTES + 1} per "
            "number); is this an embedding file?"
        )


def _line_limit(dim: int) -> int:
    return MAX_WORD_BYTES + dim * (MAX_NUMBER_BYTES + 1) + 1


def _parse_block(rows: _Rows, first_line: int, lines: list[bytes], odd: bool) -> None:
    """Parse complete lines into ``rows``: the fast path splits on spaces and parses every number
    of the block in one numpy call; anything unusual goes through :func:`split_line`."""
    dim = rows.dim
    words: list[bytes] = []
    where: list[int] = []
    tokens: list[bytes] = []
    for offset, line in enumerate(lines):
        if line.endswith(b" "):
            line = line.rstrip(b" ")
        if not line:
            continue  # blank lines are skipped
        word, _, tail = line.partition(b" ")
        parts = tail.split(b" ")
        if odd or len(parts) != dim or not word:
            if odd and not any(byte in line for byte in _ODD_BYTES) and len(parts) == dim and word:
                pass  # this line of an odd block is ordinary
            else:
                try:
                    word, parts = split_line(line, dim)
                except LineProblem as problem:
                    raise line_error(rows.path, first_line + offset, str(problem)) from None
        words.append(word)
        where.append(first_line + offset)
        tokens += parts
    if not words:
        return
    try:
        with np.errstate(over="ignore"):  # overflow becomes inf, refused by rows.add
            values = np.array(tokens, dtype=np.float32)
    except ValueError:  # name the line and its problem as the strict parser sees it
        for number in where:
            try:
                split_line(lines[number - first_line].rstrip(b" "), dim)
            except LineProblem as problem:
                raise line_error(rows.path, number, str(problem)) from None
        raise
    rows.add(words, values.reshape(len(words), dim), where)


def _read_text(source: _Source, rows: _Rows, *, first_line: int, dim: int) -> None:
    max_line = [_line_limit(dim)]
    for line_number, lines, odd in _line_blocks(source, rows.path, first_line, max_line):
        _parse_block(rows, line_number, lines, odd)
        if rows.full:
            return


def _read_headerless(
    source: _Source, path: Path, encoding: str, on_duplicate: str, max_words: int | None
) -> tuple[list[str], np.ndarray]:
    """A GloVe file: the dimension is the most common number of fields minus one among the
    first :data:`DIM_SAMPLE_LINES` non-blank lines (ties: the smallest)."""
    max_line = [MAX_FIRST_LINE]
    blocks = _line_blocks(source, path, 1, max_line)
    sample: list[tuple[int, list[bytes], bool]] = []
    counts: Counter[int] = Counter()
    first_of: dict[int, int] = {}
    for block in blocks:
        sample.append(block)
        line_number, lines, _ = block
        for offset, line in enumerate(lines):
            line = line.rstrip(b" ")
            if line and sum(counts.values()) < DIM_SAMPLE_LINES:
                fields = line.split(b" ")
                n_fields = len(fields) - fields.count(b"")  # "a  1" is a word and a number
                counts[n_fields] += 1
                first_of.setdefault(n_fields, line_number + offset)
        if sum(counts.values()) >= DIM_SAMPLE_LINES:
            break
    if not counts:
        raise EmbeddingFileError(f"{path}: holds no word vectors (empty file).")
    top = max(counts.values())
    n_fields = next(n for n in first_of if counts[n] == top)  # ties: the one seen first
    dim = n_fields - 1
    if dim < 1:
        where = first_of[n_fields]
        line = next(
            lines[where - number]
            for number, lines, _ in sample
            if number <= where < number + len(lines)
        ).rstrip(b" ")
        separator = _describe_odd(line)
        problem = (
            separator or f"expected a word and its vector; got {_show(line)}{_comma_hint(line)}"
        )
        raise line_error(path, where, problem)
    max_line[0] = _line_limit(dim)
    if source.compression is None:
        capacity = source.size // (2 * dim + 1)  # a row takes >= 2 bytes per number
    else:
        capacity = min(1 << 16, (1 << 24) // dim)  # <= 64 MiB up front, then grown
    rows = _Rows(path, dim, capacity, encoding, on_duplicate, max_words, "")
    for line_number, lines, odd in sample:
        for offset, line in enumerate(lines):  # sampled lines were read with the first limit
            _check_length(len(line), max_line[0], path, line_number + offset)
        _parse_block(rows, line_number, lines, odd)
        if rows.full:
            return _finish(rows, path, None, False)
    for line_number, lines, odd in blocks:
        _parse_block(rows, line_number, lines, odd)
        if rows.full:
            break
    return _finish(rows, path, None, False)


def _read_binary(source: _Source, rows: _Rows, n_words: int) -> None:
    """word2vec binary records: ``word`` + space + ``dim`` little-endian float32 (+ an optional
    line feed), as the word2vec C tool (with) and gensim (without) write them."""
    dim = rows.dim
    size = 4 * dim
    buffer = bytearray()
    position = 0
    ended = False
    batch_words: list[bytes] = []
    batch_where: list[int] = []
    batch = np.empty((max(1, min(4096, (1 << 22) // size)), dim), dtype=np.float32)

    def fill(needed: int, record: int) -> bool:
        """Make ``needed`` bytes available from ``position``; False at the end of the file."""
        nonlocal buffer, position, ended
        while len(buffer) - position < needed and not ended:
            if position:
                del buffer[:position]
                position = 0
            chunk = source.read(max(CHUNK_BYTES, needed), f"record {record}")
            if chunk:
                buffer += chunk
            else:
                ended = True
        return len(buffer) - position >= needed

    def flush() -> None:
        rows.add(batch_words, batch[: len(batch_words)], batch_where)
        batch_words.clear()
        batch_where.clear()

    for record in range(1, n_words + 1):
        fill(MAX_WORD_BYTES + 1 + size + 1, record)
        if len(buffer) == position:
            break  # fewer records than announced: reported by _finish
        space = buffer.find(b" ", position, position + MAX_WORD_BYTES + 1)
        if space < 0:
            raise rows.error(
                record,
                "no space after the word within its first "
                f"{min(len(buffer) - position, MAX_WORD_BYTES + 1):,} bytes (truncated file, "
                "or not word2vec binary)",
            )
        word = bytes(buffer[position:space])
        if not word:
            raise rows.error(record, "empty word")
        if space + 1 + size > len(buffer):
            raise rows.error(
                record,
                f"the vector of {_show(word)} is truncated: {len(buffer) - space - 1} of "
                f"{size} bytes",
            )
        if b"\n" in word:
            raise rows.error(
                record,
                f"the word {_show(word)} holds a line feed (U+000A){_MISALIGNED}",
            )
        batch[len(batch_words)] = np.frombuffer(buffer, dtype="<f4", count=dim, offset=space + 1)
        batch_words.append(word)
        batch_where.append(record)
        position = space + 1 + size
        if fill(1, record) and buffer[position] == 0x0A:
            position += 1  # the word2vec C tool writes a line feed after each vector
        if len(batch_words) == batch.shape[0]:
            flush()
            if rows.full:
                return
    if batch_words:
        flush()
        if rows.full:
            return
    fill(MAX_WORD_BYTES, n_words + 1)
    rest = bytes(buffer[position:]).strip(b"\n")
    if rest:
        raise rows.error(
            n_words + 1,
            f"{len(rest):,}+ bytes follow the {n_words} words the header announces",
        )


# ----------------------------------------------------------------------------- writing


def check_words_for_format(
    words: Sequence[str], dim: int, format: str, encoding: str
) -> list[bytes]:
    """The encoded words, if the reader gives each back exactly in ``format``; otherwise a
    ValueError naming the word and the reader's own message about it."""
    encoded: list[bytes] = []
    binary = format == "word2vec-binary"
    with_spaces = 0
    for position, word in enumerate(words):
        try:
            raw = word.encode(encoding)
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"word {word!r} (word {position}) cannot be written: not valid {encoding} text "
                f"({exc.reason}: {word[exc.start : exc.end]!r})."
            ) from None
        if any(byte in raw for byte in (b" ", b"\t", b"\r", b"\n")):
            problem = _word_problem(raw, dim, binary)
            if problem is not None:
                raise ValueError(f"word {word!r} (word {position}) cannot be written: {problem}.")
            if b" " in raw and position < DIM_SAMPLE_LINES:
                with_spaces += 1
        encoded.append(raw)
    if format == "glove" and words:
        if encoding == "utf-8" and words[0].startswith("\ufeff"):
            raise ValueError(
                f"word {words[0]!r} (word 0) cannot be written: a glove file starting with a "
                "byte-order mark (U+FEFF) is read without it; use format='word2vec'."
            )
        if with_spaces:
            sample = Counter(raw.count(b" ") for raw in encoded[:DIM_SAMPLE_LINES])
            if any(count >= sample[0] for spaces, count in sample.items() if spaces):
                raise ValueError(
                    "a glove file has no header: its dimension is read as the most common number "
                    f"of fields among its first {DIM_SAMPLE_LINES} lines, and here words holding "
                    "spaces are as common as words without; use format='word2vec' (its header "
                    "gives the dimension)."
                )
    return encoded


def _word_problem(raw: bytes, dim: int, binary: bool) -> str | None:
    if b"\n" in raw:
        return "holds a line feed (U+000A), which ends a line"
    if binary:
        if b" " in raw:
            return "holds a space, which ends a word in word2vec binary files"
        return None
    try:
        split_line(raw + b" 0" * dim, dim)
    except LineProblem as problem:
        return str(problem)
    return None


def write_embeddings(
    path: Path,
    words: Sequence[str],
    vectors: np.ndarray,
    *,
    format: str,
    precision: int,
    encoding: str,
) -> None:
    """Write atomically (a temporary file renamed into place), compressed by suffix."""
    dim = int(vectors.shape[1])
    encoded = check_words_for_format(words, dim, format, encoding)
    compression = _SUFFIX_COMPRESSION.get(path.suffix.lower())
    with atomic_write(path) as raw:
        stream: Any
        if compression == "gzip":
            stream = gzip.GzipFile(filename=path.name, fileobj=raw, mode="wb", mtime=0)
        elif compression == "bz2":
            stream = bz2.BZ2File(raw, "wb")
        elif compression == "xz":
            stream = lzma.LZMAFile(raw, "wb")  # noqa: SIM115
        else:
            stream = _NoClose(raw)
        with stream:
            if format != "glove":
                stream.write(f"{len(encoded)} {dim}\n".encode("ascii"))
            if format == "word2vec-binary":
                little = vectors.astype("<f4", copy=False)
                for start in range(0, len(encoded), 4096):
                    stream.write(
                        b"".join(
                            word + b" " + row.tobytes() + b"\n"
                            for word, row in zip(
                                encoded[start : start + 4096],
                                little[start : start + 4096],
                                strict=True,
                            )
                        )
                    )
            else:
                template = " ".join([f"%.{precision}g"] * dim)
                for start in range(0, len(encoded), 4096):
                    block = vectors[start : start + 4096].tolist()
                    stream.write(
                        b"".join(
                            word + b" " + (template % tuple(row)).encode("ascii") + b"\n"
                            for word, row in zip(encoded[start : start + 4096], block, strict=True)
                        )
                    )


class _NoClose:
    """A file object whose ``with`` block does not close it (atomic_write closes it)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        return self._stream.write(data)

    def __enter__(self) -> _NoClose:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
