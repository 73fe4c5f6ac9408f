#!/usr/bin/env python3
"""Issue 16, target 4: the truncated Gumbel sampler, before and after, in one run.

    python benchmarks/bench_gumbel_kernel.py                  # 50,000 and 400,000 words
    python benchmarks/bench_gumbel_kernel.py --vocab 50000

The stream of ``benchmarks/bench_mechanisms.py``: tokens drawn uniformly (seed 12345) from the
5,000 most frequent GloVe words; the "1M stream" is 1,000,000 tokens perturbed in calls of
100,000, the small stream one call of 10,000 tokens; epsilon 1.5 x and 4 x the calibration's
smallest meaningful one. ``before`` is the sampler of the previous commit
(``gumbel._KERNEL = "logs"``: numpy Poisson counts, 64-wide rows, two logarithms per candidate,
always parallel), ``after`` the exponential race (counts by inverse CDF, rows as wide as the
largest count, exponentials drawn by numpy, one multiply per candidate, serial below
``SERIAL_TOKENS``). Alternating, medians of ``--reps``. The 400,000-word space needs its exact
min / max distance (cached on disk after one all-pairs pass of about 3 minutes).
Writes ``benchmarks/results/gumbel_kernel.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STREAM_SEED, TOP, SHORT, LONG, CALL = 12345, 5_000, 10_000, 1_000_000, 100_000


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def speed(mechanism, kernel: str, tokens: np.ndarray, call: int, rep: int) -> float:
    from densitydp.mechanisms import gumbel

    gumbel._KERNEL = kernel
    try:
        started = time.perf_counter()
        for start in range(0, len(tokens), call):
            mechanism.sample(tokens[start : start + call], rng=rep * 1_000 + start // call)
        return len(tokens) / (time.perf_counter() - started)
    finally:
        gumbel._KERNEL = "race"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, nargs="+", default=[50_000, 400_000])
    parser.add_argument("--factors", type=float, nargs="+", default=[1.5, 4.0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    import densitydp as dd

    short = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=SHORT)
    long = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=LONG)
    kernels = {"before": "logs", "after": "race"}
    cells = []
    for n_words in args.vocab:
        space = dd.load_glove(top=None if n_words == 400_000 else n_words)
        floor = dd.TruncatedGumbel(space, scale=1.0).min_epsilon
        for factor in args.factors:
            mechanism = dd.TruncatedGumbel(space, epsilon=factor * floor)
            for kernel in kernels.values():  # warm-up: JIT, neighbour rows
                speed(mechanism, kernel, long[:CALL], CALL, 99)
                speed(mechanism, kernel, short, SHORT, 99)
            runs: dict[str, dict[str, list[float]]] = {
                name: {"long": [], "short": []} for name in kernels
            }
            for rep in range(args.reps):
                for name, kernel in kernels.items():
                    runs[name]["long"].append(speed(mechanism, kernel, long, CALL, rep))
                    runs[name]["short"].append(speed(mechanism, kernel, short, SHORT, rep))
            for name in kernels:
                cell = {
                    "V": n_words,
                    "eps": mechanism.epsilon,
                    "factor": factor,
                    "sampler": name,
                    "tps_long": statistics.median(runs[name]["long"]),
                    "tps_short": statistics.median(runs[name]["short"]),
                    "runs_long": runs[name]["long"],
                    "runs_short": runs[name]["short"],
                }
                log(
                    f"V={n_words} eps={mechanism.epsilon:.1f} {name}: "
                    f"{cell['tps_long']:,.0f} tok/s (1M stream), {cell['tps_short']:,.0f} (10k)"
                )
                cells.append(cell)
    report = {
        "benchmark": "truncated Gumbel sampler (issue 16, target 4)",
        "command": "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "results": cells,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gumbel_kernel.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        f"Tokens per second, median of {args.reps} ({report['date']}, {report['cpus']} CPUs, "
        "machine shared: compare within a row)",
        "",
        f"    {report['command']}",
        "",
        "| V | epsilon | sampler | 1M stream (calls of 100k) | 10k call | 1M / before | "
        "10k / before |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for cell in cells:
        before = next(
            c
            for c in cells
            if c["sampler"] == "before" and (c["V"], c["eps"]) == (cell["V"], cell["eps"])
        )
        lines.append(
            f"| {cell['V']:,} | {cell['eps']:.1f} | {cell['sampler']} | {cell['tps_long']:,.0f} "
            f"| {cell['tps_short']:,.0f} | {cell['tps_long'] / before['tps_long']:.2f}x | "
            f"{cell['tps_short'] / before['tps_short']:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / "gumbel_kernel.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
