"""Text path hardening: Unicode normalization, bounded streaming, arbitrary bytes, and the
command line's outputs (stdout vs -o, symlinks, devices, FIFOs, signals, temporary files)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
import unicodedata
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import densitydp as dd
import densitydp.text as text_module
from densitydp._io import atomic_write, remove_stale_temporaries
from densitydp.cli import main

ACCENTED = ["café", "naïve", "résumé", "Ångström", "straße", "ǰam", "जीवन", "नमस्ते", "สวัสดี", "தமிழ்"]
WORDS = ["the", "king", "queen", "a", *ACCENTED]
FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
VOCAB = dd.Vocabulary([unicodedata.normalize("NFC", w) for w in WORDS])


def shift(ids):
    """A deterministic replace: each id to the next one (never depends on the batching)."""
    return (np.asarray(ids) + 1) % len(VOCAB)


@pytest.fixture(scope="module")
def mechanism():
    rng = np.random.default_rng(0)
    space = dd.EmbeddingSpace(list(VOCAB), rng.normal(size=(len(VOCAB), 3)))
    return dd.ExponentialMechanism(space, epsilon=1.0)


# ----------------------------------------------------------------------------- Unicode

unicode_texts = st.lists(
    st.one_of(
        st.sampled_from([*WORDS, *(w.upper() for w in WORDS), "Kowalski", "x"]),
        st.sampled_from([" ", ", ", ".\n", "\r\n", "\t", "\u0301", "\u0308 ", "-", "'", "¨"]),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=3),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(unicode_texts)
def test_nfc_and_nfd_give_the_same_words(text):
    composed, decomposed = (unicodedata.normalize(f, text) for f in ("NFC", "NFD"))
    pieces_c, pieces_d = dd.tokenize(composed), dd.tokenize(decomposed)
    assert [unicodedata.normalize("NFC", p) for p in pieces_d] == pieces_c
    codec = dd.TextCodec(VOCAB)
    assert codec.encode(composed).word_ids.tolist() == codec.encode(decomposed).word_ids.tolist()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unicode_texts, st.sampled_from(["mask", "drop", "keep"]))
def test_nfc_and_nfd_give_the_same_output_in_their_own_form(text, unknown):
    space_rng = np.random.default_rng(1)
    space = dd.EmbeddingSpace(list(VOCAB), space_rng.normal(size=(len(VOCAB), 3)))
    mech = dd.ExponentialMechanism(space, epsilon=1.0)
    composed, decomposed = (unicodedata.normalize(f, text) for f in ("NFC", "NFD"))
    if not composed:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dd.PrivacyWarning)
        out_c = dd.perturb_text(composed, mech, rng=3, unknown=unknown, mask_token="UNK")
        out_d = dd.perturb_text(decomposed, mech, rng=3, unknown=unknown, mask_token="UNK")
    assert unicodedata.normalize("NFC", out_d) == out_c
    if unknown != "drop":  # the separators are never changed, the words keep their form
        inputs, outputs = dd.tokenize(decomposed), dd.tokenize(out_d)
        assert outputs[::2] == inputs[::2]
        for before, after in zip(inputs[1::2], outputs[1::2], strict=True):
            if not unicodedata.is_normalized("NFC", before):
                assert unicodedata.is_normalized("NFD", after), (before, after)
        assert dd.tokenize(out_c)[::2] == dd.tokenize(composed)[::2]
        assert all(unicodedata.is_normalized("NFC", w) for w in dd.tokenize(out_c)[1::2])


def test_canonical_decompositions_keep_word_boundaries():
    """Every character with a canonical decomposition is of the class (word or separator) of
    the first character of its NFD, and the rest of its NFD are marks (or letters, for a word):
    so NFC and NFD texts split at the same places."""
    mismatches = []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        decomposed = unicodedata.normalize("NFD", char)
        if decomposed == char:
            continue
        word = char.isalnum()
        rest_ok = all(
            c.isalnum() or unicodedata.category(c).startswith("M") if word
            else unicodedata.category(c).startswith("M")
            for c in decomposed[1:]
        )  # fmt: skip
        if decomposed[0].isalnum() != word or not rest_ok:
            mismatches.append(hex(code))
    assert mismatches == []


@pytest.mark.parametrize(
    ("text", "separators", "words"),
    [
        ("\u0301king", ["\u0301", ""], ["king"]),  # a mark at the very start: no base letter
        ("king.\u0301queen", ["", ".\u0301", ""], ["king", "queen"]),  # after punctuation
        ("king \u0308\u0301 a", ["", " \u0308\u0301 ", ""], ["king", "a"]),  # after a space
        ("cafe\u0301s", ["", ""], ["cafe\u0301s"]),  # inside a word
        ("नमस्ते दुनिया", ["", " ", ""], ["नमस्ते", "दुनिया"]),  # Devanagari vowel signs
        ("สวัสดี ครับ", ["", " ", ""], ["สวัสดี", "ครับ"]),  # Thai
        ("தமிழ் மொழி", ["", " ", ""], ["தமிழ்", "மொழி"]),  # Tamil
    ],
)
def test_combining_marks_stay_with_their_base(text, separators, words):
    pieces = dd.tokenize(text)
    assert pieces[::2] == separators and pieces[1::2] == words
    swapped = dd.TextCodec(VOCAB, keep_spelling=False).map_texts(text, shift)
    assert dd.tokenize(swapped)[::2] == separators  # a mark never lands on a substitute


def test_vocabulary_lookup_uses_the_nfc_form():
    nfd = dd.Vocabulary([unicodedata.normalize("NFD", w) for w in WORDS])  # not GloVe's form
    for vocabulary in (VOCAB, nfd):
        codec = dd.TextCodec(vocabulary)
        for form in ("NFC", "NFD"):
            ids = codec.encode(unicodedata.normalize(form, "Café naïve RÉSUMÉ")).word_ids
            assert ids.tolist() == [4, 5, 6]
    # NFKC is not applied: compatibility characters (ligatures, full width) are other words
    assert dd.TextCodec(VOCAB).encode("ｔｈｅ ﬁ").word_ids.tolist() == [-1, -1]


def test_output_words_take_their_input_words_form():
    codec = dd.TextCodec(VOCAB, keep_spelling=False)
    to_cafe = lambda ids: np.full_like(ids, 4)  # noqa: E731
    decomposed = unicodedata.normalize("NFD", "naïve and the")
    out = codec.map_texts(decomposed, to_cafe)
    first, _, last = dd.tokenize(out)[1::2]
    assert first == unicodedata.normalize("NFD", "café")  # an NFD word gets an NFD substitute
    assert last == "café"  # an ASCII word (both forms): NFC
    assert codec.map_texts("NAÏVE", to_cafe) == "CAFÉ"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from(["mask", "keep", "drop"]))
def test_codec_on_arbitrary_unicode(text, unknown):
    codec = dd.TextCodec(VOCAB, unknown=unknown, mask_token="UNK", keep_spelling=False)
    out = codec.map_texts(text, shift)
    if unknown != "drop":
        assert dd.tokenize(out)[::2] == dd.tokenize(text)[::2]
    else:  # the drop writer equals decode's gap rule on the whole text
        encoded = codec.encode(text)
        ids = encoded.word_ids.copy()
        ids[encoded.known] = shift(ids[encoded.known])
        assert out == codec.decode(encoded, ids)


# ----------------------------------------------------------------------------- streaming

stream_texts = st.lists(
    st.one_of(
        st.sampled_from([*WORDS, "KING", "Kowalski", "zz"]),
        st.sampled_from([" ", "  ", ", ", ".", "\n", "\r\n", "\r", "\t", " \t ", "\u0301", "\x00"]),
        st.text(max_size=4),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES)
@given(
    stream_texts,
    st.sampled_from(["mask", "drop", "keep"]),
    st.integers(1, 12),
    st.sampled_from([(1 << 17, 1 << 22), (3, 1 << 22), (1 << 17, 9), (2, 5), (1, 1)]),
    st.integers(1, 4),
)
def test_chunked_streaming_is_byte_identical(
    tmp_path_factory, text, unknown, chunk, limits, batch_lines
):
    folder = tmp_path_factory.mktemp("chunks")
    source = folder / "in.txt"
    source.write_bytes(text.encode("utf-8", "surrogatepass").replace(b"\xed", b"\xff"))
    codec = dd.TextCodec(VOCAB, unknown=unknown, keep_spelling=False)
    whole = folder / "whole.txt"
    codec.map_file(source, whole, shift, progress=False)
    saved = text_module.BATCH_WORDS, text_module.BATCH_CHARS
    text_module.BATCH_WORDS, text_module.BATCH_CHARS = limits
    try:
        cut = folder / "cut.txt"
        codec.map_file(
            source, cut, shift, progress=False, batch_lines=batch_lines, _chunk_chars=chunk
        )
    finally:
        text_module.BATCH_WORDS, text_module.BATCH_CHARS = saved
    assert cut.read_bytes() == whole.read_bytes()
    # and line by line through decode (the reference of the gap rule)
    decoded = source.read_bytes().decode("utf-8", "surrogateescape")
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z", decoded)
    expected = []
    for line in lines:
        encoded = codec.encode(line)
        ids = encoded.word_ids.copy()
        ids[encoded.known] = shift(ids[encoded.known])
        expected.append(codec.decode(encoded, ids))
    assert whole.read_bytes() == "".join(expected).encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("unknown", ["mask", "drop", "keep"])
def test_same_seed_same_output_for_every_chunking(tmp_path, mechanism, unknown, monkeypatch):
    rng = np.random.default_rng(4)
    parts = rng.choice([*WORDS, "Kowalski", " ", " ", ", ", "\n", "\r\n", "\u0301 "], 4000)
    source = tmp_path / "in.txt"
    source.write_bytes("".join(parts).encode() + b"\xff\xfe tail")
    outputs = set()
    reports = []
    for chunk, words, chars in [(1 << 18, 1 << 17, 1 << 22), (1, 1 << 17, 1 << 22), (5, 7, 50)]:
        monkeypatch.setattr(text_module, "BATCH_WORDS", words)
        monkeypatch.setattr(text_module, "BATCH_CHARS", chars)
        for size in (chunk, 3):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dd.PrivacyWarning)
                _, report = dd.perturb_file(
                    source, tmp_path / "out.txt", mechanism, rng=7, unknown=unknown,
                    return_report=True, _chunk_chars=size, batch_lines=16,
                )  # fmt: skip
            outputs.add((words, (tmp_path / "out.txt").read_bytes()))
            reports.append(report)
    assert len({o for w, o in outputs if w == 1 << 17}) == 1  # chunking never matters
    assert len({(r.n_texts, r.n_tokens, r.n_perturbed, r.worst_text) for r in reports}) == 1
    assert np.allclose([r.all_words_epsilon for r in reports], reports[0].all_words_epsilon)


def test_long_lines_and_nul_streams_are_read_in_chunks(tmp_path, mechanism, monkeypatch):
    seen = []
    original = text_module.TextCodec._encode

    def spy(self, text, where, offset=0):
        seen.append(len(text))
        return original(self, text, where, offset)

    monkeypatch.setattr(text_module.TextCodec, "_encode", spy)
    line = tmp_path / "line.txt"
    line.write_bytes(b"the king, " * 30_000 + b"\0" * 300_000)  # 600 kB without a line break
    dd.perturb_file(line, tmp_path / "out.txt", mechanism, rng=0, _chunk_chars=4096)
    assert max(seen) <= 4096 and len(seen) > 100  # never the whole line at once
    out = (tmp_path / "out.txt").read_bytes()
    assert len(out) > 600_000 and out.endswith(b"\0" * 300_000)


def test_an_endless_word_is_refused_by_name(tmp_path, mechanism, monkeypatch):
    monkeypatch.setattr(text_module, "MAX_RUN_CHARS", 10_000)
    source = tmp_path / "blob.txt"
    source.write_bytes(b"the king " + b"a" * 50_000 + b" queen\n")
    with pytest.raises(ValueError, match="line 1 holds a run of more than 10,000 letters"):
        dd.perturb_file(source, tmp_path / "out.txt", mechanism, rng=0, _chunk_chars=1000)
    assert not (tmp_path / "out.txt").exists() and os.listdir(tmp_path) == ["blob.txt"]


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES)
@given(st.binary(max_size=300), st.sampled_from(["mask", "keep", "drop"]), st.integers(1, 50))
def test_files_of_arbitrary_bytes(tmp_path_factory, mechanism, data, unknown, chunk):
    folder = tmp_path_factory.mktemp("bytes")
    source = folder / "in.bin"
    source.write_bytes(data)
    codec = dd.TextCodec(VOCAB, unknown=unknown, mask_token="UNK")
    codec.map_file(source, folder / "same.bin", lambda ids: ids, _chunk_chars=chunk)
    if unknown == "keep":  # every byte written back, undecodable ones included
        assert (folder / "same.bin").read_bytes() == data
    out = (folder / "same.bin").read_bytes().decode("utf-8", "surrogateescape")
    text = data.decode("utf-8", "surrogateescape")
    if unknown == "mask":  # the separators byte-exact, every word known or masked
        assert dd.tokenize(out)[::2] == dd.tokenize(text)[::2]
        for before, after in zip(dd.tokenize(text)[1::2], dd.tokenize(out)[1::2], strict=True):
            assert after == before or (after == "UNK" and VOCAB.lookup(before) < 0)
    with warnings.catch_warnings():  # and through a mechanism: the same layout, never a crash
        warnings.simplefilter("ignore", dd.PrivacyWarning)
        dd.perturb_file(
            source, folder / "private.bin", mechanism, rng=0, unknown=unknown,
            mask_token="UNK", _chunk_chars=chunk,
        )  # fmt: skip
    private = (folder / "private.bin").read_bytes().decode("utf-8", "surrogateescape")
    if unknown != "drop":
        assert dd.tokenize(private)[::2] == dd.tokenize(text)[::2]


def test_fifo_input_works_on_both_paths(tmp_path, mechanism):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        [sys.executable, "-c", f"open({str(fifo)!r}, 'wb').write(b'the king\\n' * 1000)"]
    )
    dd.perturb_file(fifo, tmp_path / "out.txt", mechanism, rng=0)
    writer.wait(timeout=60)
    assert (tmp_path / "out.txt").read_text().count("\n") == 1000


# ----------------------------------------------------------------------------- atomic writes


def test_symlink_is_written_through(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with atomic_write(link, "w") as stream:
        stream.write("new")
    assert link.is_symlink() and target.read_text() == "new"


def test_devices_are_written_directly(tmp_path):
    with atomic_write("/dev/null", "wb") as stream:
        stream.write(b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(OSError, match="cannot write '/dev/full'"), atomic_write("/dev/full") as s:
        s.write(b"x" * 100_000)


def test_write_errors_name_the_users_path(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"

    def full(*args):
        raise OSError(28, "No space left on device", args[0])

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space left") as caught, atomic_write(path, "w") as stream:
        stream.write("x")
    assert str(path) in str(caught.value) and "densitydp-" not in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.txt.densitydp-{dead.pid}-abc123.tmp"
    alive = tmp_path / f".out.txt.densitydp-{os.getppid()}-abc123.tmp"
    other = tmp_path / "notes.tmp"
    for path in (stale, alive, other):
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale.name]
    with atomic_write(tmp_path / "out.txt", "w") as stream:
        stream.write("y")
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, other.name, "out.txt"])


# ----------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    space = dd.synthetic_space(n_words=600, dim=8, n_clusters=5, rng=3)
    return space.to_file(tmp_path_factory.mktemp("space") / "space.txt")


def base_arguments(space_file, *extra):
    return ["perturb", "-m", "exponential", "-e", "1", "--embeddings", str(space_file),
            "--seed", "3", "--no-progress", *extra]  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(st.binary(max_size=200), st.sampled_from(["mask", "keep", "drop"]))
def test_cli_stdout_writes_exactly_what_output_writes(space_file, tmp_path_factory, data, unknown):
    folder = tmp_path_factory.mktemp("cli")
    source = folder / "in.bin"
    source.write_bytes(b"c00w0001 " + data + b"\x1b[31m\x07\r\n\xff")
    runner = CliRunner()
    arguments = base_arguments(space_file, "--unknown", unknown)
    to_file = runner.invoke(main, [*arguments, str(source), "-o", str(folder / "out.bin")])
    to_stdout = runner.invoke(main, [*arguments, str(source)])
    from_stdin = runner.invoke(main, [*arguments, "-", "-o", "-"], input=source.read_bytes())
    assert to_file.exit_code == to_stdout.exit_code == from_stdin.exit_code == 0, to_file.output
    written = (folder / "out.bin").read_bytes()
    assert to_stdout.stdout_bytes == written == from_stdin.stdout_bytes


def run_cli(space_file, *extra, **options):
    return subprocess.run(
        [sys.executable, "-m", "densitydp.cli", *base_arguments(space_file, *extra)],
        capture_output=True, check=False, timeout=300, **options,
    )  # fmt: skip


def test_cli_output_onto_symlink_device_and_fifo(space_file, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("c00w0001 hello\n")
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert run_cli(space_file, str(source), "-o", str(link)).returncode == 0
    assert link.is_symlink() and target.read_text().endswith("[UNK]\n")
    assert run_cli(space_file, str(source), "-o", "/dev/null").returncode == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    full = run_cli(space_file, str(source), "-o", "/dev/full")
    assert full.returncode == 2
    assert full.stderr.decode().strip().splitlines()[-1] == (
        "Error: cannot write '/dev/full': No space left on device"
    )
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert run_cli(space_file, str(source), "-o", str(fifo)).returncode == 0
    assert reader.communicate(timeout=60)[0].endswith(b"[UNK]\n")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file
    readonly = tmp_path / "ro"
    readonly.mkdir()
    (readonly / "out.txt").write_text("x")
    readonly.chmod(0o500)
    try:
        denied = run_cli(space_file, str(source), "-o", str(readonly / "out.txt"))
        if os.geteuid() != 0:
            assert denied.returncode == 2 and b"not writable" in denied.stderr
    finally:
        readonly.chmod(0o700)


def test_cli_reads_a_fifo_to_stdout_and_to_a_file(space_file, tmp_path):
    for output in ([], ["-o", str(tmp_path / "out.txt")]):
        fifo = tmp_path / f"in{len(output)}.fifo"
        os.mkfifo(fifo)
        writer = subprocess.Popen(
            [sys.executable, "-c", f"open({str(fifo)!r}, 'wb').write(b'c00w0001 x\\n' * 500)"]
        )
        result = run_cli(space_file, str(fifo), *output)
        writer.wait(timeout=60)
        assert result.returncode == 0, result.stderr
        written = result.stdout if not output else (tmp_path / "out.txt").read_bytes()
        assert written.count(b"\n") == 500


def close(process):
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(BrokenPipeError):
                stream.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_killed_runs_leave_no_temporary_file(space_file, tmp_path, signum):
    output = tmp_path / "out.txt"
    output.write_text("previous")
    # the child starts with the default disposition of the signal whatever the test runner
    # inherited (under nohup SIGHUP is ignored, and the CLI rightly keeps ignoring it)
    process = subprocess.Popen(
        [sys.executable, "-m", "densitydp.cli",
         *base_arguments(space_file, "-", "-o", str(output))],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL),
    )  # fmt: skip
    assert process.stdin is not None and process.stderr is not None
    line = b"c00w0001 c00w0002 hello, world\n" * 2000
    deadline = time.monotonic() + 120
    while not any(n.endswith(".tmp") for n in os.listdir(tmp_path)):  # surely writing
        process.stdin.write(line)
        assert time.monotonic() < deadline
    for _ in range(20):
        process.stdin.write(line)
    process.send_signal(signum)
    try:
        while process.poll() is None:
            process.stdin.write(line)
            assert time.monotonic() < deadline + 60, "the signal did not end the run"
    except BrokenPipeError:
        pass
    process.wait(timeout=60)
    close(process)
    assert process.returncode == -signum  # ended by the signal (128 + n in a shell)
    assert os.listdir(tmp_path) == ["out.txt"] and output.read_text() == "previous"


def test_a_sigkilled_runs_temporary_file_is_removed_by_the_next_run(space_file, tmp_path):
    output = tmp_path / "out.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "densitydp.cli",
         *base_arguments(space_file, "-", "-o", str(output))],
        stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdin is not None
    deadline = time.monotonic() + 120
    while not (left := [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]):
        process.stdin.write(b"c00w0001 hello\n" * 2000)
        assert time.monotonic() < deadline
    process.kill()
    process.wait(timeout=60)
    close(process)
    assert left[0].startswith(f".out.txt.densitydp-{process.pid}-")  # recognisable
    assert os.path.exists(tmp_path / left[0])
    source = tmp_path / "in.txt"
    source.write_text("c00w0001\n")
    assert run_cli(space_file, str(source), "-o", str(tmp_path / "other.txt")).returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "other.txt"]


def test_broken_pipe_on_stdout_is_quiet(space_file, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(b"c00w0001 hello\n" * 200_000)
    command = [sys.executable, "-m", "densitydp.cli", *base_arguments(space_file, str(source))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.read(100)
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=120)
    close(process)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr


VALUES = st.one_of(
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES)
@given(st.sampled_from(["--epsilon", "--top", "--unknown", "--mask-token", "--seed"]), VALUES)
def test_cli_option_values_never_give_a_traceback(space_file, tmp_path, option, value):
    runner = CliRunner()
    arguments = ["perturb", "-m", "exponential", "-e", "1", "--embeddings", str(space_file),
                 "--seed", "3", "--no-progress", option, value]  # fmt: skip
    result = runner.invoke(main, arguments, input="c00w0001 hello\n")
    assert result.exit_code in (0, 1, 2), result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert option in result.output or option.lstrip("-") in result.output, result.output
    if result.exit_code == 1:
        assert len(result.stderr.strip().splitlines()) >= 1
    if option == "--epsilon" and result.exit_code == 0:
        assert float(value) > 0 and np.isfinite(float(value))
