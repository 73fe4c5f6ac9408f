from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

import densitydp as dd
from densitydp.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"densitydp, version {dd.__version__}"


def test_info_on_a_file(runner, tmp_path, small_space, fresh_cache):
    path = small_space.to_file(tmp_path / "space.txt")
    result = runner.invoke(main, ["info", "--embeddings", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "words         600" in result.output
    assert "dimension     8" in result.output
    assert f"min distance  {small_space.min_distance():.6f}" in result.output
    assert f"max distance  {small_space.max_distance():.6f}" in result.output
    assert str(fresh_cache) in result.output


def test_bad_input_gives_one_line_and_nonzero_exit(runner, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1\n", encoding="utf-8")
    result = runner.invoke(main, ["info", "--embeddings", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {bad}:2: expected a word and 2 numbers; got 2 fields (word 'b')."
    ]
    result = runner.invoke(main, ["info", "--embeddings", str(tmp_path / "none.txt")])
    assert result.exit_code == 2 and "must be an existing file" in result.output


@pytest.mark.glove
def test_demo_runs_on_glove(runner, glove_top):
    result = runner.invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "king" in result.output and "queen" in result.output
    assert "The KING" not in result.output  # case kept: "The King of France" -> Title case


@pytest.fixture
def space_file(tmp_path, small_space):
    return small_space.to_file(tmp_path / "space.txt")


def test_perturb_stdin_to_stdout_is_seeded(runner, space_file, small_space):
    text = " ".join(small_space.words([1, 2, 3])) + ", unknown!\n"
    arguments = [
        "perturb",
        "-m",
        "exponential",
        "-e",
        "1",
        "--embeddings",
        str(space_file),
        "--seed",
        "4",
    ]
    first = runner.invoke(main, arguments, input=text)
    assert first.exit_code == 0, first.output
    assert first.stdout == runner.invoke(main, arguments, input=text).stdout
    assert first.stdout.endswith(", [UNK]!\n") and first.stdout != text
    assert "seed entropy 4" in first.stderr and "metric DP" in first.stderr
    assert "4 word tokens in 1 line: 3 perturbed" in first.stderr
    assert "1 outside the vocabulary, masked as '[UNK]'" in first.stderr
    assert "claimed for this line, by basic composition: one word replaced: epsilon <=" in (
        first.stderr
    )
    kept = runner.invoke(main, [*arguments, "--unknown", "keep"], input=text)
    assert kept.stdout.endswith(", unknown!\n")
    assert "warning: 1 unknown word tokens were published unchanged" in kept.stderr
    assert "Warning" not in kept.stderr  # one line of ours, not a Python warning
    dropped = runner.invoke(main, [*arguments, "--unknown", "drop"], input=text)
    assert dropped.stdout.endswith(",!\n")
    assert "1 outside the vocabulary, dropped" in dropped.stderr
    masked = runner.invoke(main, [*arguments, "--mask-token", "<?>"], input=text)
    assert masked.stdout.endswith(", <?>!\n")
    failed = runner.invoke(main, [*arguments, "--unknown", "error"], input=text)
    assert failed.exit_code == 2 and "unknown word 'unknown' at character" in failed.stderr


def test_perturb_file_to_file(runner, space_file, small_space, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text(" ".join(small_space.words(list(range(20)))) + "\n", encoding="utf-8")
    target = tmp_path / "out.txt"
    result = runner.invoke(
        main,
        [
            "perturb",
            "-m",
            "tem",
            "-e",
            "2",
            "--embeddings",
            str(space_file),
            "--seed",
            "1",
            str(source),
            "-o",
            str(target),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(target.read_text(encoding="utf-8").split()) == 20


def test_perturb_refuses_meaningless_gumbel_epsilon(runner, space_file):
    result = runner.invoke(
        main, ["perturb", "-m", "gumbel", "-e", "1", "--embeddings", str(space_file)], input="x\n"
    )
    assert result.exit_code == 2
    assert "the smallest meaningful epsilon" in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_diagnose_prints_summary_verdict_and_saves_plots(runner, space_file, small_space, tmp_path):
    word = small_space.words(7)
    plot = str(tmp_path / "chains.png")
    arguments = ["diagnose", "--word", word, "--epsilon", "5", "--embeddings", str(space_file),
                 "--draws", "300", "--seed", "3", "--plot", plot]  # fmt: skip
    result = runner.invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "radius" in result.output and "log_prior" in result.output
    assert "ess_tail" in result.output and "r_hat" in result.output
    assert "converged" in result.output
    assert "position (8 coordinates): max R-hat" in result.output
    assert "certified total variation of one such chain after 300 steps: <=" in result.output
    assert "steps for delta 1e-9" in result.output
    walk = runner.invoke(main, [*arguments[:-2], "--proposal", "random_walk"])
    assert "certified total variation: none" in walk.output
    assert (tmp_path / "chains.png").exists() and (tmp_path / "chains-rank.png").exists()
    again = runner.invoke(main, arguments)
    assert again.output == result.output  # seeded
    strict = runner.invoke(main, [*arguments[:-2], "--draws", "10", "--strict"])
    assert strict.exit_code == 1 and "NOT converged" in strict.output
    unknown = runner.invoke(main, ["diagnose", "--word", "zzzz", "--epsilon", "5",
                                   "--embeddings", str(space_file)])  # fmt: skip
    assert unknown.exit_code == 2 and "zzzz" in unknown.output


def test_perturb_with_a_density_aware_mechanism(runner, space_file, small_space):
    text = " ".join(small_space.words([1, 2, 3])) + "\n"
    arguments = ["perturb", "-m", "density-laplace", "-e", "5", "--embeddings", str(space_file),
                 "--seed", "1"]  # fmt: skip
    result = runner.invoke(main, arguments, input=text)
    assert result.exit_code == 0, result.output
    assert "10 * d(w, w')-metric DP" in result.stderr and "sampler='exact'" in result.stderr
    assert "exact sampling of the tilted target" in result.stderr
    half = runner.invoke(main, [*arguments, "--tilt", "0.5", "--prior-points", "30"], input=text)
    assert half.exit_code == 0, half.output
    assert "tilt=0.5" in half.stderr and "n_points=30" in half.stderr
    certified = runner.invoke(main, [*arguments, "--tilt", "2", "--delta", "1e-3"], input=text)
    assert certified.exit_code == 0, certified.output
    assert "sampler='certified'" in certified.stderr and "+ delta 0.001" in certified.stderr
    budget = runner.invoke(
        main, [*arguments, "--sampler", "budget", "--max-proposals", "3"], input=text
    )
    assert budget.exit_code == 0 and "max_proposals=3" in budget.stderr
    wrong = runner.invoke(main, ["perturb", "-m", "laplace", "-e", "5", "--embeddings",
                                 str(space_file), "--tilt", "0.5"], input=text)  # fmt: skip
    assert wrong.exit_code != 0 and "takes no option `--tilt`" in wrong.output
    refused = runner.invoke(main, [*arguments, "--tilt", "2", "--sampler", "exact"], input=text)
    assert refused.exit_code != 0 and "`--tilt` must be <= 1" in refused.output


def test_audit_prints_table_and_verdict_and_guards_ci(runner, space_file, tmp_path):
    report = tmp_path / "report.json"
    arguments = ["audit", "-m", "exponential", "-e", "2", "--embeddings", str(space_file),
                 "--n-pairs", "3", "--samples", "2000", "--seed", "1", "--json", str(report),
                 "--plot", str(tmp_path / "report.png")]  # fmt: skip
    result = runner.invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "eps_lower" in result.output and "exact_loss" in result.output
    assert result.output.strip().splitlines()[-1].startswith("PASS: 0 violation(s) among 3 pairs")
    assert report.exists() and (tmp_path / "report.png").exists()


def test_audit_exits_nonzero_on_a_violation(runner, small_space, monkeypatch):
    from densitydp import cli
    from densitydp.audit import broken

    monkeypatch.setattr(
        cli,
        "build_mechanism",
        lambda name, space, eps, **options: broken.ExponentialWithoutHalf(space, eps),
    )
    monkeypatch.setattr(cli, "_load_space", lambda embeddings, top, words="all": small_space)
    result = runner.invoke(main, ["audit", "-m", "exponential", "-e", "0.5", "--n-pairs", "5",
                                  "--samples", "20000", "--seed", "0"])  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("FAIL:")


def test_stats_prints_plausible_deniability(runner, space_file, small_space):
    words = small_space.words([0, 1])
    result = runner.invoke(main, ["stats", "-m", "tem", "-e", "3", "--embeddings",
                                  str(space_file), "-w", words[0], "-w", words[1],
                                  "--samples", "500", "--seed", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "N_w" in result.output and "S_w" in result.output and words[1] in result.output
    assert "median N_w" in result.output and "(500 draws per word)" in result.output


def test_calibrate(runner, space_file, tmp_path):
    base = ["calibrate", "-m", "exponential", "--embeddings", str(space_file), "--no-progress"]
    result = runner.invoke(main, [*base, "-t", "N_w=0.5"])
    assert result.exit_code == 0, result.output
    assert "gives a median N_w" in result.output and "metric DP" in result.output
    text = tmp_path / "sample.txt"
    text.write_text("c00w0001 c00w0002\nnothing known\n", encoding="utf-8")
    changed = runner.invoke(main, [*base, "-t", "changed=0.3", "--text", str(text)])
    assert changed.exit_code == 0, changed.output
    bad = runner.invoke(main, [*base, "-t", "N_w=half"])
    assert bad.exit_code == 2 and "expected STATISTIC=VALUE" in bad.output
    unknown = runner.invoke(main, [*base, "-t", "S_w=3"])
    assert unknown.exit_code == 2 and "`--target`" in unknown.output


def test_perturb_writes_escape_sequences_as_they_are(runner, space_file, small_space):
    text = " ".join(small_space.words([1, 2])) + " \x1b[31mred\x1b[0m\n"
    arguments = ["perturb", "-m", "exponential", "-e", "1", "--embeddings", str(space_file),
                 "--seed", "4", "--unknown", "keep"]  # fmt: skip
    result = runner.invoke(main, arguments, input=text)
    assert result.exit_code == 0 and "\x1b[31m" in result.stdout


def test_perturb_paths_dash_missing_input_and_stdin_as_output(runner, space_file, tmp_path):
    base = ["perturb", "-m", "exponential", "-e", "1", "--embeddings", str(space_file),
            "--seed", "2", "--unknown", "keep"]  # fmt: skip
    text = "c00w0001 caf\xe9 \x1b[0m\n"
    source = tmp_path / "in.txt"
    source.write_bytes(text.encode("utf-8") + b"\xff\n")
    to_file = runner.invoke(main, [*base, str(source), "-o", str(tmp_path / "out.txt")])
    to_stdout = runner.invoke(main, [*base, str(source), "-o", "-"])
    from_stdin = runner.invoke(main, [*base, "-"], input=source.read_bytes())
    assert to_file.exit_code == to_stdout.exit_code == from_stdin.exit_code == 0
    written = (tmp_path / "out.txt").read_bytes()
    assert to_stdout.stdout_bytes == written == from_stdin.stdout_bytes  # the same bytes
    assert written.endswith(b"\xff\n")  # undecodable input bytes kept
    missing = runner.invoke(main, [*base, str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    with open(source, "rb") as stdin:  # `-o IN < IN` would replace the input
        result = subprocess.run(
            [sys.executable, "-m", "densitydp.cli", *base, "-o", str(source)],
            stdin=stdin, capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert result.returncode == 2 and "is the file standard input reads from" in result.stderr
    assert source.read_bytes() == text.encode("utf-8") + b"\xff\n"


@pytest.mark.parametrize("command", ["audit", "perturb", "diagnose"])
def test_destinations_are_checked_before_the_work(runner, space_file, tmp_path, command):
    option = {"audit": "--json", "perturb": "-o", "diagnose": "--plot"}[command]
    flag = {"audit": "--json", "perturb": "--output", "diagnose": "--plot"}[command]
    base = {
        "audit": ["audit", "-m", "exponential", "-e", "1"],
        "perturb": ["perturb", "-m", "exponential", "-e", "1"],
        "diagnose": ["diagnose", "--word", "c00w0001", "-e", "5"],
    }[command] + ["--embeddings", str(tmp_path / "never-read.txt")]
    missing = runner.invoke(main, [*base, option, str(tmp_path / "no" / "out.json")], input="x\n")
    assert missing.exit_code == 2, missing.output
    assert f"`{flag}`" in missing.output
    assert "does not exist" in missing.output  # about the folder, not the embeddings file
    folder = runner.invoke(main, [*base, option, str(tmp_path)], input="x\n")
    assert folder.exit_code == 2 and "is a directory" in folder.output  # click's own check


def test_outputs_onto_the_embeddings_file_are_refused(tmp_path):
    """-o / --json onto the --embeddings file replaced it silently (found by a review)."""
    embeddings = tmp_path / "syn.txt.gz"
    dd.synthetic_space(n_words=60, dim=4, rng=0).to_file(embeddings)
    before = embeddings.read_bytes()
    source = tmp_path / "in.txt"
    source.write_text("c00w0001 hello\n")
    runner = CliRunner()
    for arguments in (
        ["perturb", "-m", "tem", "-e", "5", "--embeddings", str(embeddings), str(source),
         "-o", str(embeddings)],
        ["audit", "-m", "tem", "-e", "5", "--embeddings", str(embeddings),
         "--json", str(embeddings)],
    ):  # fmt: skip
        result = runner.invoke(main, arguments)
        assert result.exit_code != 0 and "is the --embeddings file" in result.output
    assert embeddings.read_bytes() == before


@pytest.mark.parametrize("closed", ["<&-", ">&-"])
def test_closed_standard_streams_give_one_line(tmp_path, closed):
    embeddings = tmp_path / "syn.txt"
    dd.synthetic_space(n_words=60, dim=4, rng=0).to_file(embeddings)
    source = tmp_path / "in.txt"
    source.write_text("c00w0001 hello\n")
    argument = "" if closed == "<&-" else shlex.quote(str(source))
    command = (
        f"{shlex.quote(sys.executable)} -m densitydp.cli perturb -m tem -e 5 --no-progress "
        f"--embeddings {shlex.quote(str(embeddings))} {argument} {closed}"
    )
    result = subprocess.run(command, shell=True, capture_output=True, timeout=300)
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr and b"is closed" in result.stderr


# ---- Issue 12 (review): outputs onto inputs, failed writes, options named, --plot ----------


def _shell(command, timeout=300):
    return subprocess.run(command, shell=True, capture_output=True, timeout=timeout)


def _cli():
    return f"{shlex.quote(sys.executable)} -m densitydp.cli"


@pytest.fixture
def cli_files(tmp_path):
    embeddings = tmp_path / "syn.txt"
    dd.synthetic_space(n_words=60, dim=4, rng=0).to_file(embeddings)
    source = tmp_path / "in.txt"
    source.write_text("c00w0001 hello\n")
    return embeddings, source


@pytest.mark.parametrize(
    ("redirect", "label"),
    [
        ("{source} >> {source}", "the input file"),
        ("< {source} >> {source}", "the file standard input reads from"),
        ("{source} >> {embeddings}", "the --embeddings file"),
        ("{source} 1<> {source}", "the input file"),  # read-write, not truncated
    ],
    ids=["IN>>IN", "<IN>>IN", ">>EMBEDDINGS", "IN1<>IN"],
)
def test_stdout_onto_an_input_file_is_refused(cli_files, redirect, label):
    """`perturb IN >> IN` read its own output and grew without end (found by a review)."""
    embeddings, source = cli_files
    before = (embeddings.read_bytes(), source.read_bytes())
    files = {"source": shlex.quote(str(source)), "embeddings": shlex.quote(str(embeddings))}
    result = _shell(
        f"{_cli()} perturb -m tem -e 5 --no-progress --embeddings "
        f"{shlex.quote(str(embeddings))} " + redirect.format(**files)
    )
    assert result.returncode == 2, result.stderr
    stderr = result.stderr.decode()
    assert f"standard output is {label}" in stderr and "Traceback" not in stderr
    assert (embeddings.read_bytes(), source.read_bytes()) == before


def test_stdout_onto_the_embeddings_file_is_refused_for_every_command(cli_files):
    embeddings, _ = cli_files
    before = embeddings.read_bytes()
    result = _shell(f"{_cli()} info --no-progress --embeddings {shlex.quote(str(embeddings))} "
                    f">> {shlex.quote(str(embeddings))}")  # fmt: skip
    assert result.returncode == 2 and b"standard output is the --embeddings file" in result.stderr
    assert embeddings.read_bytes() == before


def test_stdout_onto_other_files_is_written(cli_files, tmp_path):
    embeddings, source = cli_files
    out = tmp_path / "out.txt"
    out.write_text("kept\n")
    base = f"{_cli()} perturb -m tem -e 5 --seed 1 --no-progress --embeddings {embeddings}"
    assert _shell(f"{base} {source} >> {out}").returncode == 0
    assert out.read_text().startswith("kept\n") and len(out.read_text().splitlines()) == 2
    assert _shell(f"{base} {source} > /dev/null").returncode == 0  # a device: not compared


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["perturb", "info", "stats"])
def test_a_full_standard_output_is_named_not_the_input(cli_files, command):
    """`perturb IN > /dev/full` said "cannot read 'IN': No space left on device"."""
    embeddings, source = cli_files
    arguments = {
        "perturb": f"perturb -m tem -e 5 {shlex.quote(str(source))}",
        "info": "info",
        "stats": "stats -m tem -e 5 --samples 10 --n-words 2",
    }[command]
    result = _shell(
        f"{_cli()} {arguments} --no-progress --embeddings {shlex.quote(str(embeddings))} "
        "> /dev/full"
        if command != "stats"
        else f"{_cli()} {arguments} --embeddings {shlex.quote(str(embeddings))} > /dev/full"
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Error: cannot write standard output: No space left on device" in stderr
    assert "cannot read" not in stderr and "Traceback" not in stderr
    assert "Exception ignored" not in stderr  # no second report at the exit


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--embeddings", "/dev/zero"], "`--embeddings` must be a regular file"),
        (["--embeddings", "{tmp}/none.txt"], "`--embeddings` must be an existing file"),
        (["--encoding", "utf-16"], "Invalid value for '--encoding': must be an ASCII-compatible"),
        (["--encoding", "nonsense"], "Invalid value for '--encoding': must be a known text"),
        (["-m", "density-laplace", "--delta", "2"], "`--delta` applies to sampler="),
        (["-m", "density-laplace", "--tilt", "-1"], "`--tilt` must be a finite number >= 0"),
        (["-m", "density-laplace", "--max-proposals", "5"], "`--max-proposals` applies to"),
    ],
)
def test_errors_name_the_options_not_the_library_arguments(
    runner, space_file, tmp_path, arguments, expected
):
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    base = ["perturb", "-e", "5", "--embeddings", str(space_file)]
    if "-m" not in arguments:
        base += ["-m", "tem"]
    result = runner.invoke(main, [*base, *arguments], input="c00w0001\n")
    assert result.exit_code == 2, result.output
    assert expected in result.output
    for internal in ("`path`", "`encoding`", "`delta`", "`tilt`", "`max_proposals`"):
        assert internal not in result.output


@pytest.mark.parametrize(
    ("command", "plot", "expected"),
    [
        ("audit", "out.xyz", "a figure cannot be saved as 'xyz'"),
        ("diagnose", "out.xyz", "a figure cannot be saved as 'xyz'"),
        ("diagnose", "t.png", "the file '{tmp}/t-rank.png' it also writes is a folder"),
        ("diagnose", "sub/t.PDF", "the folder '{tmp}/sub' does not exist"),
    ],
)
def test_every_plot_file_is_checked_before_the_work(runner, tmp_path, command, plot, expected):
    """--plot out.xyz failed only after a full audit; diagnose's NAME-rank.png was never
    checked (found by a review). The embeddings file does not exist: nothing was loaded."""
    (tmp_path / "t-rank.png").mkdir()
    base = {
        "audit": ["audit", "-m", "tem", "-e", "1"],
        "diagnose": ["diagnose", "--word", "w", "-e", "5"],
    }[command] + ["--embeddings", str(tmp_path / "never-read.txt")]
    result = runner.invoke(main, [*base, "--plot", str(tmp_path / plot)])
    assert result.exit_code == 2, result.output
    assert "`--plot`" in result.output
    assert expected.replace("{tmp}", str(tmp_path)) in result.output
    assert "never-read" not in result.output


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "rank"])
def test_two_outputs_of_one_command_on_one_file_are_refused(runner, tmp_path, how):
    """--json r.png --plot r.png: the figure replaced the report silently."""
    report = tmp_path / "r.png"
    other = report
    if how == "symlink":
        other = tmp_path / "link.png"
        other.symlink_to(report)
    elif how == "hardlink":
        report.write_text("{}")
        other = tmp_path / "hard.png"
        __import__("os").link(report, other)
    never = ["--embeddings", str(tmp_path / "never-read.txt")]
    if how == "rank":  # diagnose: the trace plot onto its own rank plot, through a link
        (tmp_path / "t-rank.png").symlink_to(tmp_path / "t.png")
        arguments = ["diagnose", "--word", "w", "-e", "5", "--plot", str(tmp_path / "t.png")]
    else:
        arguments = ["audit", "-m", "tem", "-e", "1", "--json", str(report), "--plot", str(other)]
    result = runner.invoke(main, [*arguments, *never])
    assert result.exit_code == 2, result.output
    assert "is the same file as `" in result.output and "never-read" not in result.output


def test_field_mechanism_options_reach_audit_stats_and_calibrate(runner, space_file):
    """--set-size, --mapping, --convention, --threshold work on audit, stats and calibrate as
    on perturb, and a mechanism that takes none of them refuses them by name."""
    common = ["--embeddings", str(space_file), "--seed", "0"]
    with pytest.warns(dd.PrivacyWarning, match="mapping='top-k'"):
        audit = runner.invoke(
            main,
            ["audit", "-m", "custext", "--set-size", "5", "--mapping", "top-k", "-e", "3",
             "--n-pairs", "3", "--samples", "500", *common],
        )  # fmt: skip
    assert audit.exit_code == 3, audit.output  # every pair unprotected: INCONCLUSIVE
    assert "k=5" in audit.output and "mapping='top-k'" in audit.output
    assert "pair(s) with no claim at all" in audit.output
    stats = runner.invoke(
        main,
        ["stats", "-m", "gumbel", "--convention", "mldp", "-e", "1000", "--n-words", "2",
         "--samples", "50", *common],
    )  # fmt: skip
    assert stats.exit_code == 0, stats.output
    assert "convention='mldp'" in stats.output
    calibrate = runner.invoke(
        main,
        ["calibrate", "-m", "vickrey", "--threshold", "0.3", "--target", "N_w=0.5",
         "--samples", "100", *common],
    )  # fmt: skip
    assert calibrate.exit_code == 0, calibrate.output
    refused = runner.invoke(main, ["stats", "-m", "laplace", "-e", "5", "--lam", "0.5", *common])
    assert refused.exit_code == 2 and "takes no option `--lam`" in refused.output
    named = runner.invoke(main, ["stats", "-m", "tem", "-e", "5", "--set-size", "3", *common])
    assert named.exit_code == 2 and "takes no option `--set-size`" in named.output
