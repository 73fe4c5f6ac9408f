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
        (WORDS, [["a"] * 3] * 4, TypeError, "must hold real numbers .*dtype <U1"),
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
        dd.EmbeddingSpace.from_file(word2vec_required, format="word2vec-text")


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


# ----------------------------------------------------------------------------- case back-off

CASED = ["Kowalski", "apple", "Apple", "NASA", "iPhone", "straße", "the"]


@pytest.fixture(scope="module")
def cased_space():
    vectors = np.arange(2 * len(CASED), dtype=np.float64).reshape(len(CASED), 2)
    return dd.EmbeddingSpace(CASED, vectors, name="cased")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("Kowalski", "Kowalski"),
        ("kowalski", "Kowalski"),  # Title case
        ("KOWALSKI", "Kowalski"),  # Title case
        ("apple", "apple"),
        ("Apple", "Apple"),  # exact form first
        ("APPLE", "apple"),  # lower case before Title case
        ("aPPLE", "apple"),
        ("nasa", "NASA"),  # UPPER case
        ("Nasa", "NASA"),
        ("iphone", "iPhone"),  # same casefold
        ("IPHONE", "iPhone"),
        ("STRASSE", "straße"),  # casefold maps ß to ss
        ("The", "the"),
    ],
)
def test_lookup_backs_off_through_case_forms(cased_space, token, expected):
    vocab = cased_space.vocabulary
    assert vocab.lookup(token) == CASED.index(expected)
    assert cased_space.ids(token) == CASED.index(expected)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["hELLO", "hello", "Hello", "HELLO", "HeLLo"], "hELLO"),  # 1. exact
        (["HeLLo", "HELLO", "Hello", "hello"], "hello"),  # 2. lower
        (["HeLLo", "HELLO", "Hello"], "Hello"),  # 3. Title
        (["HeLLo", "HELLO"], "HELLO"),  # 4. UPPER
        (["x", "HeLLo", "hellO"], "HeLLo"),  # 5. casefold, smallest id
        (["x", "hellO", "HeLLo"], "hellO"),
    ],
)
def test_lookup_order_is_the_documented_one(words, expected):
    assert dd.Vocabulary(words).lookup("hELLO") == words.index(expected)


def test_lookup_unknown_and_lazy_casefold_index():
    vocab = dd.Vocabulary(["Apple", "pear"])
    assert vocab.lookup("Apple") == 0 and vocab.lookup("PEAR") == 1
    assert vocab._folded is None  # exact, lower, Title and UPPER hits need no casefold index
    assert vocab.lookup("plum") == -1
    assert vocab._folded == {"apple": 0, "pear": 1}
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone == vocab and clone.lookup("APPLE") == 0 and clone.lookup("aPPLE") == 0


def test_ids_back_off_by_default_and_exact_on_request(cased_space):
    assert cased_space.ids(["APPLE", "Apple", "nasa"]).tolist() == [1, 2, 3]
    assert cased_space.ids(np.array(["kowalski", "IPHONE"])).tolist() == [0, 4]
    assert cased_space.ids("Apple", exact=True) == 2
    assert cased_space.ids(["apple", "NASA"], exact=True).tolist() == [1, 3]
    assert cased_space.ids([]).dtype == np.int64
    with pytest.raises(dd.UnknownWordError, match=r"unknown word 'APPLE'.*\(exact match\)"):
        cased_space.ids("APPLE", exact=True)
    with pytest.raises(dd.UnknownWordError, match="unknown word 'KOWALSKI'"):
        cased_space.ids(["apple", "KOWALSKI"], exact=True)
    # Vocabulary.id / .ids stay exact
    with pytest.raises(dd.UnknownWordError, match="unknown word 'nasa'"):
        cased_space.vocabulary.id("nasa")
    with pytest.raises(dd.UnknownWordError, match="unknown word 'nasa'"):
        cased_space.vocabulary.ids(["NASA", "nasa"])


def test_ids_unknown_word_names_the_forms_tried(cased_space):
    message = (
        r"unknown word 'Pear': tried 'Pear', 'pear', 'PEAR' and any word whose casefold is "
        r"'pear'; none is in the vocabulary of 7 words\."
    )
    with pytest.raises(dd.UnknownWordError, match=message):
        cased_space.ids("Pear")
    with pytest.raises(dd.UnknownWordError, match=r"unknown word 'plum': tried 'plum', 'Plum'"):
        cased_space.ids(["apple", "plum"])
    with pytest.raises(TypeError, match="a word must be a str; got int"):
        cased_space.ids(["apple", 3])
    with pytest.raises(TypeError, match="a word must be a str; got int"):
        cased_space.ids(["apple", 3], exact=True)
    with pytest.raises(TypeError, match="`words` must be a str or an iterable of str; got int"):
        cased_space.ids(3)


# ----------------------------------------------------------------------------- subsets


def test_subset_by_mask_ids_and_predicate_agree(small_space):
    words = list(small_space.vocabulary)
    mask = np.array([w.startswith("c0") for w in words])
    by_mask = small_space.subset(mask)
    by_ids = small_space.subset(np.flatnonzero(mask)[::-1].tolist())  # order of ids is ignored
    by_predicate = small_space.subset(lambda w: w.startswith("c0"))
    for sub in (by_mask, by_ids, by_predicate):
        assert list(sub.vocabulary) == [w for w in words if w.startswith("c0")]
        np.testing.assert_array_equal(sub.source_ids, np.flatnonzero(mask))
        np.testing.assert_array_equal(sub.vectors, small_space.vectors[sub.source_ids])
        assert sub.words(list(range(len(sub)))) == small_space.words(sub.source_ids)
        assert sub.name == f"{small_space.name}[subset]"
        assert sub.source_ids.dtype == np.int64 and not sub.source_ids.flags.writeable
        assert sub.vectors.flags.c_contiguous and not sub.vectors.flags.writeable
    assert small_space.source_ids is None
    assert small_space.subset(mask, name="mine").name == "mine"
    assert dd.EmbeddingSpace(["a", "b", "c"], np.eye(3)).subset([0, 2]).name is None


def test_chained_subsets_and_top_compose_to_root_ids(small_space):
    root = small_space
    first = root.subset(np.arange(len(root)) % 3 != 0)
    second = first.subset(lambda w: not w.startswith("out"))
    third = second.top(50).subset(np.arange(50) % 2 == 0)
    for sub in (first, second, second.top(50), third):
        np.testing.assert_array_equal(sub.vectors, root.vectors[sub.source_ids])
        assert list(sub.vocabulary) == root.words(sub.source_ids)
        assert np.all(np.diff(sub.source_ids) > 0)  # original order kept
    np.testing.assert_array_equal(root.top(10).source_ids, np.arange(10))
    assert third.name == f"{root.name}[subset][subset][:50][subset]"
    clone = pickle.loads(pickle.dumps(third))
    np.testing.assert_array_equal(clone.source_ids, third.source_ids)
    assert not clone.source_ids.flags.writeable and clone.name == third.name
    assert pickle.loads(pickle.dumps(root)).source_ids is None


@pytest.mark.parametrize(
    ("selection", "error", "message"),
    [
        (
            np.ones(5, dtype=bool),
            ValueError,
            r"boolean mask must have shape \(4,\).*got shape \(5,\)",
        ),
        (np.ones((4, 1), dtype=bool), ValueError, r"must have shape \(4,\)"),
        ([0, 4], ValueError, r"`selection` must be in \[0, 3\].*got 4"),
        ([-1, 2], ValueError, r"`selection` must be in \[0, 3\].*got -1"),
        ([2, 1, 2], ValueError, "`selection` must hold unique word ids; 2 is repeated"),
        ([[0, 1]], ValueError, "`selection` as word ids must be 1-D"),
        ([0.0, 1.0], TypeError, "boolean mask, an array of word ids or a callable.*float64"),
        ("king", TypeError, "boolean mask, an array of word ids or a callable"),
        (len, TypeError, "`selection` must return a bool for each word; got int for 'the'"),
        ([2], ValueError, "`selection` keeps 1 word; an embedding space needs at least 2"),
        ([], ValueError, "`selection` keeps 0 words; an embedding space needs at least 2"),
        (lambda w: w == "king", ValueError, "keeps 1 word"),
    ],
)
def test_subset_rejects_bad_selections(selection, error, message):
    space = dd.EmbeddingSpace(WORDS, VECTORS)
    with pytest.raises(error, match=message):
        space.subset(selection)


# ----------------------------------------------------------------------------- farthest word


def _farthest_spaces():
    rng = np.random.default_rng(11)
    clustered = dd.synthetic_space(n_words=800, dim=8, n_clusters=5, rng=4)
    duplicated = rng.normal(size=(40, 3))[rng.integers(0, 40, size=300)]
    return {
        "synthetic": clustered,
        "dim 1": dd.synthetic_space(n_words=300, dim=1, n_clusters=3, rng=5),
        "two words": dd.EmbeddingSpace(["a", "b"], [[0.0, 1.0], [2.0, -3.0]]),
        "duplicates": dd.EmbeddingSpace([f"w{i}" for i in range(300)], duplicated),
        "all equal": dd.EmbeddingSpace(["a", "b", "c"], np.ones((3, 4))),
        "large offset": dd.EmbeddingSpace(
            [f"w{i}" for i in range(200)], 1e4 + rng.normal(size=(200, 5))
        ),
    }


@pytest.mark.parametrize("case", list(_farthest_spaces()))
def test_farthest_distance_matches_brute_force(case):
    from reference import neighbors as reference

    space = _farthest_spaces()[case]
    ids = np.arange(len(space))
    got = space.farthest_distance(ids)
    assert got.dtype == np.float64 and got.shape == ids.shape
    np.testing.assert_array_equal(got, reference.farthest_distances(space.vectors, ids))  # bitwise
    if len(space) <= 800:
        assert got.max() == pytest.approx(space.max_distance(), rel=1e-6)  # float32 table


def test_farthest_distance_shapes_cache_and_errors(small_space):
    from reference import neighbors as reference

    space = small_space.top(200)  # a fresh space: empty cache
    ids = np.array([[5, 7, 5], [199, 0, 7]])
    got = space.farthest_distance(ids)
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(got, reference.farthest_distances(space.vectors, ids))
    assert isinstance(space.farthest_distance(7), float)
    assert space.farthest_distance(np.int32(7)) == got[0, 1]
    assert space.farthest_distance([]).shape == (0,)
    np.testing.assert_array_equal(space.farthest_distance(ids), got)  # cached
    computed = np.flatnonzero(~np.isnan(space._farthest))
    assert computed.tolist() == [0, 5, 7, 199]
    with pytest.raises(ValueError, match=r"`word_ids` must be in \[0, 199\].*got 200"):
        space.farthest_distance([0, 200])
    with pytest.raises(TypeError, match="`word_ids` must be an int or an array of ints"):
        space.farthest_distance([0.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    n_words=st.integers(2, 30),
    dim=st.integers(1, 4),
)
def test_farthest_distance_property(data, n_words, dim):
    from reference import neighbors as reference

    values = data.draw(
        st.lists(
            st.sampled_from([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0, 1e3]),
            min_size=n_words * dim,
            max_size=n_words * dim,
        )
    )
    vectors = np.array(values).reshape(n_words, dim)
    space = dd.EmbeddingSpace([f"w{i}" for i in range(n_words)], vectors)
    ids = np.arange(n_words)
    np.testing.assert_array_equal(
        space.farthest_distance(ids), reference.farthest_distances(space.vectors, ids)
    )


@pytest.mark.glove
def test_farthest_distance_on_glove(glove_top):
    from reference import neighbors as reference

    ids = np.random.default_rng(2).choice(len(glove_top), size=300, replace=False)
    np.testing.assert_array_equal(
        glove_top.farthest_distance(ids), reference.farthest_distances(glove_top.vectors, ids)
    )


# ----------------------------------------------------------------------------- GloVe subsets


@pytest.mark.glove
def test_load_glove_alpha_keeps_alphabetic_words_in_frequency_order(glove_top):
    import pyarrow.parquet as parquet

    from densitydp.embeddings import _glove_files

    vectors_path, index_path = _glove_files()
    all_words = parquet.read_table(index_path).column("index").to_pylist()
    alpha_rows = [i for i, w in enumerate(all_words) if w.isalpha()]
    space = dd.load_glove(top=5_000, words="alpha")
    assert space.name == "glove-6B-50d[alpha][:5000]" and len(space) == 5_000
    assert all(w.isalpha() for w in space.vocabulary)
    assert space.source_ids.tolist() == alpha_rows[:5_000]  # the most frequent, in order
    assert list(space.vocabulary) == [all_words[i] for i in alpha_rows[:5_000]]
    assert space.words([0, 1, 2]) == ["the", "of", "to"]
    stored = np.load(vectors_path, mmap_mode="r")
    np.testing.assert_array_equal(space.vectors, stored[space.source_ids])
    assert space.vectors.flags.c_contiguous and not space.vectors.flags.writeable
    # the same as subsetting the top words of the file
    same = glove_top.subset(str.isalpha).top(5_000)
    np.testing.assert_array_equal(same.source_ids, space.source_ids)
    np.testing.assert_array_equal(same.vectors, space.vectors)
    assert "n't" in glove_top and "n't" not in space


@pytest.mark.glove
def test_load_glove_predicate_top_and_errors(glove_top):
    space = dd.load_glove(top=20, words=lambda w: w.startswith("q"))
    assert space.name == "glove-6B-50d[subset][:20]"
    assert all(w.startswith("q") for w in space.vocabulary)
    np.testing.assert_array_equal(space.vectors, glove_top.vectors[space.source_ids])
    assert np.all(np.diff(space.source_ids) > 0)
    np.testing.assert_array_equal(dd.load_glove(top=30).source_ids, np.arange(30))
    with pytest.raises(
        ValueError,
        match=r"`top` must be <= \d+, the number of GloVe words kept by `words='alpha'`; "
        "got 399000",
    ):
        dd.load_glove(top=399_000, words="alpha")
    with pytest.raises(ValueError, match=r"`top` must be an int in \[2, 400000\]; got 400001"):
        dd.load_glove(top=400_001)
    with pytest.raises(ValueError, match="`words` must be one of 'alpha'; got 'alnum'"):
        dd.load_glove(words="alnum")
    with pytest.raises(TypeError, match="`words` must be None, 'alpha' or a callable"):
        dd.load_glove(words=3)
    with pytest.raises(
        TypeError, match="`words` must return a bool for each word; got int for 'the'"
    ):
        dd.load_glove(words=len)
    with pytest.raises(ValueError, match="the predicate `words` keeps 0 GloVe words"):
        dd.load_glove(words=lambda w: False)


@pytest.mark.parametrize("case", list(_farthest_spaces()))
def test_farthest_word_is_at_the_farthest_distance(case):
    space = _farthest_spaces()[case]
    ids = np.arange(len(space))
    far = space.farthest_word(ids)
    vectors = space.vectors.astype(np.float64)
    total = np.zeros(len(ids))
    for t in range(space.dim):  # summed in the kernel's order: the same bits
        total += (vectors[ids, t] - vectors[far, t]) ** 2
    np.testing.assert_array_equal(np.sqrt(total), space.farthest_distance(ids))
    assert isinstance(space.farthest_word(0), int)


def test_ids_exact_must_be_a_bool():
    space = dd.EmbeddingSpace(["the", "king"], [[0.0], [1.0]])
    with pytest.raises(TypeError, match="`exact` must be a bool; got str"):
        space.ids("THE", exact="False")


@pytest.mark.parametrize("header", ["", "2 3\n"])
def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path, header):
    path = tmp_path / "bom.txt"
    path.write_text("\ufeff" + header + "the 1 2 3\nking 4 5 6\n", encoding="utf-8")
    space = dd.EmbeddingSpace.from_file(path)
    assert list(space.vocabulary) == ["the", "king"] and space.dim == 3


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.array([[1 + 2j], [3 + 0j]]), "dtype complex128"),
        (np.array([[True], [False]]), "dtype bool"),
        (np.array([["1"], ["2"]]), "dtype <U1"),
        (np.array([[1.0], [2.0]], dtype=object), "dtype object"),
        (np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]").reshape(2, 1), "datetime64"),
        (np.ma.masked_array([[1.0], [2.0]], mask=[[True], [False]]), "masked array"),
    ],
)
def test_vectors_that_a_cast_would_coerce_are_refused(vectors, message):
    with pytest.raises(TypeError, match=f"`vectors` must .*{message}"):
        dd.EmbeddingSpace(["a", "b"], vectors)
