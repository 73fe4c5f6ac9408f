#!/usr/bin/env python3
"""Exact Laplace decoding at low epsilon: the PCA cascade against today's decoder (neighbour rows,
then the exact blocked search) and a plain-numpy brute force (chunked float32 matmul + argmin, as
in bench_laplace_pruning.py), in one process, on the same noisy points.

    python benchmarks/bench_laplace_cascade.py [--n-words 50000 400000] [--eps 10 20]

For each space and epsilon: tokens/s of each decoder (median of 3 runs over a 10,000-token stream
uniform over the 5,000 most frequent words, seed 12345), the cascade's ratio to each, and whether
the cascade's outputs equal today's exact decoder's (and how many differ from the float32 brute
force, which is not exact).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import densitydp as dd
from densitydp.mechanisms import _cascade

RESULTS = Path(__file__).resolve().parent / "results"


class _WithoutCascade(dd.MultivariateLaplace):
    """The decoder before the cascade: neighbour rows, then ``space.nearest``."""

    def _cascade(self) -> None:
        return None


def numpy_reference(vectors: np.ndarray, points: np.ndarray, block: int = 1 << 25) -> np.ndarray:
    squared = np.einsum("ij,ij->i", vectors, vectors)
    rows = max(1, block // len(vectors))
    out = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), rows):
        scores = points[start : start + rows].astype(np.float32) @ vectors.T
        scores *= -2.0
        scores += squared
        out[start : start + rows] = scores.argmin(axis=1)
    return out


def timed(function, *args) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-words", type=int, nargs="+", default=[50_000, 400_000])
    parser.add_argument("--eps", type=float, nargs="+", default=[10.0, 20.0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stream = np.random.default_rng(12345).integers(0, 5_000, size=args.tokens)
    rows = []
    for n_words in args.n_words:
        space = dd.load_glove(top=n_words) if n_words < 400_000 else dd.load_glove()
        for epsilon in args.eps:
            cascade_mech = dd.MultivariateLaplace(space, epsilon)
            today = _WithoutCascade(space, epsilon)  # rows, then space.nearest
            started = time.perf_counter()
            cascade_mech._cascade()
            build = time.perf_counter() - started
            warm = cascade_mech.noise(64, rng=99)
            points = space.vectors[stream[:64]].astype(np.float64) + warm
            radii = np.linalg.norm(warm, axis=1)
            cascade_mech.decode(stream[:64], points, radii)  # JIT
            today.decode(stream[:64], points, radii)
            space.neighbors(cascade_mech.table_k, word_ids=stream, progress=False)  # rows, kept
            times: dict[str, list[float]] = {"numpy": [], "today": [], "cascade": []}
            differ_today = differ_numpy = undecided = 0
            for rep in range(args.repeats):
                noise = cascade_mech.noise(len(stream), rng=rep)
                points = space.vectors[stream].astype(np.float64) + noise
                radii = np.linalg.norm(noise, axis=1)
                seconds, brute = timed(numpy_reference, space.vectors, points)
                times["numpy"].append(seconds)
                seconds, exact = timed(today.decode, stream, points, radii)
                times["today"].append(seconds)
                seconds, ours = timed(cascade_mech.decode, stream, points, radii)
                times["cascade"].append(seconds)
                differ_today += int(np.sum(ours != exact))
                differ_numpy += int(np.sum(ours != brute))
                if rep == 0:
                    found = _cascade.nearest(cascade_mech._cascade(), points)[1]
                    undecided = int(np.sum(~found))
            tps = {name: len(stream) / statistics.median(value) for name, value in times.items()}
            row = {
                "n_words": n_words,
                "epsilon": epsilon,
                **{f"{name}_tps": value for name, value in tps.items()},
                "cascade_over_numpy": tps["cascade"] / tps["numpy"],
                "cascade_over_today": tps["cascade"] / tps["today"],
                "today_over_numpy": tps["today"] / tps["numpy"],
                "differ_from_today": differ_today,
                "differ_from_float32_brute_force": differ_numpy,
                "undecided_by_cascade": undecided,
                "build_seconds": build,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        f"Exact Laplace decoding, PCA cascade ({time.strftime('%Y-%m-%d %H:%M')}, one process, "
        f"{args.tokens:,} tokens uniform over the 5,000 most frequent words, median of "
        f"{args.repeats})",
        "",
        "`python benchmarks/bench_laplace_cascade.py --n-words "
        + " ".join(str(n) for n in args.n_words)
        + " --eps "
        + " ".join(f"{e:g}" for e in args.eps)
        + "`",
        "",
        "| words | epsilon | numpy brute force tok/s | today tok/s | cascade tok/s | "
        "cascade / numpy | cascade / today | today / numpy | outputs differing from today "
        "| undecided (fell back) | build s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['n_words']:,} | {r['epsilon']:g} | {r['numpy_tps']:,.0f} | {r['today_tps']:,.0f} "
        f"| {r['cascade_tps']:,.0f} | {r['cascade_over_numpy']:.2f} | "
        f"{r['cascade_over_today']:.2f} | {r['today_over_numpy']:.2f} | "
        f"{r['differ_from_today']} | {r['undecided_by_cascade']} | {r['build_seconds']:.1f} |"
        for r in rows
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "laplace_cascade.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "laplace_cascade.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
