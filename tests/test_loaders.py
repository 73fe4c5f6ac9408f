"""Embedding files as people have them: formats, compression, separators, damage, gensim."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import densitydp as dd
from densitydp import _formats

COMPRESSORS = {
    "": lambda data: data,
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
}
FORMATS = ["glove", "word2vec", "word2vec-binary", "fasttext"]


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=200, dim=7, n_clusters=3, rng=11)


def same(loaded, space):
    assert list(loaded.vocabulary) == list(space.vocabulary)
    np.testing.assert_array_equal(loaded.vectors, space.vectors)


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def binary_file(words, vectors, *, newline=True, header=None):
    """A word2vec binary file built by hand (not by our writer)."""
    vectors = np.asarray(vectors, dtype="<f4")
    n_words, dim = vectors.shape
    out = [header or f"{n_words} {dim}\n".encode()]
    for word, row in zip(words, vectors, strict=True):
        out.append(word.encode() + b" " + row.tobytes() + (b"\n" if newline else b""))
    return b"".join(out)


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_and_compression_round_trips(tmp_path, space, fmt, suffix):
    path = space.to_file(tmp_path / f"vectors{suffix}", format=fmt)
    assert list(tmp_path.iterdir()) == [path]  # atomic: no temporary file left
    same(dd.EmbeddingSpace.from_file(path), space)  # auto-detected
    same(dd.EmbeddingSpace.from_file(path, format=fmt), space)


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_byte_order_mark_is_dropped_in_every_format_and_compression(tmp_path, space, fmt, suffix):
    plain = space.to_file(tmp_path / "plain", format=fmt).read_bytes()
    path = write_bytes(tmp_path / f"bom{suffix}", COMPRESSORS[suffix](b"\xef\xbb\xbf" + plain))
    same(dd.EmbeddingSpace.from_file(path), space)
    same(dd.EmbeddingSpace.from_file(path, format=fmt), space)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_compression_is_detected_by_magic_bytes_not_the_name(tmp_path, space, suffix):
    path = space.to_file(tmp_path / f"vectors.txt{suffix}", format="word2vec")
    renamed = path.rename(tmp_path / "vectors.txt")
    assert renamed.read_bytes()[:2] != b"ab"
    same(dd.EmbeddingSpace.from_file(renamed), space)


@pytest.mark.parametrize("newline", [True, False])
def test_word2vec_binary_with_and_without_a_newline_after_each_row(tmp_path, space, newline):
    data = binary_file(space.vocabulary, space.vectors, newline=newline)
    path = write_bytes(tmp_path / "GoogleNews-like.bin", data)
    same(dd.EmbeddingSpace.from_file(path), space)
    same(dd.EmbeddingSpace.from_file(path, format="word2vec-binary"), space)


def test_fasttext_vec_is_word2vec_text_with_a_header(tmp_path):
    path = write_bytes(tmp_path / "cc.vec", b"3 2\n, 0.1 0.2\nthe -0.3 0.4\n</s> 5e-1 6\n")
    loaded = dd.EmbeddingSpace.from_file(path, format="fasttext")
    assert list(loaded.vocabulary) == [",", "the", "</s>"]
    np.testing.assert_array_equal(loaded.vectors, np.float32([[0.1, 0.2], [-0.3, 0.4], [0.5, 6]]))
    with pytest.raises(dd.EmbeddingFileError, match="expected a word2vec header"):
        dd.EmbeddingSpace.from_file(
            write_bytes(tmp_path / "g.vec", b"a 1\nb 2\n"), format="fasttext"
        )


def test_glove_840b_words_with_spaces_take_the_last_dim_fields(tmp_path):
    text = (
        "the 0.1 0.2 0.3\n"
        ". . . 1 2 3\n"
        "at name@domain.com 4 5 6\n"
        ", 7 8 9\n"
        "1 2 3 4\n"  # a numeric word (GloVe has them)
    )
    path = write_bytes(tmp_path / "glove.840B.300d.txt", text.encode())
    loaded = dd.EmbeddingSpace.from_file(path)
    assert loaded.dim == 3
    assert list(loaded.vocabulary) == ["the", ". . .", "at name@domain.com", ",", "1"]
    np.testing.assert_array_equal(loaded.vectors[2], np.float32([4, 5, 6]))
    # the first line holding a word with spaces does not fool the dimension
    swapped = write_bytes(tmp_path / "first.txt", b". . . 1 2 3\nthe 1 2 3\nof 4 5 6\n")
    assert dd.EmbeddingSpace.from_file(swapped).dim == 3


def test_an_extra_value_is_not_read_as_a_word_with_a_space(tmp_path):
    path = write_bytes(tmp_path / "v.txt", b"a 1 2\nb 3 4\nc 5 6 7\n")
    with pytest.raises(
        dd.EmbeddingFileError, match=r"v\.txt:3: expected a word and 2 numbers; got 4 fields"
    ):
        dd.EmbeddingSpace.from_file(path)


@pytest.mark.parametrize("policy", ["error", "first", "last"])
def test_on_duplicate(tmp_path, policy):
    path = write_bytes(tmp_path / "dup.txt", b"a 1 2\nb 3 4\na 5 6\nc 7 8\n")
    if policy == "error":
        with pytest.raises(
            dd.EmbeddingFileError, match=r"dup\.txt:3: duplicate word 'a' \(first on line 1\)"
        ):
            dd.EmbeddingSpace.from_file(path)
        return
    loaded = dd.EmbeddingSpace.from_file(path, on_duplicate=policy)
    assert list(loaded.vocabulary) == ["a", "b", "c"]
    expected = [1, 2] if policy == "first" else [5, 6]
    np.testing.assert_array_equal(loaded.vectors, np.float32([expected, [3, 4], [7, 8]]))
    with pytest.raises(ValueError, match="`on_duplicate` must be one of"):
        dd.EmbeddingSpace.from_file(path, on_duplicate="mean")


def test_duplicates_in_binary_files_name_the_record(tmp_path):
    path = write_bytes(tmp_path / "d.bin", binary_file(["a", "b", "a"], np.eye(3)))
    with pytest.raises(dd.EmbeddingFileError, match=r"d\.bin:record 3: duplicate word 'a'"):
        dd.EmbeddingSpace.from_file(path)
    loaded = dd.EmbeddingSpace.from_file(path, on_duplicate="last")
    np.testing.assert_array_equal(loaded.vectors, np.float32([[0, 0, 1], [0, 1, 0]]))


def test_max_words_counts_distinct_words(tmp_path):
    path = write_bytes(tmp_path / "m.txt", b"3 1\na 1\na 2\nb 3\n")
    loaded = dd.EmbeddingSpace.from_file(path, max_words=2, on_duplicate="first")
    assert list(loaded.vocabulary) == ["a", "b"]


def test_encoding(tmp_path):
    path = write_bytes(tmp_path / "latin.txt", "café 1 2\nnaïve 3 4\n".encode("latin-1"))
    with pytest.raises(dd.EmbeddingFileError, match=r"latin\.txt:1: not valid utf-8 text"):
        dd.EmbeddingSpace.from_file(path)
    loaded = dd.EmbeddingSpace.from_file(path, encoding="latin-1")
    assert list(loaded.vocabulary) == ["café", "naïve"]
    loaded.to_file(tmp_path / "out.txt", encoding="cp1252")
    assert (tmp_path / "out.txt").read_bytes().startswith("café ".encode("cp1252"))
    with pytest.raises(ValueError, match="`encoding` must be an ASCII-compatible"):
        dd.EmbeddingSpace.from_file(path, encoding="utf-16")
    with pytest.raises(ValueError, match="`encoding` must be a known text encoding"):
        dd.EmbeddingSpace.from_file(path, encoding="no-such-codec")


def test_values_are_float32_roundings_of_the_decimal_as_numpy_and_gensim_read_them(tmp_path):
    generator = np.random.default_rng(5)
    mantissas = generator.integers(10**16, 10**17, size=400)
    exponents = generator.integers(-45, 38, size=400)  # 10^38 and below: finite in float32
    fields = [f"{m}e{e - 16}" for m, e in zip(mantissas, exponents, strict=True)]
    lines = [f"w{i} " + " ".join(fields[4 * i : 4 * i + 4]) for i in range(len(fields) // 4)]
    path = write_bytes(tmp_path / "digits.txt", ("\n".join(lines) + "\n").encode())
    loaded = dd.EmbeddingSpace.from_file(path)
    expected = np.array([np.float32(float(f)) for f in fields]).reshape(-1, 4)
    np.testing.assert_array_equal(loaded.vectors, expected)


def test_a_growing_array_without_header_in_a_compressed_file(tmp_path):
    n_words = 70_000  # more than the first allocation for compressed files without a header
    text = "".join(f"w{i} {i} {-i}\n" for i in range(n_words)).encode()
    loaded = dd.EmbeddingSpace.from_file(write_bytes(tmp_path / "g.txt.gz", gzip.compress(text)))
    assert loaded.vectors.shape == (n_words, 2) and loaded.vectors.flags.c_contiguous
    np.testing.assert_array_equal(loaded.vectors[:, 0], np.arange(n_words, dtype=np.float32))


# ----------------------------------------------------------------------------- separators

SEPARATOR_CASES = [
    # (file bytes, None if accepted (as a 2-word 2-d space), or the message)
    (b"a 1 2\r\nb 3 4\r\n", None),
    (b"a 1 2 \nb 3 4   \n", None),
    (b"a 1 2 \r\nb 3 4\n\n\n", None),
    (b"a\t1\t2\nb\t3\t4\n", r":1: holds a tab \(U\+0009\)"),
    (b"a 1 2\nb 3\t4\n", r":2: holds a tab"),
    (b"a,1,2\nb,3,4\n", r":1: expected a word and its vector; got 'a,1,2'; found a comma"),
    (b"a 1,5 2\nb 3 4\n", r":1: '1,5' is not a number .*found a comma"),
    (b"a  1  2\nb  3  4\n", r":1: two spaces in a row"),
    (b"a 1  2\nb 3 4\n", r":1: two spaces in a row"),
    (b"a 1 2\rb 3 4\r", r":1: holds a carriage return \(U\+000D\) inside the line"),
    (b"a 1 2\nb 3\r4\n", r":2: holds a carriage return"),
    (b"a 1 2\nb 3 4\x0b\n", r":2: '4\\x0b' is not a number"),
    (b"a 1 2\n 3 4\nc 5 6\n", r":2: empty word \(the line starts with a space\)"),
]


@pytest.mark.parametrize(("content", "message"), SEPARATOR_CASES)
def test_separators_are_read_or_refused_by_name(tmp_path, content, message):
    path = write_bytes(tmp_path / "sep.txt", content)
    if message is None:
        loaded = dd.EmbeddingSpace.from_file(path)
        assert list(loaded.vocabulary) == ["a", "b"]
        np.testing.assert_array_equal(loaded.vectors, np.float32([[1, 2], [3, 4]]))
    else:
        with pytest.raises(dd.EmbeddingFileError, match=r"sep\.txt" + message):
            dd.EmbeddingSpace.from_file(path)


MUTATIONS = {
    "tab": lambda line: line.replace(" ", "\t", 1),
    "comma": lambda line: line.replace(" ", ",", 1),
    "double space": lambda line: line.replace(" ", "  ", 1),
    "all double spaces": lambda line: line.replace(" ", "  "),
    "trailing spaces": lambda line: line + "  ",
    "crlf": lambda line: line + "\r",
    "inner cr": lambda line: line.replace(" ", "\r", 1),
    "leading space": lambda line: " " + line,
    "comma decimal": lambda line: line.replace(".", ",", 1),
}
HARMLESS = {"trailing spaces", "crlf"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_words=st.integers(2, 8),
    dim=st.integers(1, 4),
    mutation=st.sampled_from(sorted(MUTATIONS)),
    header=st.booleans(),
    data=st.data(),
)
def test_a_separator_we_do_not_read_is_an_error_never_a_misparse(
    tmp_path_factory, n_words, dim, mutation, header, data
):
    lines = [f"w{i} " + " ".join(f"{i + j / 8:.3f}" for j in range(dim)) for i in range(n_words)]
    expected = np.float32([[i + j / 8 for j in range(dim)] for i in range(n_words)])
    bad = data.draw(st.integers(0, n_words - 1))
    lines[bad] = MUTATIONS[mutation](lines[bad])
    text = (f"{n_words} {dim}\n" if header else "") + "\n".join(lines) + "\n"
    path = tmp_path_factory.mktemp("sep") / "v.txt"
    path.write_bytes(text.encode())
    if mutation in HARMLESS:
        loaded = dd.EmbeddingSpace.from_file(path)
        assert list(loaded.vocabulary) == [f"w{i}" for i in range(n_words)]
        np.testing.assert_array_equal(loaded.vectors, expected)
        return
    try:
        loaded = dd.EmbeddingSpace.from_file(path)
    except dd.EmbeddingFileError as error:
        message = str(error)
    else:
        message = None
    if message is not None:
        assert "v.txt:" in message
        return
    # accepted: then it must be the very same data (never fewer dimensions, never a word with
    # a separator inside)
    assert loaded.dim == dim
    assert list(loaded.vocabulary) == [f"w{i}" for i in range(n_words)]
    np.testing.assert_array_equal(loaded.vectors, expected)


# ----------------------------------------------------------------------------- what we do not read


def test_a_binary_file_read_as_text_names_the_format(tmp_path, space):
    path = space.to_file(tmp_path / "vectors.bin", format="word2vec-binary")
    for fmt in ("glove", "word2vec", "fasttext"):
        with pytest.raises(
            dd.EmbeddingFileError,
            match="this looks like a word2vec binary file: use format='word2vec-binary'",
        ):
            dd.EmbeddingSpace.from_file(path, format=fmt)
    text = space.to_file(tmp_path / "vectors.txt", format="word2vec")
    with pytest.raises(dd.EmbeddingFileError, match="looks like a word2vec text file"):
        dd.EmbeddingSpace.from_file(text, format="word2vec-binary")


@pytest.mark.parametrize(
    ("magic", "message"),
    [
        (b"PK\x03\x04rest", "zip archive"),
        (b"\x28\xb5\x2f\xfdrest", "zstandard"),
        (b"\x93NUMPY\x01\x00", r"NumPy \.npy"),
        (b"\x89HDF\r\n\x1a\n", "HDF5"),
        (struct.pack("<ii", 793712314, 12), r"fastText binary model \(\.bin\)"),
        (b"\x80\x04\x95rest", "pickle"),
    ],
)
def test_foreign_formats_are_named(tmp_path, magic, message):
    path = write_bytes(tmp_path / "thing", magic + bytes(range(256)))
    with pytest.raises(dd.EmbeddingFileError, match=rf"thing: this looks like .*{message}"):
        dd.EmbeddingSpace.from_file(path)


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_compressed_files_give_our_error(tmp_path, space, suffix, damage):
    data = space.to_file(tmp_path / f"ok{suffix}", format="word2vec").read_bytes()
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        middle = len(data) // 2
        data = (
            data[:middle]
            + bytes(b ^ 0x5A for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    path = write_bytes(tmp_path / f"bad{suffix}", data)
    with pytest.raises(dd.EmbeddingFileError, match=r"bad\.\w+:\d+: ") as info:
        dd.EmbeddingSpace.from_file(path)
    # either the decompressor's own complaint, or what the damaged text looks like
    assert "truncated or corrupt" in str(info.value) or damage == "corrupt"


def test_a_truncated_gzip_names_the_line_where_it_ends(tmp_path):
    text = "".join(f"w{i} {i} 1\n" for i in range(200_000)).encode()
    data = gzip.compress(text)
    path = write_bytes(tmp_path / "cut.txt.gz", data[: len(data) // 2])
    with pytest.raises(dd.EmbeddingFileError, match=r"cut\.txt\.gz:(\d+): the gzip data") as info:
        dd.EmbeddingSpace.from_file(path)
    line = int(info.value.args[0].split(":")[1])
    assert 1 < line < 200_000


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ("٣ ٢\na 1 2\n".encode(), "auto", "digits are not ASCII"),
        ("٣ ٢\na 1 2\n".encode(), "word2vec", r"expected a word2vec header .*ASCII 0-9"),
        ("² 2\na 1 2\nb 3 4\n".encode(), "auto", "digits are not ASCII"),
        ("2 ²\na 1 2\n".encode(), "word2vec-binary", "ASCII 0-9"),
    ],
)
def test_headers_with_non_ascii_digits(tmp_path, content, fmt, message):
    path = write_bytes(tmp_path / "h.txt", content)
    with pytest.raises(dd.EmbeddingFileError, match=r"h\.txt:1: .*" + message):
        dd.EmbeddingSpace.from_file(path, format=fmt)


def test_damaged_binary_files(tmp_path):
    good = binary_file(["a", "b", "c"], np.arange(6).reshape(3, 2))
    truncated = write_bytes(tmp_path / "t.bin", good[:-5])
    with pytest.raises(dd.EmbeddingFileError, match=r"t\.bin:record 3: the vector of 'c' is trunc"):
        dd.EmbeddingSpace.from_file(truncated)
    extra = write_bytes(tmp_path / "x.bin", good + b"d " + bytes(8))
    with pytest.raises(dd.EmbeddingFileError, match=r"x\.bin:record 4: .*follow the 3 words"):
        dd.EmbeddingSpace.from_file(extra)
    short = write_bytes(tmp_path / "s.bin", good.replace(b"3 2\n", b"4 2\n", 1))
    with pytest.raises(dd.EmbeddingFileError, match="announces 4 words but the file holds 3"):
        dd.EmbeddingSpace.from_file(short)
    wrong_dim = write_bytes(tmp_path / "w.bin", good.replace(b"3 2\n", b"2 3\n", 1))
    with pytest.raises(dd.EmbeddingFileError, match=r"w\.bin:record \d"):
        dd.EmbeddingSpace.from_file(wrong_dim, format="word2vec-binary")


def test_an_empty_word_names_the_file_and_line(tmp_path):
    path = write_bytes(tmp_path / "e.txt", b"2 2\na 1 2\n 3 4\n")
    with pytest.raises(dd.EmbeddingFileError, match=r"e\.txt:3: empty word"):
        dd.EmbeddingSpace.from_file(path)
    binary = write_bytes(tmp_path / "e.bin", binary_file(["a", ""], np.ones((2, 2))))
    with pytest.raises(dd.EmbeddingFileError, match=r"e\.bin:record 2: empty word"):
        dd.EmbeddingSpace.from_file(binary)


# ----------------------------------------------------------------------------- bounded memory


def _refusal_and_peak(path):
    """``from_file(path)``'s EmbeddingFileError and the peak traced memory of the attempt."""
    tracemalloc.start()
    try:
        with pytest.raises(dd.EmbeddingFileError) as caught:
            dd.EmbeddingSpace.from_file(path)
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_over_long_line_is_refused_as_soon_as_it_exceeds_its_dimension(tmp_path):
    path = write_bytes(tmp_path / "long.txt", b"3 2\na 1 2\nb " + b"1" * 5_000_000 + b" 2\n")
    error, peak = _refusal_and_peak(path)
    assert re.search(r"long\.txt:3: the line is longer than", str(error))
    assert peak < 8 * 2**20  # one 1 MiB chunk and its copies, not the 5 MB line


@pytest.mark.parametrize("header", [b"", b"2 300\n"])
def test_a_gzip_bomb_of_one_line_does_not_exhaust_memory(tmp_path, header):
    path = tmp_path / "bomb.txt.gz"
    block = b"a" * 2**20
    with gzip.open(path, "wb", compresslevel=9) as stream:
        stream.write(header)
        for _ in range(200):  # 200 MiB of one line
            stream.write(block)
    assert path.stat().st_size < 1_000_000
    error, peak = _refusal_and_peak(path)
    assert re.search(r"bomb\.txt\.gz:\d: the line is longer", str(error))
    limit = _formats.MAX_FIRST_LINE if not header else _formats.CHUNK_BYTES
    assert peak < 3 * limit + 8 * 2**20


def test_a_gzip_bomb_under_a_memory_limit_in_a_subprocess(tmp_path):
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb") as stream:
        for _ in range(200):
            stream.write(b"7" * 2**20)
    code = (
        "import resource, sys, densitydp as dd\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    dd.EmbeddingSpace.from_file(sys.argv[1])\n"
        "except dd.EmbeddingFileError as e:\n"
        "    print('refused', str(e)[-60:])\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    refused, grown_mib = done.stdout.strip().splitlines()
    assert refused.startswith("refused")
    assert int(grown_mib) < 100  # MiB above the post-import peak: not the 200 MiB line


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "directory"])
def test_special_files_are_refused_without_reading(tmp_path, kind):
    if kind == "dev_zero":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        path, named = "/dev/zero", "a character device"
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        path, named = tmp_path / "pipe", "a FIFO"
        os.mkfifo(path)  # nobody writes: opening it for reading would block forever
    else:
        path, named = tmp_path, "a directory"
    with pytest.raises(ValueError, match=f"`path` must be a regular file.*{named}"):
        dd.EmbeddingSpace.from_file(path)


# ----------------------------------------------------------------------------- writer == reader

WORD_ALPHABET = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(
        [
            *(" ", " ", "\t", "\r", "\n", "\x0b", "\x0c", "\x00", "\x1f", "\x85", "\u00a0"),
            *("\u2003", "\u3000", "\u2028", "\u2029", "\ufeff", "\ud800", "\udfff"),
            *(",", "1", ".", "e"),
        ]
    ),
)
WORDS = st.text(alphabet=WORD_ALPHABET, min_size=1, max_size=6)


def _reader_message(problem: str) -> str:
    """The part of a writer's refusal that the reader says of the same line."""
    return problem.split("cannot be written: ", 1)[1].rstrip(".")


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    words=st.lists(WORDS, min_size=2, max_size=6, unique=True),
    fmt=st.sampled_from(FORMATS),
    dim=st.integers(1, 3),
    data=st.data(),
)
def test_to_file_writes_what_from_file_reads_or_both_refuse(
    tmp_path_factory, words, fmt, dim, data
):
    folder = tmp_path_factory.mktemp("words")
    vectors = np.arange(len(words) * dim, dtype=np.float32).reshape(len(words), dim) / 3
    space = dd.EmbeddingSpace(words, vectors)
    suffix = data.draw(st.sampled_from(["", ".gz"]))
    path = folder / f"v{suffix}"
    try:
        space.to_file(path, format=fmt)
    except ValueError as refusal:
        assert not path.exists()
        message = str(refusal)
        assert "cannot be written" in message or "glove file has no header" in message
        if "cannot be written" not in message:
            return  # the glove dimension rule: word2vec holds such words
        offender = next(w for w in words if f"word {w!r}" in message)
        # the same line written by hand: the reader refuses it with the same words
        raw = offender.encode("utf-8", "surrogatepass")
        lines = [b"ok 1" + b" 1" * (dim - 1), raw + b" 0" * dim, b"fine 2" + b" 2" * (dim - 1)]
        header = b"" if fmt == "glove" else f"3 {dim}\n".encode()
        if fmt == "word2vec-binary":
            body = b"".join(
                w + b" " + np.full(dim, 0.5, "<f4").tobytes() + b"\n" for w in (b"ok", raw, b"fine")
            )
            hand = write_bytes(folder / "hand.bin", header + body)
        else:
            hand = write_bytes(folder / "hand.txt", header + b"\n".join(lines) + b"\n")
        binary_space = fmt == "word2vec-binary" and "holds a space" in message
        if "line feed" in message or binary_space:
            # a line feed splits the line, a space in a binary word ends the word: the reader
            # sees other lines or records (and may read them), never the word itself
            try:
                read = dd.EmbeddingSpace.from_file(hand, format=fmt)
            except dd.EmbeddingFileError:
                return
            assert offender not in read.vocabulary
            return
        if "byte-order mark" in message:  # written first, the reader drops the mark
            first = write_bytes(folder / "bom.txt", b"\n".join([lines[1], lines[0]]) + b"\n")
            assert offender not in dd.EmbeddingSpace.from_file(first, format=fmt).vocabulary
            return
        with pytest.raises(dd.EmbeddingFileError) as error:
            dd.EmbeddingSpace.from_file(hand, format=fmt)
        expected = _reader_message(message)
        if "not valid utf-8" in expected:
            expected = "not valid utf-8 text"
        assert expected in str(error.value), (expected, str(error.value))
        return
    loaded = dd.EmbeddingSpace.from_file(path, format=fmt)
    same(loaded, space)


@pytest.mark.parametrize(
    ("word", "fmt", "message"),
    [
        ("a\tb", "glove", r"holds a tab \(U\+0009\)"),
        ("a\nb", "word2vec", r"holds a line feed \(U\+000A\)"),
        ("a\rb", "glove", "carriage return"),
        ("a  b", "glove", "two spaces in a row"),
        (" a", "word2vec", "empty word"),
        ("a ", "word2vec", "two spaces in a row"),
        ("page 1", "word2vec", "its last part is not a number"),
        ("a b", "word2vec-binary", "holds a space"),
        ("x\ud800", "glove", "not valid utf-8 text"),
        ("\ufeffa", "glove", "byte-order mark"),
    ],
)
def test_to_file_refuses_what_the_reader_would_not_give_back(tmp_path, word, fmt, message):
    space = dd.EmbeddingSpace([word, "other"], [[0.0], [1.0]])
    with pytest.raises(ValueError, match=message):
        space.to_file(tmp_path / "v.txt", format=fmt)
    assert list(tmp_path.iterdir()) == []


def test_words_with_spaces_round_trip(tmp_path):
    words = [". . .", "at name@domain.com", "New York", "the", "of", "and", "to"]
    space = dd.EmbeddingSpace(words, np.arange(14.0).reshape(7, 2))
    for fmt in ("glove", "word2vec"):
        same(dd.EmbeddingSpace.from_file(space.to_file(tmp_path / fmt, format=fmt)), space)
    mostly_spaced = dd.EmbeddingSpace(["a b", "c d", "e"], [[0.0], [1.0], [2.0]])
    with pytest.raises(ValueError, match="glove file has no header"):
        mostly_spaced.to_file(tmp_path / "g.txt", format="glove")
    same(
        dd.EmbeddingSpace.from_file(mostly_spaced.to_file(tmp_path / "w.txt", format="word2vec")),
        mostly_spaced,
    )


# ----------------------------------------------------------------------------- gensim


def test_gensim_interop_both_ways(tmp_path, space):
    pytest.importorskip("gensim")
    from gensim.models import KeyedVectors

    keyed = space.to_gensim()
    assert isinstance(keyed, KeyedVectors) and keyed.vector_size == space.dim
    assert list(keyed.index_to_key) == list(space.vocabulary)
    np.testing.assert_array_equal(keyed.vectors, space.vectors)
    back = dd.EmbeddingSpace.from_gensim(keyed, name="kv")
    same(back, space)
    assert back.name == "kv"
    # files: gensim reads ours, we read gensim's (its binary has no newline after rows)
    for binary in (False, True):
        ours = space.to_file(
            tmp_path / f"ours{binary}", format="word2vec-binary" if binary else "word2vec"
        )
        np.testing.assert_array_equal(
            KeyedVectors.load_word2vec_format(str(ours), binary=binary).vectors, space.vectors
        )
        theirs = tmp_path / f"theirs{binary}"
        keyed.save_word2vec_format(str(theirs), binary=binary)
        same(dd.EmbeddingSpace.from_file(theirs), space)
    with pytest.raises(TypeError, match="must be gensim KeyedVectors"):
        dd.EmbeddingSpace.from_gensim(object())


def test_gensim_missing_names_the_extra(monkeypatch, space):
    monkeypatch.setitem(sys.modules, "gensim", None)
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "densitydp\[gensim\]"'):
        space.to_gensim()


# ----------------------------------------------------------------------------- CLI


def test_cli_encoding_option(tmp_path):
    from click.testing import CliRunner

    from densitydp.cli import main

    path = write_bytes(tmp_path / "latin.txt", "café 1 2\nnaïve 3 4\nété 0 1\n".encode("latin-1"))
    runner = CliRunner()
    refused = runner.invoke(main, ["info", "--embeddings", str(path), "--no-progress"])
    assert refused.exit_code != 0 and "not valid utf-8" in refused.output
    read = runner.invoke(
        main, ["info", "--embeddings", str(path), "--encoding", "latin-1", "--no-progress"]
    )
    assert read.exit_code == 0, read.output
    assert "words         3" in read.output


# ---- Issue 12 (review): headers beyond the file's size; binary files that look like text ----


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
@pytest.mark.parametrize("dim", [99_999_999_999, 3_000_000_000, 7])
@pytest.mark.parametrize("fmt", ["auto", "word2vec", "word2vec-binary", "fasttext"])
def test_a_header_dimension_beyond_the_file_is_refused_before_allocating(
    tmp_path, suffix, dim, fmt
):
    """`2 99999999999` asked for 5.82 TiB (MemoryError), `2 3000000000` for 179 GiB: a file of
    S bytes holds at most about S / 2 numbers (found by a review)."""
    data = f"2 {dim}\na 1\nb 2\n".encode()
    path = write_bytes(tmp_path / f"h.txt{suffix}", COMPRESSORS[suffix](data))
    tracemalloc.start()
    try:
        with pytest.raises(dd.EmbeddingFileError) as caught:
            dd.EmbeddingSpace.from_file(path, format=fmt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert message.startswith(f"{path}:1: the header announces dimension {dim:,}")
    assert "the file holds 8 bytes after the header" in message
    assert peak < 16 * 2**20  # the xz decoder's own buffers (9 MiB), not the header's claim


def test_header_bounds_preallocation_for_words_and_keeps_counting(tmp_path):
    """A header announcing more words than the file holds allocates nothing beyond the file's
    size and is reported with the count read, naming the header line."""
    path = write_bytes(tmp_path / "w.txt", b"\n99999999999 2\na 1 2\nb 3 4\n")
    tracemalloc.start()
    try:
        with pytest.raises(dd.EmbeddingFileError) as caught:
            dd.EmbeddingSpace.from_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        f"{path}:2: the header announces 99999999999 words but the file holds 2."
    )
    assert peak < 8 * 2**20
    assert len(dd.EmbeddingSpace.from_file(path, max_words=2)) == 2
    # a dimension that the file can hold is read (a one-row, large-dimension file)
    big = write_bytes(
        tmp_path / "big.txt", b"2 50000\na " + b"1 " * 50000 + b"\nb " + b"2 " * 50000
    )
    assert dd.EmbeddingSpace.from_file(big).dim == 50000


@pytest.mark.parametrize("newline", [True, False])
@pytest.mark.parametrize(
    "first", [[np.nan, 1.0], [np.inf, 1.0], [1.0, -np.inf]], ids=["nan", "inf", "-inf"]
)
def test_auto_reads_a_binary_file_whose_first_vector_is_not_finite_as_binary(
    tmp_path, newline, first
):
    """format='auto' read such a file as text (found by a review); the error is the binary
    reader's, as with the explicit format."""
    path = write_bytes(
        tmp_path / "v.bin", binary_file(["a", "b", "c"], [first, [1, 2], [3, 4]], newline=newline)
    )
    for fmt in ("auto", "word2vec-binary"):
        with pytest.raises(
            dd.EmbeddingFileError, match=r"v\.bin:record 1: the vector of 'a' holds a NaN"
        ):
            dd.EmbeddingSpace.from_file(path, format=fmt)


PRINTABLE = np.frombuffer(b"1 2 3 4 ", dtype="<f4")  # float32 values whose bytes are ASCII


@pytest.mark.parametrize("newline", [True, False])
@pytest.mark.parametrize(
    "rows",
    [
        [PRINTABLE, [1.5, -2.0]],  # the first vector's bytes read "1 2 3 4 "
        [PRINTABLE, PRINTABLE],  # every vector: the exact layout decides
        [[1.5, -2.0], PRINTABLE],
        [PRINTABLE, *[[float(i), 0.5] for i in range(100)]],  # beyond the records compared
    ],
    ids=["first", "all", "second", "many"],
)
def test_auto_reads_binary_files_whose_bytes_look_like_text(tmp_path, newline, rows):
    words = [f"w{i}" for i in range(len(rows))]
    path = write_bytes(tmp_path / "v.bin", binary_file(words, rows, newline=newline))
    loaded = dd.EmbeddingSpace.from_file(path)
    assert list(loaded.vocabulary) == words
    np.testing.assert_array_equal(loaded.vectors, np.asarray(rows, dtype=np.float32))


def test_text_files_stay_text_and_their_errors_name_the_line(tmp_path):
    ok = write_bytes(tmp_path / "ok.txt", b"2 2\nab 12 3456\ncd 1 2\n")  # line 1 fits binary too
    assert list(dd.EmbeddingSpace.from_file(ok).vocabulary) == ["ab", "cd"]
    bad = write_bytes(tmp_path / "bad.txt", b"3 2\na 1 2\nb 1\nc 3 4\n")
    for fmt in ("auto", "word2vec"):
        with pytest.raises(dd.EmbeddingFileError, match=r"bad\.txt:3: expected a word and 2"):
            dd.EmbeddingSpace.from_file(bad, format=fmt)


def test_a_binary_word_with_a_space_names_the_likely_cause(tmp_path):
    """gensim writes words holding spaces into binary files as they are; every later record
    is then misaligned ("record 6: not valid utf-8" said nothing of it)."""
    rng = np.random.default_rng(0)
    words = ["the", "of", "New York", "and", "to", "in", "is"]
    path = write_bytes(
        tmp_path / "g.bin", binary_file(words, rng.normal(size=(7, 5)), newline=False)
    )
    with pytest.raises(dd.EmbeddingFileError, match="an earlier word holds a space or a line"):
        dd.EmbeddingSpace.from_file(path)


@pytest.mark.parametrize("word", ["a\tb", "a\rb"])
def test_tabs_and_carriage_returns_in_words_per_format_as_documented(tmp_path, word):
    """docs/embeddings.md: refused in the text formats, held by word2vec binary words."""
    space = dd.EmbeddingSpace([word, "other"], [[0.0, 1.0], [1.0, 2.0]])
    for fmt in ("glove", "word2vec", "fasttext"):
        with pytest.raises(ValueError, match="cannot be written"):
            space.to_file(tmp_path / f"v.{fmt}", format=fmt)
    same(dd.EmbeddingSpace.from_file(space.to_file(tmp_path / "v.bin", format="word2vec-binary")),
         space)  # fmt: skip
