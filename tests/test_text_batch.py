"""Issue 16 (small calls / text): the faster codec writes the bytes the old one wrote for the
same seed (``tests/reference/text.py`` is the old module, verbatim), ``perturb_texts`` equals
its per-text equivalent, and the cached neighbour rows equal freshly computed ones."""

from __future__ import annotations

import unicodedata
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import densitydp as dd
from densitydp.mechanisms import _kernels
from densitydp.mechanisms.base import neighbor_rows
from reference import text as reference

WORDS = ["the", "king", "queen", "sat", "on", "a", "throne", "i", "NASA", "café", "straße"]
WORDS += ["Apple", "apple", "über", "ǅemal", "İstanbul", "ﬁne"]
SPACE = dd.EmbeddingSpace(
    WORDS, np.random.default_rng(3).normal(size=(len(WORDS), 4)).astype(np.float32)
)
MECHANISMS = {
    "exponential": dd.ExponentialMechanism(SPACE, epsilon=3.0),
    "tem": dd.TruncatedExponential(SPACE, epsilon=3.0),
    "laplace": dd.MultivariateLaplace(SPACE, epsilon=4.0),
}

#: Pieces of texts: vocabulary words in every case, their decomposed forms, unknown words,
#: separators of every kind (blanks around drops, line breaks, punctuation, marks).
PIECES = st.sampled_from(
    [
        *WORDS,
        *(w.upper() for w in WORDS),
        *(w.title() for w in WORDS),
        *(unicodedata.normalize("NFD", w) for w in WORDS),
        "kInG",
        "Kowalski",
        "ΣΊΣΥΦΟΣ",
        "x1",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        ", ",
        ".",
        "'",
        "-",
        "\u0301",
        "_",
    ]
)
TEXTS = st.lists(PIECES, max_size=30).map("".join)
POLICIES = ["mask", "drop", "keep", "error"]


def _both(function, *args, **kwargs):
    """``function``'s result or the type of the error it raised (warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return function(*args, **kwargs)
        except (ValueError, dd.UnknownWordError) as error:
            return type(error)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(TEXTS, min_size=1, max_size=6),
    policy=st.sampled_from(POLICIES),
    name=st.sampled_from(sorted(MECHANISMS)),
    seed=st.integers(0, 2**32),
    batch_size=st.integers(1, 4),
)
def test_perturb_text_writes_the_old_bytes(texts, policy, name, seed, batch_size):
    mechanism = MECHANISMS[name]
    options = {"rng": seed, "unknown": policy, "batch_size": batch_size}
    new = _both(dd.perturb_text, texts, mechanism, **options)
    assert new == _both(reference.perturb_text, texts, mechanism, **options)
    stream = _both(lambda: list(dd.perturb_text(iter(texts), mechanism, **options)))
    assert stream == new
    if texts[0]:
        one = _both(dd.perturb_text, texts[0], mechanism, **options)
        assert one == _both(reference.perturb_text, texts[0], mechanism, **options)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(TEXTS.map(lambda t: t.replace("\r", "").replace("\n", " ")), max_size=8),
    policy=st.sampled_from(["mask", "drop", "keep"]),
    seed=st.integers(0, 2**32),
    chunk=st.sampled_from([8, 1 << 18]),
)
def test_perturb_file_writes_the_old_bytes(tmp_path_factory, lines, policy, seed, chunk):
    folder = tmp_path_factory.mktemp("file")
    source = folder / "in.txt"
    source.write_text("\n".join(lines), encoding="utf-8")
    options = {"rng": seed, "unknown": policy, "batch_lines": 3, "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dd.perturb_file(
            source, folder / "new.txt", MECHANISMS["tem"], _chunk_chars=chunk, **options
        )
        reference.perturb_file(
            source, folder / "old.txt", MECHANISMS["tem"], _chunk_chars=chunk, **options
        )
    assert (folder / "new.txt").read_bytes() == (folder / "old.txt").read_bytes()


def test_the_fast_batches_hand_over_to_the_general_path(monkeypatch):
    """A batch over the word limit is cut as before (the rest of the stream follows the
    general path); the output is the old one."""
    monkeypatch.setattr(dd.text, "BATCH_WORDS", 5)
    monkeypatch.setattr(reference, "BATCH_WORDS", 5)
    texts = ["the king sat on a throne", "i", "the queen", "NASA apple", "über alles"] * 3
    mechanism = MECHANISMS["tem"]
    for batch_size in (1, 2, 4, 100):
        assert dd.perturb_text(texts, mechanism, rng=7, batch_size=batch_size) == (
            reference.perturb_text(texts, mechanism, rng=7, batch_size=batch_size)
        )


def test_reports_are_unchanged():
    texts = ["The king sat", "on a Kowalski throne", "", "queen queen queen"]
    for policy in ("mask", "keep"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, new = dd.perturb_text(texts, MECHANISMS["tem"], rng=1, unknown=policy,
                                     return_report=True)  # fmt: skip
            _, old = reference.perturb_text(texts, MECHANISMS["tem"], rng=1, unknown=policy,
                                            return_report=True)  # fmt: skip
        assert new.to_dict() == old.to_dict()


def test_keep_still_warns_once():
    with pytest.warns(dd.PrivacyWarning, match="outside the vocabulary"):
        dd.perturb_text(["Kowalski sat", "Nowak"], MECHANISMS["tem"], rng=0, unknown="keep")
    with pytest.warns(dd.PrivacyWarning, match="outside the vocabulary"):
        dd.perturb_texts(["Kowalski sat", "Nowak"], MECHANISMS["tem"], rng=0, unknown="keep")


# ----------------------------------------------------------------------------- perturb_texts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(TEXTS, max_size=7),
    policy=st.sampled_from(["mask", "drop", "keep"]),
    name=st.sampled_from(sorted(MECHANISMS)),
    seed=st.integers(0, 2**32),
    batch_size=st.integers(1, 5),
)
def test_perturb_texts_is_perturb_text_with_a_child_per_text(texts, policy, name, seed, batch_size):
    mechanism = MECHANISMS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outputs = dd.perturb_texts(
            texts, mechanism, rng=seed, unknown=policy, batch_size=batch_size
        )
        children = np.random.default_rng(seed).spawn(len(texts))
        expected = [
            dd.perturb_text(text, mechanism, rng=child, unknown=policy) if text else ""
            for text, child in zip(texts, children, strict=True)
        ]
    assert outputs == expected


def test_perturb_texts_takes_series_generators_and_generators_of_numbers():
    texts = ["The king sat.", "", "a queen, a throne", "NASA"] * 5
    mechanism = MECHANISMS["tem"]
    expected = dd.perturb_texts(texts, mechanism, rng=11)
    frame = pd.DataFrame({"text": texts})
    frame["private"] = dd.perturb_texts(frame["text"], mechanism, rng=11)
    assert frame["private"].tolist() == expected
    assert dd.perturb_texts((t for t in texts), mechanism, rng=11, batch_size=3) == expected
    assert dd.perturb_texts(np.array(texts), mechanism, rng=11) == expected
    parent = np.random.default_rng(11)
    assert dd.perturb_texts(texts, mechanism, rng=parent) == expected
    assert dd.perturb_texts(texts, mechanism, rng=parent) != expected  # spawned further on
    assert dd.perturb_texts([], mechanism, rng=0) == []


def test_perturb_texts_report_adds_up_the_texts():
    texts = ["The king sat", "on a Kowalski throne", "", "queen queen queen"]
    outputs, report = dd.perturb_texts(texts, MECHANISMS["tem"], rng=2, return_report=True)
    assert report.complete and report.n_texts == 4
    assert report.n_tokens == 10 and report.n_unknown == 1 and report.n_perturbed == 9
    assert report.seed == dd._rng.seed_entropy(np.random.default_rng(2))
    _, whole = dd.perturb_text(texts, MECHANISMS["tem"], rng=2, return_report=True)
    assert report.all_words_epsilon == whole.all_words_epsilon
    assert report.worst_text == whole.worst_text
    assert len(outputs) == 4


def test_perturb_texts_errors():
    mechanism = MECHANISMS["tem"]
    with pytest.raises(TypeError, match="use perturb_text for one text"):
        dd.perturb_texts("the king", mechanism)
    with pytest.raises(TypeError, match="iterable of str"):
        dd.perturb_texts(3, mechanism)
    with pytest.raises(TypeError, match=r"got a DataFrame .* pass one column"):
        dd.perturb_texts(pd.DataFrame({"the": ["the king"] * 3}), mechanism)
    with pytest.raises(TypeError, match=r"got a DataFrame .* pass one column"):
        dd.perturb_text(pd.DataFrame({"the": ["the king"] * 3}), mechanism)
    with pytest.raises(TypeError, match="`texts` must hold only str; got int at position 1"):
        dd.perturb_texts(["the", 3], mechanism)
    # a missing value deep in a Series: its position, and what it probably is
    column = pd.Series(["the"] * 5_000 + [np.nan, "king"])
    with pytest.raises(TypeError, match=r"got float \(a missing value\?\) at position 5000"):
        dd.perturb_texts(column, mechanism, batch_size=1_000)
    with pytest.raises(TypeError, match=r"NAType \(a missing value\?\) at position 1"):
        dd.perturb_texts(pd.Series(["the", pd.NA], dtype="string"), mechanism)
    with pytest.raises(TypeError, match=r"`text` must be a str; got NoneType \(a missing"):
        list(dd.perturb_text(iter(["the", None]), mechanism, rng=0))
    with pytest.raises(TypeError, match="Mechanism"):
        dd.perturb_texts(["the"], object())
    with pytest.raises(ValueError, match="`unknown`"):
        dd.perturb_texts(["the"], mechanism, unknown="ignore")
    with pytest.raises(dd.UnknownWordError, match=r"'Kowalski' at character 4.*\(text 2\)"):
        dd.perturb_texts(["the", "the Kowalski"], mechanism, unknown="error")


def test_long_texts_take_the_general_path(monkeypatch):
    monkeypatch.setattr(dd.text, "BATCH_WORDS", 4)
    texts = ["the king sat on a throne", "queen"]
    children = np.random.default_rng(5).spawn(2)
    expected = [
        dd.perturb_text(t, MECHANISMS["tem"], rng=c) for t, c in zip(texts, children, strict=True)
    ]
    assert dd.perturb_texts(texts, MECHANISMS["tem"], rng=5) == expected


# ----------------------------------------------------------------------------- cached rows


def test_cached_neighbor_rows_equal_fresh_rows():
    space = dd.synthetic_space(n_words=300, dim=6, rng=4)
    rng = np.random.default_rng(0)
    for width in (64, 10, 64, 80, 64, 300):
        words = np.unique(rng.integers(0, 300, size=25))
        ids, distances = neighbor_rows(space, words, width)
        fresh = dd.EmbeddingSpace(space.vocabulary, space.vectors)
        table = fresh.neighbors(width, word_ids=words, progress=False)
        expected_ids = np.ascontiguousarray(table.rows(words)[0], dtype=np.int64)
        expected = np.empty(expected_ids.shape)
        _kernels.row_distances(words, expected_ids, space.vectors, expected)
        assert ids.dtype == np.int64 and ids.flags.c_contiguous and distances.flags.c_contiguous
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(distances, expected)


def test_the_codec_cache_follows_the_options():
    mechanism = MECHANISMS["tem"]
    masked = dd.perturb_text("Kowalski", mechanism, rng=0, mask_token="<x>")
    assert masked == "<x>"
    assert dd.perturb_text("Kowalski", mechanism, rng=0, unknown="drop") == ""
    assert dd.perturb_text("Kowalski", mechanism, rng=0) == "[UNK]"
    with pytest.raises(TypeError, match="`mask_token` must be a str"):
        dd.perturb_text("Kowalski", mechanism, rng=0, mask_token=3)
    with pytest.raises(TypeError, match="`pattern` must be a str"):
        dd.perturb_text("Kowalski", mechanism, rng=0, pattern=["x"])


def test_codecs_are_reused_per_space_and_go_with_it():
    """perturb_text's codec of a space is built once per option set and is freed with the
    space, without waiting for the cyclic collector (a module cache kept the last 8
    vocabularies alive: 50-70 MB each at 400,000 words; kept on the vocabulary, the codec ->
    vocabulary cycle held 11 MB per reloaded 50,000-word space until a full collection; found
    by the fresh-user reviews of issue 16)."""
    import gc
    import weakref

    from densitydp import text

    space = dd.synthetic_space(n_words=300, dim=4, rng=2)
    mechanism = dd.TruncatedExponential(space, epsilon=5.0)
    dd.perturb_text("a b c", mechanism, rng=0)
    dd.perturb_text("d e f", mechanism, rng=1)
    dd.perturb_text("a b c", mechanism, rng=0, mask_token="<?>")
    codecs = list(space._codecs.values())
    assert len(codecs) == 2
    assert text._codec(mechanism, "mask", dd.text.DEFAULT_MASK, None) is codecs[0]
    alive = weakref.ref(codecs[0])
    gc.disable()
    try:
        del space, mechanism, codecs
        assert alive() is None  # freed by reference counting
    finally:
        gc.enable()
