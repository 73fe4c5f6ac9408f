#!/usr/bin/env python3
"""Where the neighbour rows decide the exact Laplace decoding: densitydp against a plain-numpy
exact brute force (chunked float32 matmul + argmin, as in peers/peer_bench.py), in one process.

    python benchmarks/bench_laplace_pruning.py [--n-words 50000] [--eps 10 20 40 80 160]

Reports tokens/s of both (median of 3 runs over the same 10,000-token stream: uniform over the
5,000 most frequent words, seed 12345), their ratio, and the fraction of tokens whose 64-wide
exact neighbour row decided the nearest word (2 ||z|| below the row's reach).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import densitydp as dd

RESULTS = Path(__file__).resolve().parent / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-words", type=int, default=50_000)
    parser.add_argument("--eps", type=float, nargs="+", default=[10.0, 20.0, 40.0, 80.0, 160.0])
    args = parser.parse_args()
    space = dd.load_glove(top=args.n_words)
    stream = np.random.default_rng(12345).integers(0, 5_000, size=10_000)
    rows = []
    for epsilon in args.eps:
        mechanism = dd.MultivariateLaplace(space, epsilon)
        mechanism.sample(stream, rng=0)  # warm-up: JIT and neighbour rows
        ours, reference = [], []
        for rep in range(3):
            started = time.perf_counter()
            mechanism.sample(stream, rng=rep)
            ours.append(len(stream) / (time.perf_counter() - started))
            noise = mechanism.noise(len(stream), rng=rep)
            points = space.vectors[stream].astype(np.float64) + noise
            started = time.perf_counter()
            numpy_reference(space.vectors, points)
            reference.append(len(stream) / (time.perf_counter() - started))
        table = space.neighbors(64, word_ids=stream, progress=False)
        reach = table.rows(stream)[1][:, -1]
        decided = float(np.mean(2 * np.linalg.norm(noise, axis=1) < reach * (1 - 1e-6)))
        row = {
            "epsilon": epsilon,
            "densitydp_tps": statistics.median(ours),
            "numpy_tps": statistics.median(reference),
            "decided_by_rows": decided,
        }
        row["ratio"] = row["densitydp_tps"] / row["numpy_tps"]
        rows.append(row)
        print(
            f"eps {epsilon:g}: densitydp {row['densitydp_tps']:,.0f} tok/s, numpy "
            f"{row['numpy_tps']:,.0f} tok/s, ratio {row['ratio']:.1f}, rows decided "
            f"{decided:.1%}",
            flush=True,
        )
    lines = [
        f"Exact Laplace decoding on the first {args.n_words:,} GloVe words "
        f"({time.strftime('%Y-%m-%d %H:%M')}, one process)",
        "",
        "| epsilon | densitydp tokens/s | numpy brute force tokens/s | ratio | "
        "tokens decided by the neighbour row |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['epsilon']:g} | {r['densitydp_tps']:,.0f} | {r['numpy_tps']:,.0f} | "
        f"{r['ratio']:.1f} | {r['decided_by_rows']:.1%} |"
        for r in rows
    ]
    RESULTS.mkdir(exist_ok=True)
    stem = f"laplace_pruning_{args.n_words}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
