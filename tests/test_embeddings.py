from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import densitydp as dd

WORDS = ["the", "king", "queen", "sat"]
VECTORS = np.arange(12, dtype=np.float64).reshape(4, 3) / 7.0


def write(path, text, compress=False):
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# ----------------------------------------------------------------------------- vocabulary


def test_vocabulary_lookup_and_errors():
    vocab = dd.Vocabulary(WORDS)
    assert len(vocab) == 4 and vocab[2] == "queen" and "king" in vocab
    assert vocab.ids(["sat", "the"]).tolist() == [3, 0]
    assert vocab.lookup("KING") == 1 and vocab.lookup("nope") == -1
    with pytest.raises(dd.UnknownWordError, match="unknown word 'nope'") as info:
        vocab.id("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(
        ValueError, match="`words` must be unique; 'a' appears at positions 0 and 2"
    ):
        dd.Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        dd.Vocabulary(["a", ""])
    with pytest.raises(TypeError, match="only str; got int at position 1"):
        dd.Vocabulary(["a", 3])
    with pytest.raises(TypeError, match="not a single str"):
        dd.Vocabulary("abc")


# ----------------------------------------------------------------------------- space


def test_space_basics_and_input_not_modified():
    vectors = VECTORS.copy()
    space = dd.EmbeddingSpace(WORDS, vectors, name="toy")
    assert len(space) == 4 and space.dim == 3 and "queen" in space
    assert space.vectors.dtype == np.float32 and space.vectors.flags.c_contiguous
    assert not space.vectors.flags.writeable
    assert vectors.flags.writeable and vectors.dtype == np.float64  # caller's array untouched
    assert space.ids("queen") == 2 and space.ids(["sat", "king"]).tolist() == [3, 1]
    assert space.words(1) == "king" and space.words([0, 3]) == ["the", "sat"]
    assert (
        repr(space)
        == "EmbeddingSpace(name='toy', n_words=4, dim=3, words=['the', 'king', 'queen', 'sat'])"
    )
    assert space.distance(0, 1) == pytest.approx(np.linalg.norm(VECTORS[0] - VECTORS[1]), rel=1e-6)
    top = space.top(2)
    assert top.words([0, 1]) == ["the", "king"] and len(top) == 2
    with pytest.raises(ValueError, match=r"`n` must be an int in \[2, 4\]; got 5"):
        space.top(5)
    with pytest.raises(dd.UnknownWordError, match="unknown word 'prince'"):
        space.ids(["king", "prince"])


@pytest.mark.parametrize(
    ("words", "vectors", "error", "message"),
    [
        (WORDS, VECTORS[:3], ValueError, "one row per word; got 3 rows for 4 words"),
        (WORDS, VECTORS.ravel(), ValueError, "must be a 2-D array; got shape"),
        (
            WORDS,
            np.where(VECTORS == VECTORS[2, 1], np.nan, VECTORS),
            ValueError,
            r"must be finite; row 2 \('queen'\) holds nan",
        ),
        (WORDS, np.where(VECTORS == VECTORS[1, 0], np.inf, VECTORS), ValueError, "row 1"),
        (WORDS, VECTORS * 1e39, ValueError, "beyond the float32 range"),
        (["a"], [[1.0]], ValueError, "at least 2 words"),
        (WORDS, [["a"] * 3] * 4, TypeError, "2-D array of real numbers"),
        (WORDS, np.zeros((4, 0)), ValueError, "at least one column"),
    ],
)
def test_space_rejects_bad_input(words, vectors, error, message):
    with pytest.raises(error, match=message):
        dd.EmbeddingSpace(words, vectors)


def test_space_pickles(small_space):
    clone = pickle.loads(pickle.dumps(small_space))
    assert list(clone.vocabulary) == list(small_space.vocabulary)
    np.testing.assert_array_equal(clone.vectors, small_space.vectors)
    assert not clone.vectors.flags.writeable and clone.name == small_space.name
    assert clone.fingerprint == small_space.fingerprint


def test_synthetic_space_is_reproducible_and_clustered():
    a = dd.synthetic_space(n_words=500, dim=6, n_clusters=4, rng=7)
    b = dd.synthetic_space(n_words=500, dim=6, n_clusters=4, rng=7)
    c = dd.synthetic_space(n_words=500, dim=6, n_clusters=4, rng=8)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors, c.vectors)
    outliers = np.array([w.startswith("out") for w in a.vocabulary])
    assert outliers.sum() == 25  # 5 % of 500
    radius = a.neighbors(6, cache=False).kth_distance()
    # outliers live in sparse regions: their 5th-neighbour distance is far larger
    assert np.median(radius[outliers]) > 3 * np.median(radius[~outliers])
    with pytest.raises(ValueError, match="`n_clusters` must be an int in"):
        dd.synthetic_space(n_words=10, n_clusters=20)


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("fmt", ["glove", "word2vec"])
def test_to_file_from_file_roundtrip(tmp_path, small_space, fmt, compress):
    path = tmp_path / ("space.txt.gz" if compress else "space.txt")
    small_space.to_file(path, format=fmt)
    with open(path, "rb") as stream:
        assert (stream.read(2) == b"\x1f\x8b") == compress
    loaded = dd.EmbeddingSpace.from_file(path)
    assert list(loaded.vocabulary) == list(small_space.vocabulary)
    np.testing.assert_array_equal(loaded.vectors, small_space.vectors)  # float32 exact
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_from_file_word2vec_header_and_max_words(tmp_path):
    path = write(tmp_path / "w2v.txt", "3 2\na 1 2\nb 3 4 \nc 5 6\n\n")
    space = dd.EmbeddingSpace.from_file(path)
    assert space.dim == 2 and len(space) == 3 and space.name == "w2v.txt"
    assert len(dd.EmbeddingSpace.from_file(path, max_words=2)) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no word vectors"),
        ("\n\n", "holds no word vectors"),
        ("a 1 2\nb 1\n", r":2: expected a word and 2 numbers; got 2 fields \(word 'b'\)"),
        ("a 1 2\nb 1 2 3\n", ":2: expected a word and 2 numbers; got 4 fields"),
        ("a 1 2\nb 1 x\n", ":2: 'x' is not a number"),
        ("a 1 2\nb nan 2\n", ":2: the vector of 'b' holds a NaN"),
        ("a 1 2\nb 1 inf\n", ":2: .* NaN or infinite"),
        ("a 1 2\nb 1 2\na 3 4\n", r":3: duplicate word 'a' \(first on line 1\)"),
        ("3 2\na 1 2\nb 1 2\n", "header announces 3 words but the file holds 2"),
        ("a 1 2\n", "holds 1 word; at least 2"),
        ("word\n", ":1: expected a word and its vector"),
    ],
)
def test_from_file_malformed_names_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(dd.EmbeddingFileError, match=message) as info:
        dd.EmbeddingSpace.from_file(path)
    assert "bad.txt" in str(info.value)


def test_from_file_other_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path` must be an existing file"):
        dd.EmbeddingSpace.from_file(tmp_path / "missing.txt")
    path = tmp_path / "latin.txt"
    path.write_bytes(b"a 1 2\n\xff\xfe 3 4\n")
    with pytest.raises(dd.EmbeddingFileError, match=":2: not valid utf-8"):
        dd.EmbeddingSpace.from_file(path)
    word2vec_required = write(tmp_path / "g.txt", "a 1 2\nb 3 4\n")
    with pytest.raises(dd.EmbeddingFileError, match="expected a word2vec header"):
        dd.EmbeddingSpace.from_file(word2vec_required, format="word2vec")
    with pytest.raises(ValueError, match="`format` must be one of"):
        dd.EmbeddingSpace.from_file(word2vec_required, format="fasttext")


def test_from_file_forced_glove_reads_two_number_first_line(tmp_path):
    path = write(tmp_path / "g.txt", "7 1\n8 2\n")
    space = dd.EmbeddingSpace.from_file(path, format="glove")
    assert list(space.vocabulary) == ["7", "8"] and space.dim == 1


words_strategy = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
        min_size=1,
        max_size=8,
    ),
    min_size=2,
    max_size=12,
    unique=True,
)


@settings(max_examples=40, deadline=None)
@given(words=words_strategy, data=st.data())
def test_file_roundtrip_property(tmp_path_factory, words, data):
    dim = data.draw(st.integers(1, 5))
    values = data.draw(
        st.lists(
            st.floats(-(2.0**100), 2.0**100, allow_nan=False, width=32),
            min_size=dim * len(words),
            max_size=dim * len(words),
        )
    )
    space = dd.EmbeddingSpace(words, np.array(values).reshape(len(words), dim))
    path = tmp_path_factory.mktemp("prop") / "space.txt"
    fmt = data.draw(st.sampled_from(["glove", "word2vec"]))
    space.to_file(path, format=fmt)
    loaded = dd.EmbeddingSpace.from_file(path, format=fmt)
    assert list(loaded.vocabulary) == words
    np.testing.assert_array_equal(loaded.vectors, space.vectors)


# ----------------------------------------------------------------------------- GloVe


@pytest.mark.glove
def test_load_glove_top(glove_top):
    assert len(glove_top) == 20_000 and glove_top.dim == 50
    assert glove_top.words([0, 1, 2]) == ["the", ",", "."]  # frequency order
    assert glove_top.vectors.flags.c_contiguous and glove_top.vectors.dtype == np.float32
    assert glove_top.name == "glove-6B-50d[:20000]"
    # rows match the package's Fortran-ordered file, read here independently of the loader
    from densitydp.embeddings import _glove_files

    stored = np.load(_glove_files()[0], mmap_mode="r")
    for word in ("king", "queen", "the"):
        np.testing.assert_array_equal(
            glove_top.vectors[glove_top.ids(word)], stored[glove_top.ids(word)]
        )
    np.testing.assert_array_equal(glove_top.vectors[-1], stored[19_999])


def test_load_glove_missing_extra_names_it(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "densitydp\[glove\]"'):
        dd.load_glove()


CORRUPTIONS = {
    "drop a value": lambda fields: fields[:-1],
    "extra value": lambda fields: [*fields, "1.0"],
    "not a number": lambda fields: [fields[0], "1.0x", *fields[2:]],
    "nan": lambda fields: [fields[0], "nan", *fields[2:]],
    "infinity": lambda fields: [fields[0], "-inf", *fields[2:]],
    "duplicate word": None,  # handled below: the word of the previous line
}


@settings(max_examples=60, deadline=None)
@given(
    n_words=st.integers(3, 12),
    dim=st.integers(2, 6),
    corruption=st.sampled_from(sorted(CORRUPTIONS)),
    data=st.data(),
)
def test_any_corrupted_line_is_reported_with_its_number(
    tmp_path_factory, n_words, dim, corruption, data
):
    lines = [
        f"w{i} " + " ".join(f"{(i * dim + j) / 7:.6g}" for j in range(dim)) for i in range(n_words)
    ]
    bad = data.draw(st.integers(1, n_words - 1))
    fields = lines[bad].split(" ")
    if corruption == "duplicate word":
        fields[0] = f"w{bad - 1}"
    else:
        fields = CORRUPTIONS[corruption](fields)
    lines[bad] = " ".join(fields)
    header = data.draw(st.booleans())
    text = (f"{n_words} {dim}\n" if header else "") + "\n".join(lines) + "\n"
    path = tmp_path_factory.mktemp("corrupt") / "vectors.txt"
    path.write_text(text, encoding="utf-8")
    line_number = bad + 1 + header
    with pytest.raises(dd.EmbeddingFileError, match=rf"vectors\.txt:{line_number}: "):
        dd.EmbeddingSpace.from_file(path)
