#!/usr/bin/env python3
"""Words outside the vocabulary on a real corpus, and what the privacy report costs.

    python benchmarks/text_privacy.py [--repeats 5] [--lines N]

1. Unknown-token shares: the word tokens of every Rotten Tomatoes text (12,808 critic
   snippets, ``dd.load_dataset``) that each GloVe slice does not hold (all 400,000 words, the
   50,000 and 5,000 most frequent, and the same with ``words="alpha"``), with the lookup's case
   back-off (exact, lower, Title, UPPER, case-folded) and with exact-or-lower lookup only (the
   lookup before the back-off). Also the share of types (distinct unknown words).
2. Overhead of the report on ``perturb_file`` throughput: the texts (``--lines``: the first N)
   written one per line, perturbed by TEM (epsilon 4), the truncated Gumbel (epsilon 150) and
   the multivariate Laplace (epsilon 10) on ``load_glove(top=50_000, words="alpha")``. Per
   repetition a fresh space and mechanism: two runs without the report (the first warms the
   mechanism's caches), one with it (the farthest-word cache is cold: every distinct word is
   searched), a second with it (the cache warm, as for the next file of a corpus), one more
   without; the overheads are medians over repetitions of a report run's time over the median
   of the runs without it, minus 1. Results go to
   benchmarks/results/text_privacy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import densitydp as dd
from densitydp.mechanisms import build_mechanism

RESULTS = Path(__file__).resolve().parent / "results"
SLICES = (
    ("all 400,000", {}),
    ("top 50,000", {"top": 50_000}),
    ("top 5,000", {"top": 5_000}),
    ("alpha, all", {"words": "alpha"}),
    ("alpha, top 50,000", {"top": 50_000, "words": "alpha"}),
    ("alpha, top 5,000", {"top": 5_000, "words": "alpha"}),
)
MECHANISMS = (("tem", 4.0), ("gumbel", 150.0), ("laplace", 10.0))


def unknown_shares(texts: list[str]) -> list[dict[str, Any]]:
    words = [w for text in texts for w in dd.tokenize(text)[1::2]]
    rows = []
    for label, options in SLICES:
        vocabulary = dd.load_glove(**options).vocabulary
        index = {w: i for i, w in enumerate(vocabulary)}
        backoff = np.array([vocabulary.lookup(w) < 0 for w in words])
        lower_only = np.array([w not in index and w.lower() not in index for w in words])
        rows.append(
            {
                "slice": label,
                "n_words": len(vocabulary),
                "tokens": len(words),
                "unknown_share": float(backoff.mean()),
                "unknown_share_lower_only": float(lower_only.mean()),
                "unknown_types": len({w for w, b in zip(words, backoff, strict=True) if b}),
                "types": len(set(words)),
            }
        )
        print(rows[-1], flush=True)
    return rows


def overhead(path: Path, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, epsilon in MECHANISMS:
        cold, warm, plain, reported = [], [], [], []
        for repeat in range(repeats):
            space = dd.load_glove(top=50_000, words="alpha")
            mechanism = build_mechanism(name, space, epsilon)

            def run(report: bool, mechanism: dd.Mechanism = mechanism, seed: int = repeat) -> float:
                started = time.perf_counter()
                dd.perturb_file(
                    path, path.with_suffix(".out"), mechanism, rng=seed, progress=False,
                    return_report=report,
                )  # fmt: skip
                return time.perf_counter() - started

            run(False)  # warms the mechanism's own caches (neighbour rows, tables)
            without = [run(False)]
            first = run(True)  # the farthest-word cache of this fresh space is cold
            second = run(True)  # ... and now warm, as for the next file of a corpus
            without.append(run(False))
            baseline = float(np.median(without))
            plain.append(baseline)
            reported.append(first)
            cold.append(first / baseline - 1.0)
            warm.append(second / baseline - 1.0)
        _, report = dd.perturb_file(
            path, path.with_suffix(".out"), mechanism, rng=0, progress=False, return_report=True
        )
        rows.append(
            {
                "mechanism": name,
                "epsilon": epsilon,
                "tokens": report.n_tokens,
                "seconds_without": float(np.median(plain)),
                "seconds_with_cold": float(np.median(reported)),
                "overhead_cold": float(np.median(cold)),
                "overhead_warm": float(np.median(warm)),
                "overhead_cold_all": cold,
                "overhead_warm_all": warm,
                "tokens_per_second": report.n_tokens / float(np.median(plain)),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--lines", type=int, default=None, help="Texts in the throughput file (default: all)."
    )
    args = parser.parse_args()
    started = time.perf_counter()
    data = dd.load_dataset("rotten_tomatoes")
    texts = [*data.train[0], *data.test[0]]
    shares = unknown_shares(texts)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rotten_tomatoes.txt"
        corpus = [t.replace("\n", " ") + "\n" for t in texts[: args.lines]]
        path.write_text("".join(corpus), encoding="utf-8")
        costs = overhead(path, args.repeats)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    result = {
        "command": "python benchmarks/text_privacy.py",
        "date": stamp,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "unknown_shares": shares,
        "report_overhead": costs,
        "seconds": time.perf_counter() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text_privacy.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Rotten Tomatoes, all {len(texts):,} texts ({stamp}; `python benchmarks/text_privacy.py`)",
        "",
        "| GloVe slice | words | unknown tokens | exact-or-lower lookup | unknown types |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in shares:
        lines.append(
            f"| {row['slice']} | {row['n_words']:,} | {row['unknown_share']:.2%} | "
            f"{row['unknown_share_lower_only']:.2%} | {row['unknown_types']:,} of "
            f"{row['types']:,} |"
        )
    lines += [
        "",
        f"Report overhead on `perturb_file` ({len(corpus):,} texts, one per line; "
        f"{args.repeats} repetitions, medians; alpha top 50,000; cold: the first report on a "
        "fresh space, which searches the farthest word of every distinct word; warm: the next "
        "call on the same space)",
        "",
        "| mechanism | epsilon | tokens | s without | s with (cold) | tokens/s | overhead cold "
        "| overhead warm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in costs:
        lines.append(
            f"| {row['mechanism']} | {row['epsilon']:g} | {row['tokens']:,} | "
            f"{row['seconds_without']:.2f} | {row['seconds_with_cold']:.2f} | "
            f"{row['tokens_per_second']:,.0f} | {row['overhead_cold']:+.1%} | "
            f"{row['overhead_warm']:+.1%} |"
        )
    (RESULTS / "text_privacy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
