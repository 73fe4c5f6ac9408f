#!/usr/bin/env python3
"""Issue 14: SanText, SanText+, CusText and CusText+ against the exponential mechanism, in one run.

    python benchmarks/bench_field_sampling.py                       # 50,000 and 400,000 words
    python benchmarks/bench_field_sampling.py --vocab 50000 --reps 3

The stream of ``benchmarks/bench_mechanisms.py``: tokens drawn uniformly (seed 12345) from the
5,000 most frequent GloVe words; the "1M stream" is 1,000,000 tokens perturbed in calls of
100,000, the "10k call" one call of 10,000 tokens. Epsilon 1 and 3 (the values both papers use
with GloVe) and 10. Each mechanism is built once per (space, epsilon) and warmed up (JIT,
neighbour rows, SanText+'s rows to the sensitive words) on the first 100,000 tokens of the
stream; the build and the warm-up are reported apart (``build_s``: construction, which for
CusText's conservative mapping is the grouping of the whole vocabulary; ``warm_s``: the first
call). Medians of ``--reps`` runs; mechanisms alternate within a repetition.

Mechanisms: ``exponential`` (:class:`ExponentialMechanism`, the reference), ``santext``
(its law and its samplers), ``santext-plus`` (p 0.3, w 0.9: on this stream every token is a
non-sensitive word, 30 % of them sanitised), ``custext`` (K 20, conservative), ``custext-top-k``
and ``custext-plus`` (sklearn's English stop words).
Writes ``benchmarks/results/field_sampling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STREAM_SEED, TOP, SHORT, LONG, CALL = 12345, 5_000, 10_000, 1_000_000, 100_000


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def speed(mechanism, tokens: np.ndarray, call: int, rep: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(tokens), call):
        mechanism.sample(tokens[start : start + call], rng=rep * 1_000 + start // call)
    return len(tokens) / (time.perf_counter() - started)


def builders(dd):
    def quiet_top_k(space, epsilon):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dd.PrivacyWarning)
            return dd.CusText(space, epsilon, mapping="top-k")

    return {
        "exponential": dd.ExponentialMechanism,
        "santext": dd.SanText,
        "santext-plus": dd.SanTextPlus,
        "custext": dd.CusText,
        "custext-top-k": quiet_top_k,
        "custext-plus": dd.CusTextPlus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, nargs="+", default=[50_000, 400_000])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--mechanisms", nargs="+", default=None)
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the cells of other vocabulary sizes already in the results file",
    )
    args = parser.parse_args()

    import densitydp as dd

    short = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=SHORT)
    long = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=LONG)
    chosen = builders(dd)
    if args.mechanisms:
        chosen = {name: chosen[name] for name in args.mechanisms}
    cells: list[dict] = []
    earlier: list[dict] = []
    commands = []
    if args.append and (RESULTS / "field_sampling.json").exists():
        previous = json.loads((RESULTS / "field_sampling.json").read_text())
        earlier = [c for c in previous["cells"] if c["vocab"] not in args.vocab]
        commands = previous["meta"].get("commands", [previous["meta"]["command"]])
    for n_words in args.vocab:
        space = dd.load_glove(top=None if n_words == 400_000 else n_words)
        conservative_build = None
        for epsilon in args.epsilons:
            mechanisms, build, warm = {}, {}, {}
            for name, make in chosen.items():
                started = time.perf_counter()
                mechanisms[name] = make(space, epsilon)
                build[name] = time.perf_counter() - started
                started = time.perf_counter()
                speed(mechanisms[name], long[:CALL], CALL, 99)
                speed(mechanisms[name], short, SHORT, 99)
                warm[name] = time.perf_counter() - started
                log(n_words, epsilon, name, f"build {build[name]:.2f} s, warm {warm[name]:.2f} s")
            if "custext" in build and conservative_build is None:
                conservative_build = build["custext"]
            runs = {name: {"long": [], "short": []} for name in mechanisms}
            for rep in range(args.reps):
                for name, mechanism in mechanisms.items():
                    runs[name]["short"].append(speed(mechanism, short, SHORT, rep))
                    runs[name]["long"].append(speed(mechanism, long, CALL, rep))
                latest = {n: round(r["long"][-1]) for n, r in runs.items()}
                log(n_words, epsilon, "rep", rep, latest)
            reference = (
                statistics.median(runs["exponential"]["long"]) if "exponential" in runs else None
            )
            for name in mechanisms:
                cell = {
                    "vocab": n_words,
                    "epsilon": epsilon,
                    "mechanism": name,
                    "build_s": build[name],
                    "warm_s": warm[name],
                    "tokens_per_s_1m": statistics.median(runs[name]["long"]),
                    "tokens_per_s_10k": statistics.median(runs[name]["short"]),
                    "runs_1m": runs[name]["long"],
                    "runs_10k": runs[name]["short"],
                }
                if reference:
                    cell["vs_exponential_1m"] = cell["tokens_per_s_1m"] / reference
                cells.append(cell)
        del space
    cells = sorted(earlier + cells, key=lambda c: (c["vocab"], c["epsilon"]))
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    meta = {
        "command": command,
        "commands": [*commands, f"{command} ({time.strftime('%Y-%m-%d %H:%M')})"],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "stream": f"uniform over the {TOP} most frequent words, seed {STREAM_SEED}",
        "reps": args.reps,
    }
    RESULTS.mkdir(exist_ok=True)
    payload = {"meta": meta, "cells": cells}
    (RESULTS / "field_sampling.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# SanText, SanText+, CusText, CusText+ against the exponential mechanism",
        "",
        f"`{'`; `'.join(meta['commands'])}` ({meta['machine']}, {meta['cpus']} CPUs, shared); "
        f"stream {meta['stream']}; medians of `--reps` runs. Tokens/s; `x EM`: the 1M "
        "stream's tokens/s over the exponential mechanism's at the same epsilon.",
        "",
        "| words | epsilon | mechanism | 1M stream | 10k call | x EM (1M) | build s "
        "| first call s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        ratio = cell.get("vs_exponential_1m")
        lines.append(
            f"| {cell['vocab']:,} | {cell['epsilon']:g} | {cell['mechanism']} | "
            f"{cell['tokens_per_s_1m']:,.0f} | {cell['tokens_per_s_10k']:,.0f} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | {cell['build_s']:.2f} | "
            f"{cell['warm_s']:.2f} |"
        )
    (RESULTS / "field_sampling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
