#!/usr/bin/env python3
"""Tokens per second of the Mahalanobis and Vickrey mechanisms, next to MultivariateLaplace in the
same run, on GloVe 6B-50d.

    python benchmarks/bench_field_embedding.py                          # 50,000 words
    python benchmarks/bench_field_embedding.py --n-words 400000 --time-cap 30

A run replaces the cells (mechanism, V, epsilon) it measures in the results and keeps the others.

Workload (as in ``bench_mechanisms.py``): tokens drawn uniformly (seed 12345) from the 5,000 most
frequent GloVe words, over a vocabulary of the first V words. Each mechanism perturbs a
10,000-token stream (one call, median of ``--reps``) and then as much of a 1,000,000-token stream
as fits in ``--time-cap`` seconds (calls of 100,000 tokens; the tokens/s are those of the part
done), after one warm-up call (JIT compilation, the exact neighbour rows of the 5,000 distinct
words). Also reported: the fraction of tokens returned unchanged (the N_w statistic over the
stream) and, for the Vickrey mechanisms, the fraction of tokens whose two nearest words the
neighbour row decides (the rest go to the exact full search, which sets the cost).

Writes ``benchmarks/results/field_embedding.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numba
import numpy as np

import densitydp as dd
from densitydp.mechanisms.base import neighbor_rows

RESULTS = Path(__file__).resolve().parent / "results"
STREAM_SEED = 12345
TOP = 5_000
SHORT = 10_000
LONG = 1_000_000
CALL = 100_000

MECHANISMS = {
    "laplace": lambda space, eps, args: dd.MultivariateLaplace(space, eps),
    "mahalanobis": lambda space, eps, args: dd.MahalanobisMechanism(space, eps, lam=args.lam),
    "vickrey": lambda space, eps, args: dd.VickreyMechanism(space, eps, threshold=args.threshold),
    "vickrey-mahalanobis": lambda space, eps, args: dd.VickreyMechanism(
        space, eps, threshold=args.threshold, lam=args.lam
    ),
}


def row_decided(mechanism: dd.VickreyMechanism, words: np.ndarray, seed: int) -> float:
    """Fraction of tokens whose neighbour row provably holds both nearest words (the rule of
    :meth:`VickreyMechanism.decode_pair`, on the noise of one draw)."""
    radii = np.linalg.norm(mechanism.noise(len(words), rng=seed), axis=1)
    unique, inverse = np.unique(words, return_inverse=True)
    _, distances = neighbor_rows(mechanism.space, unique, mechanism.table_k)
    reach = distances[:, -1] * (1.0 - 1e-6)
    return float(np.mean(2.0 * radii + distances[inverse, 1] < reach[inverse]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-words", type=int, nargs="+", default=[50_000])
    parser.add_argument("--eps", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument("--mechanisms", nargs="+", default=list(MECHANISMS))
    parser.add_argument("--lam", type=float, default=0.2)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--time-cap", type=float, default=30.0, help="Seconds per 1M cell.")
    parser.add_argument("--short-cap", type=float, default=120.0, help="Seconds per 10k cell.")
    parser.add_argument("--output", default="field_embedding")
    args = parser.parse_args()
    short = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=SHORT)
    long = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=LONG)
    cells = []
    for n_words in args.n_words:
        space = dd.load_glove(top=None if n_words >= 400_000 else n_words)
        for epsilon in args.eps:
            for name in args.mechanisms:
                started = time.perf_counter()
                mechanism = MECHANISMS[name](space, epsilon, args)
                setup = time.perf_counter() - started
                started = time.perf_counter()
                first = mechanism.sample(short, rng=0)  # warm-up: JIT, neighbour rows
                warm = time.perf_counter() - started
                short_tps = []
                spent = 0.0
                for rep in range(args.reps):
                    started = time.perf_counter()
                    mechanism.sample(short, rng=rep + 1)
                    elapsed = time.perf_counter() - started
                    short_tps.append(SHORT / elapsed)
                    spent += elapsed
                    if spent > args.short_cap:
                        break
                done, started = 0, time.perf_counter()
                while done < LONG and time.perf_counter() - started < args.time_cap:
                    mechanism.sample(long[done : done + CALL], rng=done)
                    done += CALL
                long_tps = min(done, LONG) / (time.perf_counter() - started)
                cell = {
                    "mechanism": name,
                    "V": len(space),
                    "epsilon": epsilon,
                    "repr": repr(mechanism),
                    "setup_s": setup,
                    "warmup_s": warm,
                    "tps_10k": statistics.median(short_tps),
                    "reps_10k": len(short_tps),
                    "tps_1m": long_tps,
                    "tokens_1m": int(min(done, LONG)),
                    "unchanged": float(np.mean(first == short)),
                }
                if isinstance(mechanism, dd.VickreyMechanism):
                    cell["row_decided"] = row_decided(mechanism, short, 0)
                cells.append(cell)
                print(
                    f"{name:20s} V={len(space):>7,} eps={epsilon:>4g}: "
                    f"{cell['tps_10k']:>12,.0f} tok/s (10k), {long_tps:>12,.0f} tok/s "
                    f"(1M stream, {cell['tokens_1m']:,} tokens), unchanged "
                    f"{cell['unchanged']:.3f}",
                    flush=True,
                )
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numba_threads": numba.get_num_threads(),
            "load_average": os.getloadavg(),
        },
        "workload": {
            "stream": f"uniform over the {TOP} most frequent words, seed {STREAM_SEED}",
            "short_tokens": SHORT,
            "long_tokens": LONG,
            "call": CALL,
            "time_cap_s": args.time_cap,
            "reps": args.reps,
            "lam": args.lam,
            "threshold": args.threshold,
        },
        "cells": cells,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.output}.json"
    if path.exists():  # keep the cells of the other vocabularies (runs at 50k and 400k apart)
        earlier = json.loads(path.read_text())
        measured = {(cell["mechanism"], cell["V"], cell["epsilon"]) for cell in cells}
        kept = [
            cell
            for cell in earlier["cells"]
            if (cell["mechanism"], cell["V"], cell["epsilon"]) not in measured
        ]
        if kept:
            order = list(MECHANISMS)
            report["cells"] = sorted(
                [*kept, *cells],
                key=lambda cell: (cell["V"], cell["epsilon"], order.index(cell["mechanism"])),
            )
            report["earlier_run"] = {
                "cells": sorted(
                    {f"{c['mechanism']} V={c['V']} eps={c['epsilon']:g}" for c in kept}
                ),
                "machine": earlier["machine"],
                "workload": earlier["workload"],
            }
    (RESULTS / f"{args.output}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.output}.md").write_text(table(report))
    print(table(report))


def table(report: dict) -> str:
    work = report["workload"]
    lines = [
        "# Mahalanobis and Vickrey mechanisms: tokens/s (benchmarks/bench_field_embedding.py)",
        "",
        f"Stream: {work['stream']}. 10k: one call of {work['short_tokens']:,} tokens, median of "
        f"up to {work['reps']} reps. 1M: calls of {work['call']:,} tokens of a "
        f"{work['long_tokens']:,}-token stream for at most {work['time_cap_s']:g} s (tokens "
        f"done in the last column). lam = {work['lam']:g}, threshold = {work['threshold']:g}. "
        f"numba threads: {report['machine']['numba_threads']}; load average (1/5/15 min) at "
        f"the end: {report['machine'].get('load_average')} (a shared 2-core machine: compare "
        "ratios within a run).",
    ]
    if "earlier_run" in report:
        earlier = report["earlier_run"]
        lines.append(
            f"Cells from an earlier run (load average {earlier['machine'].get('load_average')}): "
            f"{', '.join(earlier['cells'])}."
        )
    lines += [
        "",
        "| mechanism | V | epsilon | tokens/s (10k) | tokens/s (1M stream) | tokens done | "
        "x Laplace (10k) | unchanged | row-decided |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    laplace = {
        (c["V"], c["epsilon"]): c["tps_10k"] for c in report["cells"] if c["mechanism"] == "laplace"
    }
    for c in report["cells"]:
        base = laplace.get((c["V"], c["epsilon"]))
        ratio = f"{c['tps_10k'] / base:.2f}" if base else "-"
        decided = f"{c['row_decided']:.3f}" if "row_decided" in c else "-"
        lines.append(
            f"| {c['mechanism']} | {c['V']:,} | {c['epsilon']:g} | {c['tps_10k']:,.0f} | "
            f"{c['tps_1m']:,.0f} | {c['tokens_1m']:,} | {ratio} | {c['unchanged']:.3f} | "
            f"{decided} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
