#!/usr/bin/env python3
"""Issue 16, target 2: the exponential mechanism and TEM at low epsilon on large vocabularies.

    python benchmarks/bench_exponential_rows.py                      # 400,000 words, epsilon 5
    python benchmarks/bench_exponential_rows.py --vocab 50000 400000 --eps 5 10 20

The stream of ``benchmarks/bench_mechanisms.py``: tokens drawn uniformly (seed 12345) from the
5,000 most frequent GloVe words, perturbed in calls of 100,000 tokens (the "1M stream") and one
call of 10,000 tokens. Two samplers, measured in the same run, alternating:

* ``cost rule``: rejection with the uniform envelope when its expected rounds cost less than a
  full row, else a full row (what the mechanisms do);
* ``rows only``: the cost rule forced to full rows (``ROUND_COST = inf``).

Tokens per second are medians over ``--reps`` repeats; ``rows only`` is timed on
``--rows-calls`` calls of 100,000 tokens per repeat (its speed does not depend on which calls).
Writes ``benchmarks/results/exponential_samplers.{json,md}``.

``benchmarks/results/exponential_rows.{json,md}`` is the before/after record of issue 16: the
rule before it (rejection from the 64-wide row only when the outside words' proposal mass was at
most 4 x the row's, with the old rejection kernel) against the cost rule, measured in one run at
commit b6a6c78, the last that still held the old rule (reproduce with
``git worktree add /tmp/b6a6c78 b6a6c78`` and that tree's ``benchmarks/bench_exponential_rows.py
--eps 5 10 20 --no-rows-only``).
"""

from __future__ import annotations

import argparse
import json
import math
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


def run(mechanism, sampler: str, tokens: np.ndarray, calls: int, rep: int) -> float:
    """Tokens per second of the first ``calls`` calls of CALL tokens of ``tokens`` (``calls=0``:
    one call of all of ``tokens``)."""
    from densitydp.mechanisms import exponential

    exponential.ROUND_COST = math.inf if sampler == "rows only" else ROUND_COST
    try:
        started = time.perf_counter()
        done = 0
        for call in range(max(calls, 1)):
            chunk = tokens[call * CALL : (call + 1) * CALL] if calls else tokens
            mechanism.sample(chunk, rng=rep * 1_000 + call)
            done += len(chunk)
        return done / (time.perf_counter() - started)
    finally:
        exponential.ROUND_COST = ROUND_COST


def main() -> None:
    global ROUND_COST
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, nargs="+", default=[400_000])
    parser.add_argument("--eps", type=float, nargs="+", default=[5.0])
    parser.add_argument("--mechanisms", nargs="+", default=["exponential", "tem"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows-calls", type=int, default=1)
    args = parser.parse_args()

    import densitydp as dd
    from densitydp.mechanisms import exponential

    ROUND_COST = exponential.ROUND_COST
    short = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=SHORT)
    long = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=LONG)
    samplers = ["cost rule", "rows only"]
    cells = []
    for n_words in args.vocab:
        space = dd.load_glove(top=None if n_words == 400_000 else n_words)
        for name in args.mechanisms:
            for epsilon in args.eps:
                mechanism = (
                    dd.ExponentialMechanism(space, epsilon)
                    if name == "exponential"
                    else dd.TruncatedExponential(space, epsilon)
                )
                for sampler in samplers:  # warm-up: JIT, neighbour rows
                    run(mechanism, sampler, short[:2_000], 0, 99)
                speeds: dict[str, dict[str, list[float]]] = {
                    s: {"short": [], "long": []} for s in samplers
                }
                for rep in range(args.reps):
                    for sampler in samplers:
                        calls = args.rows_calls if sampler == "rows only" else LONG // CALL
                        speeds[sampler]["long"].append(run(mechanism, sampler, long, calls, rep))
                        speeds[sampler]["short"].append(run(mechanism, sampler, short, 0, rep))
                        log(
                            f"V={n_words} {name} eps={epsilon} {sampler} rep {rep}: "
                            f"{speeds[sampler]['long'][-1]:,.0f} tok/s (1M stream), "
                            f"{speeds[sampler]['short'][-1]:,.0f} (10k)"
                        )
                for sampler in samplers:
                    cells.append(
                        {
                            "V": n_words,
                            "mech": name,
                            "eps": epsilon,
                            "sampler": sampler,
                            "tps_long": statistics.median(speeds[sampler]["long"]),
                            "tps_short": statistics.median(speeds[sampler]["short"]),
                            "runs_long": speeds[sampler]["long"],
                            "runs_short": speeds[sampler]["short"],
                        }
                    )
    report = {
        "benchmark": "exponential / TEM at low epsilon (issue 16, target 2)",
        "command": "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "round_cost": ROUND_COST,
        "results": cells,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "exponential_samplers.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        f"Tokens per second, median of {args.reps} ({report['date']}, {report['cpus']} CPUs, "
        "machine shared: compare within a row)",
        "",
        f"    {report['command']}",
        "",
        "| mechanism | V | epsilon | sampler | 1M stream (calls of 100k) | 10k call | "
        "1M stream vs rows only |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for cell in cells:
        rows = next(
            c
            for c in cells
            if c["sampler"] == "rows only"
            and (c["V"], c["mech"], c["eps"]) == (cell["V"], cell["mech"], cell["eps"])
        )
        lines.append(
            f"| {cell['mech']} | {cell['V']:,} | {cell['eps']:g} | {cell['sampler']} | "
            f"{cell['tps_long']:,.0f} | {cell['tps_short']:,.0f} | "
            f"{cell['tps_long'] / rows['tps_long']:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / "exponential_samplers.md").write_text(text)
    print(text)


ROUND_COST = 20.0

if __name__ == "__main__":
    main()
