#!/usr/bin/env python3
"""Peak memory of ``densitydp perturb`` streaming files of growing size: bounded by bytes.

Generates text from the bundled GloVe vocabulary (the 50,000 most frequent alphabetic words,
with punctuation, some capitals and a few words outside the vocabulary): a file of ordinary lines
of each ``--sizes`` (MB), one line of ``--long-line`` MB without a line break, and the same size
of NUL bytes (what ``/dev/zero`` gives); then runs, for each file, in a fresh process

    python -m densitydp.cli perturb --top 50000 --words alpha -m tem -e 10 --seed 0 \\
        --no-progress FILE -o OUT

and reads its peak resident set size from ``os.wait4`` (``ru_maxrss``, the same figure as
``/usr/bin/time -v``'s "Maximum resident set size"). Loading the embedding space peaks higher than
the streaming that follows, so the streaming part is measured too: once the command prints its
guarantee (the space is loaded, the stream starts) the process's peak is reset (``5`` written to
``/proc/PID/clear_refs``) and its ``VmHWM`` read every 20 ms until it ends. A run on a one-line
file gives the cost of loading alone. Writes ``benchmarks/results/streaming.json`` and ``.md``.

    python benchmarks/bench_streaming.py                    # 100 MB and 1 GB (tens of minutes)
    python benchmarks/bench_streaming.py --sizes 10 100     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MB = 1_000_000
COMMAND = ["--top", "50000", "--words", "alpha", "-m", "tem", "-e", "10", "--seed", "0"]


def sample_text(n_bytes: int, rng: np.random.Generator, line_breaks: bool = True) -> bytes:
    """About ``n_bytes`` of text from the GloVe vocabulary (a Zipf-like draw of its words)."""
    import densitydp as dd

    vocabulary = dd.load_glove(top=50_000, words="alpha").vocabulary
    words = np.array([*vocabulary[:50_000], "Kowalski"])
    ranks = np.minimum(rng.zipf(1.3, size=n_bytes // 5), len(words)) - 1
    chosen = words[ranks].tolist()
    capital = rng.random(len(chosen)) < 0.05
    after = rng.choice(
        [" ", " ", " ", " ", " ", ", ", ". ", "\n" if line_breaks else " "],
        size=len(chosen),
        p=[0.2, 0.2, 0.2, 0.1, 0.1, 0.08, 0.04, 0.08],
    ).tolist()
    parts = []
    for word, cap, gap in zip(chosen, capital.tolist(), after, strict=True):
        parts.append(word.title() if cap else word)
        parts.append(gap)
    return "".join(parts).encode("utf-8")[:n_bytes]


def write_file(path: Path, size: int, block: bytes) -> None:
    with open(path, "wb") as stream:
        written = 0
        while written < size:
            piece = block[: size - written]
            stream.write(piece)
            written += len(piece)


def peak_rss(input_path: Path, output_path: Path) -> dict[str, float]:
    """Run ``densitydp perturb`` on ``input_path`` in a fresh process: peak RSS and time."""
    arguments = [sys.executable, "-m", "densitydp.cli", "perturb", *COMMAND, "--no-progress"]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*arguments, str(input_path), "-o", str(output_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = b""
    while b"guarantee:" not in stderr:  # the space is loaded: the stream starts
        line = process.stderr.readline()
        if not line:
            break
        stderr += line
    streaming_started = time.perf_counter()
    status_file = f"/proc/{process.pid}/status"
    with open(f"/proc/{process.pid}/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak RSS (VmHWM)
    stream_peak_kb = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(status_file) as fields:
                for field in fields:
                    if field.startswith("VmHWM:"):
                        stream_peak_kb = max(stream_peak_kb, int(field.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.02)
    stderr += process.stderr.read()
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"perturb failed on {input_path}: {stderr.decode()[-2000:]}")
    size = input_path.stat().st_size
    return {
        "input_bytes": size,
        "output_bytes": output_path.stat().st_size,
        "peak_rss_mb": usage.ru_maxrss * 1024 / MB,  # ru_maxrss is in KiB on Linux
        "streaming_peak_rss_mb": stream_peak_kb * 1024 / MB,
        "seconds": seconds,
        "streaming_seconds": time.perf_counter() - streaming_started,
        "mb_per_second": size / MB / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="MB")
    parser.add_argument("--long-line", type=int, default=100, help="MB of one line")
    parser.add_argument("--folder", default=None, help="where the files go (default: a temp)")
    options = parser.parse_args()
    os.environ.setdefault("DENSITYDP_CACHE", tempfile.mkdtemp(prefix="densitydp-bench-cache-"))
    folder = Path(options.folder or tempfile.mkdtemp(prefix="densitydp-bench-streaming-"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    block = sample_text(8 * MB, rng)
    long_block = sample_text(8 * MB, rng, line_breaks=False)
    cases: list[tuple[str, Path, int, bytes]] = [
        ("one line of text (loading the space)", folder / "tiny.txt", 200, block),
    ]
    for size in options.sizes:
        cases.append((f"{size:,} MB of lines", folder / f"lines_{size}.txt", size * MB, block))
    long = options.long_line
    cases.append(
        (f"{long:,} MB in one line", folder / f"one_line_{long}.txt", long * MB, long_block)
    )
    cases.append((f"{long:,} MB of NUL bytes", folder / f"zeros_{long}.txt", long * MB, b"\0"))
    rows = []
    try:
        for label, path, size, content in cases:
            if content == b"\0":
                with open(path, "wb") as stream:
                    stream.truncate(size)
            else:
                write_file(path, size, content)
            if path.name == "tiny.txt":
                path.write_bytes(content[: content.index(b"\n") + 1])
            measured = peak_rss(path, folder / "out.txt")
            rows.append({"case": label, **measured})
            print(f"{label}: {measured}", flush=True)
            path.unlink()
            (folder / "out.txt").unlink()
    finally:
        for leftover in folder.glob("*.txt"):
            leftover.unlink()
    by_size = {r["input_bytes"]: r for r in rows if "of lines" in r["case"]}
    sizes = sorted(by_size)
    ratio = by_size[sizes[-1]]["peak_rss_mb"] / by_size[sizes[0]]["peak_rss_mb"]
    streaming_ratio = (
        by_size[sizes[-1]]["streaming_peak_rss_mb"] / by_size[sizes[0]]["streaming_peak_rss_mb"]
    )
    result = {
        "command": "densitydp perturb " + " ".join(COMMAND) + " --no-progress FILE -o OUT",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "densitydp": metadata.version("densitydp"),
            "numpy": np.__version__,
        },
        "runs": rows,
        "largest_over_smallest_peak_rss": ratio,
        "largest_over_smallest_streaming_peak_rss": streaming_ratio,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "streaming"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"Peak memory of `{result['command']}` ({result['date']}, {os.cpu_count()} CPUs, "
        "shared machine; peak RSS from `os.wait4`, as `/usr/bin/time -v` reports it)",
        "",
        "| input | bytes | peak RSS (MB) | peak RSS while streaming (MB) | seconds | MB/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['input_bytes']:,} | {row['peak_rss_mb']:.0f} | "
            f"{row['streaming_peak_rss_mb']:.0f} | {row['seconds']:.0f} | "
            f"{row['mb_per_second']:.2f} |"
        )
    lines += [
        "",
        f"Largest file over smallest: peak RSS x {ratio:.3f}, peak RSS while streaming "
        f"x {streaming_ratio:.3f}.",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
