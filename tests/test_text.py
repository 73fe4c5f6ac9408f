from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import densitydp as dd
from densitydp.text import WORD_PATTERN

VOCAB = dd.Vocabulary(["the", "king", "queen", "sat", "on", "a", "throne", "i", "usa"])
SWAP = {1: 2, 2: 1, 7: 5, 8: 0}  # king<->queen, i->a, usa->the


def swap(ids):
    return np.array([SWAP.get(int(i), int(i)) for i in ids], dtype=np.int64)


def identity(ids):
    return ids


@settings(max_examples=300)
@given(st.text())
def test_tokenize_is_lossless(text):
    pieces = dd.tokenize(text)
    assert "".join(pieces) == text
    assert len(pieces) % 2 == 1
    assert all(piece for piece in pieces[1::2])  # word pieces are never empty


@settings(max_examples=200)
@given(st.text())
def test_identity_mapping_returns_input_byte_for_byte(text):
    codec = dd.TextCodec(VOCAB)
    assert codec.map_texts(text, identity) == text


def test_tokenize_pieces():
    assert dd.tokenize("The king's men.") == ["", "The", " ", "king", "'", "s", " ", "men", "."]
    assert dd.tokenize("") == [""]
    assert dd.tokenize("café-au-lait 42") == ["", "café", "-", "au", "-", "lait", " ", "42", ""]
    with pytest.raises(TypeError, match="`text` must be a str"):
        dd.tokenize(b"bytes")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("king", "queen"),
        ("King", "Queen"),
        ("KING", "QUEEN"),
        ("kInG", "queen"),
        ("I", "Queen"),
        ("42", "queen"),
    ],
)
def test_match_case(template, expected):
    assert dd.match_case("queen", template) == expected


def test_map_texts_keeps_case_punctuation_and_unknown_words():
    codec = dd.TextCodec(VOCAB)
    text = "The KING sat on a Throne,\n  and I met the Queen of the USA!"
    assert codec.map_texts(text, swap) == (
        "The QUEEN sat on a Throne,\n  and A met the King of the THE!"
    )


def test_unknown_policy_error_names_word_and_place():
    codec = dd.TextCodec(VOCAB, unknown="error")
    with pytest.raises(dd.UnknownWordError, match="unknown word 'and' at character 10"):
        codec.map_texts("the king, and", swap)
    with pytest.raises(dd.UnknownWordError, match="'met' at character 7 of text 2"):
        codec.map_texts(["the king", "a king met"], swap)
    with pytest.raises(ValueError, match="`unknown` must be one of 'keep', 'error'; got 'drop'"):
        dd.TextCodec(VOCAB, unknown="drop")


def test_sequences_and_streams_are_vectorised():
    calls = []

    def counting(ids):
        calls.append(len(ids))
        return swap(ids)

    codec = dd.TextCodec(VOCAB)
    texts = ["the king", "", "a queen sat", "nothing known here"]
    assert codec.map_texts(texts, counting) == ["the queen", "", "a king sat", "nothing known here"]
    assert calls == [5]  # one call for the whole list
    calls.clear()
    stream = codec.map_texts(iter(texts), counting, batch_size=3)
    assert not isinstance(stream, list)
    assert list(stream) == ["the queen", "", "a king sat", "nothing known here"]
    assert calls == [5]  # second batch had no known word: no call
    with pytest.raises(ValueError, match="`replace` must return one id per input id"):
        codec.map_texts("the king", lambda ids: ids[:1])


def test_map_file_streams_atomically_and_preserves_bytes(tmp_path):
    source = tmp_path / "in.txt"
    raw = b"The King sat.\r\nOn a throne \xff\xfe!\n\nthe end"
    source.write_bytes(raw)
    codec = dd.TextCodec(VOCAB)
    out = codec.map_file(source, tmp_path / "out.txt", identity, batch_lines=1, progress=False)
    assert out.read_bytes() == raw
    codec.map_file(source, tmp_path / "out.txt", swap, batch_lines=2, progress=False)
    assert (tmp_path / "out.txt").read_bytes() == raw.replace(b"King", b"Queen")
    assert source.read_bytes() == raw
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_map_file_failure_leaves_no_partial_output(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("the king\n" * 10 + "the prince\n", encoding="utf-8")
    codec = dd.TextCodec(VOCAB, unknown="error")
    with pytest.raises(dd.UnknownWordError, match="'prince' at character 4 of line 11"):
        codec.map_file(source, tmp_path / "out.txt", swap, batch_lines=4, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]
    with pytest.raises(ValueError, match="`destination` must differ from `source`"):
        codec.map_file(source, source, swap)


def test_custom_pattern():
    codec = dd.TextCodec(dd.Vocabulary(["don't", "do"]), pattern=r"[\w']+")
    assert codec.encode("Don't do").word_ids.tolist() == [0, 1]
    assert repr(WORD_PATTERN) in repr(dd.TextCodec(VOCAB))
