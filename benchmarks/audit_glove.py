#!/usr/bin/env python3
"""Audit every mechanism at two epsilons on the 50,000 most frequent GloVe words.

    python benchmarks/audit_glove.py [--n-pairs 10] [--seed 0] [--only NAME ...]

Nearest pairs (words from the 10,000 most frequent), 200,000 samples per word (20,000 for the
exact-decoding Laplace and the density-aware Laplace), confidence 0.95. The density-aware
Laplace is the exact sampler (tilt 1, prior on every word). Results go to
benchmarks/results/audit_glove.{json,md} (with ``--only``: audit_glove_<names>.{json,md}):
one summary row per setting and the full tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import densitydp as dd
from densitydp.mechanisms import build_mechanism

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-pairs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", default=None, help="mechanism names to audit")
    args = parser.parse_args()
    space = dd.load_glove(top=50_000)
    minimum = dd.TruncatedGumbel(space, scale=1.0).min_epsilon
    settings = [
        ("laplace", 10.0, 20_000),
        ("laplace", 40.0, 20_000),
        ("exponential", 5.0, 200_000),
        ("exponential", 10.0, 200_000),
        ("tem", 5.0, 200_000),
        ("tem", 10.0, 200_000),
        ("gumbel", round(1.5 * minimum, 1), 200_000),
        ("gumbel", round(4.0 * minimum, 1), 200_000),
        ("prior-exponential", 5.0, 200_000),
        ("prior-exponential", 10.0, 200_000),
        ("density-laplace", 5.0, 20_000),
        ("density-laplace", 10.0, 20_000),
    ]
    if args.only:
        settings = [setting for setting in settings if setting[0] in args.only]
    summaries, tables = [], {}
    for name, epsilon, n_samples in settings:
        mechanism = build_mechanism(name, space, epsilon)
        started = time.perf_counter()
        report = dd.audit(
            mechanism, n_pairs=args.n_pairs, n_samples=n_samples, rng=args.seed, progress=False
        )
        summary = report.summary()
        table = report.table
        row = {
            "mechanism": name,
            "epsilon": epsilon,
            "claims": str(mechanism.privacy_bound()).split(";")[0],
            "n_samples": n_samples,
            "claimed_min": float(table["claimed"].min()),
            "claimed_max": float(table["claimed"].max()),
            "eps_lower_max": float(table["eps_lower"].max()),
            "seconds": time.perf_counter() - started,
            **summary,
        }
        summaries.append(row)
        tables[f"{name} {epsilon:g}"] = report.to_dict()
        print(f"{name} {epsilon:g}: {report.verdict()} [{row['seconds']:.1f} s]", flush=True)
    lines = [
        f"Audits on the 50,000 most frequent GloVe words ({time.strftime('%Y-%m-%d %H:%M')}; "
        f"{args.n_pairs} nearest pairs, seed {args.seed}, confidence 0.95, Bonferroni)",
        "",
        "| mechanism | epsilon | claims | samples/word | claimed loss (min-max) | outcome | "
        "tested | testable by sampling | violations | max eps_lower | worst eps_lower / claimed "
        "| worst exact / claimed | chi-square failures | seconds |",
        "|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summaries:
        worst = row["worst_ratio_eps_lower_to_claimed"]
        exact = row.get("worst_ratio_exact_loss_to_claimed")
        lines.append(
            f"| {row['mechanism']} | {row['epsilon']:g} | {row['claims']} | "
            f"{row['n_samples']:,} | {row['claimed_min']:.1f}-{row['claimed_max']:.1f} | "
            f"{row['outcome']} | {row['tested_pairs']} / {row['pairs']} | "
            f"{row['testable_pairs']} / {row['pairs']} | {row['violations']} | "
            f"{row['eps_lower_max']:.2f} | {'-' if worst is None else f'{worst:.3f}'} | "
            f"{'-' if exact is None else f'{exact:.3g}'}"
            f"{' (certified from below)' if row.get('exact_lower_bounds') else ''} | "
            f"{row.get('goodness_of_fit_failures', '-')} | {row['seconds']:.1f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    stem = "audit_glove" + ("" if not args.only else "_" + "_".join(args.only))
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"summaries": summaries, "reports": tables}, indent=1, default=str) + "\n"
    )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
