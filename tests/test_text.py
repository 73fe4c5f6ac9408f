from __future__ import annotations

import warnings

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
    expected = "`unknown` must be one of 'mask', 'drop', 'keep', 'error'; got 'skip'"
    with pytest.raises(ValueError, match=expected):
        dd.TextCodec(VOCAB, unknown="skip")


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


# ----------------------------------------------------------------------------- unknown words


@pytest.mark.parametrize(
    ("unknown", "expected"),
    [
        ("keep", "The QUEEN met Anne and Kowalski, a think."),
        ("mask", "The QUEEN [UNK] [UNK] [UNK] [UNK], a [UNK]."),
        ("drop", "The QUEEN, a."),
    ],
)
def test_unknown_policies(unknown, expected):
    codec = dd.TextCodec(VOCAB, unknown=unknown)
    text = "The KING met Anne and Kowalski, i think."
    assert codec.map_texts(text, swap) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Anne sat", "sat"),
        ("sat Anne", "sat"),
        ("the Anne Kowalski sat", "the sat"),
        ("the\tAnne\nsat", "the\nsat"),
        ("sat Anne\non", "sat\non"),
        ("the (Anne) sat", "the () sat"),
        ("the-Anne-king", "the--king"),
        ("Anne", ""),
        ("Anne, Bob.", ",."),
        ("the Anne. sat", "the. sat"),
    ],
)
def test_drop_takes_one_blank_along(text, expected):
    assert dd.TextCodec(VOCAB, unknown="drop").map_texts(text, identity) == expected


def test_mask_token_is_configurable_and_checked():
    codec = dd.TextCodec(VOCAB, unknown="mask", mask_token="<name>")
    assert codec.map_texts("the Kowalski", identity) == "the <name>"
    assert "mask_token='<name>'" in repr(codec)
    with pytest.raises(TypeError, match="`mask_token` must be a str; got int"):
        dd.TextCodec(VOCAB, unknown="mask", mask_token=0)


@pytest.fixture(scope="module")
def mechanism():
    words = ["the", "king", "queen", "sat", "on", "a", "throne", "i", "usa"]
    vectors = np.random.default_rng(0).normal(size=(len(words), 3))
    return dd.ExponentialMechanism(dd.EmbeddingSpace(words, vectors), epsilon=1.0)


NAMES = ["Kowalski", "anne", "ZURICH", "Nowak"]


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(st.sampled_from([*VOCAB, "The", "KING", *NAMES]), max_size=12),
    separators=st.lists(st.sampled_from([" ", ", ", "\n", "-", ". "]), min_size=13, max_size=13),
    unknown=st.sampled_from(["mask", "drop", "keep"]),
)
def test_no_unknown_word_is_ever_published_silently(words, separators, unknown, mechanism):
    text = "".join(s + w for s, w in zip(separators, words, strict=False)) + separators[-1]
    n_unknown = sum(w in NAMES for w in words)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, report = dd.perturb_text(
            text or " ", mechanism, rng=0, unknown=unknown, return_report=True
        )
    kept_warning = [w for w in caught if issubclass(w.category, dd.PrivacyWarning)]
    assert report.n_unknown == n_unknown and report.n_tokens == len(words)
    assert report.n_perturbed == len(words) - n_unknown
    output_words = dd.tokenize(out)[1::2]
    if unknown == "keep":
        assert bool(kept_warning) == (n_unknown > 0)
        assert report.n_unknown_kept == n_unknown
        assert sum(w in NAMES for w in output_words) == n_unknown
    else:
        assert not kept_warning and report.n_unknown_kept == 0
        assert not set(output_words) & set(NAMES)
        assert output_words.count("UNK") == (n_unknown if unknown == "mask" else 0)


def test_perturb_text_defaults_to_mask_and_warns_on_keep(mechanism):
    assert dd.perturb_text("the Kowalski sat", mechanism, rng=0).split()[1] == "[UNK]"
    with pytest.warns(dd.PrivacyWarning, match=r"1 word token\(s\) outside the vocabulary"):
        out = dd.perturb_text("the Kowalski sat", mechanism, rng=0, unknown="keep")
    assert out.split()[1] == "Kowalski"
    with pytest.raises(dd.UnknownWordError, match="'Kowalski' at character 4"):
        dd.perturb_text("the Kowalski sat", mechanism, rng=0, unknown="error")


def farthest(space, ids):
    vectors = space.vectors.astype(np.float64)
    return np.array([np.linalg.norm(vectors - vectors[i], axis=1).max() for i in ids])


def test_report_counts_and_document_level_claims(mechanism):
    texts = ["The king sat on a throne, Kowalski.", "i sat", "Nowak!", "the usa the usa"]
    out, report = dd.perturb_text(texts, mechanism, rng=3, return_report=True)
    space = mechanism.space
    ids = [space.vocabulary.lookup(w) for t in texts for w in dd.tokenize(t)[1::2]]
    known = [i for i in ids if i >= 0]
    assert (report.n_texts, report.n_tokens, report.n_perturbed, report.n_unknown) == (
        4, len(ids), len(known), 2,
    )  # fmt: skip
    same = dd.perturb_text(texts, mechanism, rng=3)
    assert same == out
    assert report.complete and report.n_masked == 2 and report.n_dropped == 0
    # changed: recount from a replay of the same draws
    draws = mechanism.sample(np.array(known), rng=3)
    assert report.n_changed == int(np.count_nonzero(draws != np.array(known)))
    # claims: epsilon * farthest distances, worst text, basic composition
    per_text = [[space.vocabulary.lookup(w) for w in dd.tokenize(t)[1::2]] for t in texts]
    per_text = [[i for i in row if i >= 0] for row in per_text]
    totals = [mechanism.epsilon * farthest(space, row).sum() if row else 0.0 for row in per_text]
    assert report.all_words_epsilon == pytest.approx(max(totals), rel=1e-12)
    assert report.worst_text == int(np.argmax(totals))
    assert report.one_word_epsilon == pytest.approx(
        mechanism.epsilon * farthest(space, known).max(), rel=1e-12
    )
    assert report.one_word_delta == report.all_words_delta == 0.0
    assert report.seed["entropy"] == 3
    text = str(report)
    assert "masked as '[UNK]'" in text and "one word replaced: epsilon <=" in text
    assert report.to_dict()["n_masked"] == 2


def test_report_without_claims_and_for_streams(mechanism):
    texts = ["the king", "Kowalski sat", "a queen"]
    stream, report = dd.perturb_text(
        iter(texts), mechanism, rng=0, unknown="keep", return_report=True, batch_size=1
    )
    assert not report.complete and report.n_texts == 0
    first = next(stream)
    assert report.n_texts == 1 and first.count(" ") == 1
    with pytest.warns(dd.PrivacyWarning, match="1 word token"):
        rest = list(stream)
    assert len(rest) == 2 and report.complete and report.n_unknown_kept == 1
    assert "published unchanged" in str(report)
    assert report.all_words_epsilon > 0


def test_perturb_file_report(tmp_path, mechanism):
    source = tmp_path / "in.txt"
    source.write_text("the king sat\nZurich\n\nthe throne\n", encoding="utf-8")
    path, report = dd.perturb_file(
        source, tmp_path / "out.txt", mechanism, rng=0, unknown="drop", return_report=True
    )
    assert path.read_text(encoding="utf-8").splitlines()[1] == ""
    assert (report.n_texts, report.n_tokens, report.n_dropped, report.unit) == (4, 6, 1, "line")
    assert "claimed per line (the worst of 4)" in str(report)
    assert "1 outside the vocabulary, dropped" in str(report)
    assert dd.perturb_file(source, tmp_path / "o2.txt", mechanism, rng=0) == tmp_path / "o2.txt"


def test_case_back_off_in_text_on_a_cased_vocabulary():
    words = ["the", "Kowalski", "NASA", "apple", "Apple", "iPhone", "Paris"]
    vectors = np.eye(len(words))
    space = dd.EmbeddingSpace(words, vectors)
    codec = dd.TextCodec(space.vocabulary, unknown="error")
    ids = codec.encode("KOWALSKI kowalski Kowalski nasa Nasa APPLE Apple IPHONE").word_ids
    assert space.words(ids) == [
        "Kowalski", "Kowalski", "Kowalski", "NASA", "NASA", "apple", "Apple", "iPhone",
    ]  # fmt: skip
    to_paris = np.full(len(ids), words.index("Paris"))
    out = codec.map_texts("KOWALSKI kowalski Kowalski iPhone", lambda a: to_paris[: len(a)])
    assert out == "PARIS paris Paris Paris"


def test_an_unchanged_word_looks_like_a_drawn_one():
    """A word the mechanism returns unchanged is written from (output word, input case), never
    in its input spelling: otherwise 'kING' or 'Nasa' would only ever come out of themselves."""
    words = ["the", "king", "queen", "NASA", "straße"]
    space = dd.EmbeddingSpace(words, np.eye(len(words)))
    identity_mechanism = dd.ExponentialMechanism(space, epsilon=1e6)  # always the word itself
    out = dd.perturb_text(
        "the kING and qUEEN, Nasa, NASA, strasse STRASSE", identity_mechanism, rng=0
    )
    assert out == "the king [UNK] queen, NASA, NASA, straße STRASSE"
    codec = dd.TextCodec(space.vocabulary)  # the general mapper stays lossless
    assert codec.map_texts("the kING, Nasa", identity) == "the kING, Nasa"


def test_patterns_are_checked():
    with pytest.raises(ValueError, match="`pattern` must not hold capturing groups"):
        dd.TextCodec(VOCAB, pattern=r"([a-z])+")
    with pytest.raises(ValueError, match="`pattern` must be a valid regular expression"):
        dd.TextCodec(VOCAB, pattern=r"[a-z")
    with pytest.raises(ValueError, match="`pattern` must not match the empty string"):
        dd.TextCodec(VOCAB, pattern=r"[a-z]*")
    with pytest.raises(TypeError, match="`pattern` must be a str or None; got int"):
        dd.TextCodec(VOCAB, pattern=3)
    for bad in ("\n", "a\u2028b", ""):
        with pytest.raises(ValueError, match="`mask_token` must be a non-empty string without"):
            dd.TextCodec(VOCAB, unknown="mask", mask_token=bad)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # vowel signs are combining marks
        ("Jose\u0301 cafe\u0301!", ["Jose\u0301", "cafe\u0301"]),  # decomposed accents
        ("தமிழ் மொழி", ["தமிழ்", "மொழி"]),
    ],
)
def test_combining_marks_stay_with_their_word(text, words):
    assert dd.tokenize(text)[1::2] == words
    out = dd.TextCodec(VOCAB, unknown="mask").map_texts(text, identity)
    assert set(dd.tokenize(out)[1::2]) == {"UNK"}  # nothing of the words is left


def test_keep_warns_at_the_first_batch_even_if_the_stream_is_not_finished(mechanism):
    lines = ["Mr Kowalski sat\n", "the king\n", "a queen\n"]
    stream = dd.perturb_text(iter(lines), mechanism, rng=0, unknown="keep", batch_size=1)
    with pytest.warns(dd.PrivacyWarning, match="2 word token") as caught:  # Mr, Kowalski
        next(stream)
    assert caught[0].filename == __file__  # attributed to the caller, not to the library


def test_report_delta_uses_the_pair_dependent_term(mechanism):
    space = mechanism.space
    radius = 1.5 * float(space.farthest_distance(np.arange(len(space))).max())
    with warnings.catch_warnings():  # its tail mass q is announced: that is the point here
        warnings.simplefilter("ignore", dd.PrivacyWarning)
        approx = dd.DistanceTruncatedLaplace(space, epsilon=2.0, radius=radius)
    _, report = dd.perturb_text(["the king", "a"], approx, rng=0, return_report=True)
    ids = space.ids(["the", "king"])
    far = space.farthest_word(ids)
    deltas = np.minimum(1.0, approx.privacy_delta_bound(ids, far))
    assert report.one_word_delta == pytest.approx(deltas.max(), rel=1e-12)
    assert report.all_words_delta == pytest.approx(min(1.0, deltas.sum()), rel=1e-12)
    assert report.one_word_delta > approx.privacy_bound().delta  # the pair term, not q alone
    assert report.all_words_delta <= 1.0
    assert ("additive term reaches 1" in str(report)) == (report.all_words_delta >= 1.0)


def test_texts_of_other_types(mechanism):
    assert dd.perturb_text(np.array(["the king", "a"]), mechanism, rng=0) == dd.perturb_text(
        ["the king", "a"], mechanism, rng=0
    )
    for bad, what in ((b"the king", "bytes"), ({"the": 1}, "unordered dict"), ({"a"}, "set")):
        with pytest.raises(
            TypeError, match=f"`texts` must be a str or an ordered iterable.*{what}"
        ):
            dd.perturb_text(bad, mechanism, rng=0)
    stream, report = dd.perturb_text(iter(["the king"]), mechanism, rng=0, return_report=True)
    assert "not been read to its end" in str(report)
    list(stream)
    assert "not been read" not in str(report)


@pytest.mark.parametrize(
    ("replace", "error", "message"),
    [
        (lambda ids: ids - 100, ValueError, r"word ids in \[0, 8\]; got -"),
        (lambda ids: ids + 100, ValueError, r"word ids in \[0, 8\]; got 1"),
        (lambda ids: ids.astype(float), TypeError, "integer word ids; got dtype float64"),
        (lambda ids: ids > 0, TypeError, "integer word ids; got dtype bool"),
    ],
)
def test_replace_must_return_valid_ids(replace, error, message):
    with pytest.raises(error, match=message):
        dd.TextCodec(VOCAB).map_texts("the king", replace)


def test_report_claims_follow_each_mechanism_s_own_per_pair_claim():
    """The per-token claim is the mechanism's bound against any replacement word, not
    ``privacy_bound().epsilon`` times a Euclidean distance: inf where some pair is unprotected
    (CusText across output sets, SanText+ with non-sensitive words), at least ``epsilon`` times
    the largest d_RM for the Mahalanobis mechanism."""
    space = dd.synthetic_space(n_words=120, dim=4, n_clusters=3, rng=5)
    text = " ".join(space.words([3, 17, 40]))
    for mechanism in (
        dd.CusText(space, 1.0, k=10),
        dd.SanTextPlus(space, 1.0, p=0.3, sensitive_fraction=0.5),
    ):
        report = dd.perturb_text(text, mechanism, rng=0, return_report=True)[1]
        assert report.one_word_epsilon == np.inf
    mechanism = dd.MahalanobisMechanism(space, 2.0, lam=0.9)
    report = dd.perturb_text(text, mechanism, rng=0, return_report=True)[1]
    ids = np.array([3, 17, 40])
    worst = max(
        float(np.max(mechanism.privacy_loss_bound(np.full(len(space), w), np.arange(len(space)))))
        for w in ids
    )
    assert worst <= report.one_word_epsilon < np.inf
    laplace = dd.MultivariateLaplace(space, 2.0)
    report = dd.perturb_text(text, laplace, rng=0, return_report=True)[1]
    assert report.one_word_epsilon == pytest.approx(2.0 * space.farthest_distance(ids).max())
