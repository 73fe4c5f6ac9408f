#!/usr/bin/env python3
"""Audit speed on all 400,000 GloVe words: seconds per pair at 10 million samples per word
(20 million per pair), for the truncated Gumbel and TEM, one pair alone and four pairs together
(the samplers run in parallel over the words of the pairs).

    python benchmarks/bench_audit.py [--samples 10000000]

The truncated Gumbel needs the exact minimum and maximum distance of the space: the cached
all-pairs pass (run `densitydp info` once, or set DENSITYDP_CACHE to a folder that has it).
Median of 3 runs per setting; results go to benchmarks/results/audit_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import densitydp as dd

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10_000_000, help="Samples per word.")
    args = parser.parse_args()
    space = dd.load_glove()
    words = space.ids(["king", "queen", "paris", "france", "good", "bad", "river", "lake"])
    pairs = words.reshape(-1, 2)
    gumbel = dd.TruncatedGumbel(space, scale=1.0)
    mechanisms = {
        "truncated Gumbel": dd.TruncatedGumbel(space, epsilon=1.5 * gumbel.min_epsilon),
        "TEM (epsilon 10)": dd.TruncatedExponential(space, 10.0),
    }
    rows = []
    for name, mechanism in mechanisms.items():
        dd.audit(mechanism, pairs=pairs[:1], n_samples=10_000, rng=0, progress=False)  # warm-up
        for n_pairs in (1, 4):
            times = []
            for rep in range(3):
                started = time.perf_counter()
                report = dd.audit(
                    mechanism, pairs=pairs[:n_pairs], n_samples=args.samples, rng=rep,
                    progress=False,
                )  # fmt: skip
                times.append(time.perf_counter() - started)
            seconds = statistics.median(times)
            row = {
                "mechanism": repr(mechanism),
                "name": name,
                "pairs": n_pairs,
                "samples_per_word": args.samples,
                "seconds": seconds,
                "seconds_per_pair": seconds / n_pairs,
                "samples_per_second": 2 * args.samples * n_pairs / seconds,
                "verdict": report.verdict(),
            }
            rows.append(row)
            print(
                f"{name}: {n_pairs} pair(s) x 2 words x {args.samples:,} samples in "
                f"{seconds:.2f} s ({row['seconds_per_pair']:.2f} s per pair, "
                f"{row['samples_per_second'] / 1e6:.2f} M samples/s)",
                flush=True,
            )
    lines = [
        f"Audit speed on all {len(space):,} GloVe words ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"median of 3; {args.samples:,} samples per word, {2 * args.samples:,} per pair)",
        "",
        "| mechanism | pairs | seconds | seconds per pair | samples/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['pairs']} | {row['seconds']:.2f} | "
            f"{row['seconds_per_pair']:.2f} | {row['samples_per_second'] / 1e6:.2f} M |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit_speed.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "audit_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
