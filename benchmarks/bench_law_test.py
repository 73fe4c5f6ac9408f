#!/usr/bin/env python3
"""The law test (``dd.compare_laws``) and the black-box harness, measured.

    python benchmarks/bench_law_test.py [--top 5000] [--fpr-seeds 120] [--power-seeds 20]

1. False-positive rate: seeded comparisons of our mechanisms with themselves at alpha 0.05
   (TEM against its exact law: goodness of fit; multivariate Laplace against itself: two
   samples), 5 words each; the rejected fraction must stay at or below alpha (Clopper-Pearson
   interval reported).
2. Power against a planted rare-branch bug: ``TEMWithWrongBottom`` (the bottom element scores
   ``-gamma`` without ``+ (2/epsilon) ln |W \\ L_w|``: the words beyond ``gamma`` share one
   weight instead of each having it) against TEM's exact law, as a function of the samples per
   word; the exact total variation between the two laws is reported beside it.
3. Harness cost for a foreign mechanism 100x slower than ours: an audit of one pair through a
   function that samples our TEM and then spins for 99x the time our TEM took; the seconds
   spent outside the function (the harness) against the total.

Results: benchmarks/results/law_test.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

import densitydp as dd
from densitydp.audit import broken

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = 5


def false_positive_rate(space: dd.EmbeddingSpace, seeds: int) -> list[dict]:
    rows = []
    settings = [
        ("TEM epsilon 10 (goodness of fit)", dd.TruncatedExponential(space, 10.0), 20_000),
        ("Laplace epsilon 10 (two samples)", dd.MultivariateLaplace(space, 10.0), 4_000),
    ]
    for label, mechanism, n_samples in settings:
        rejected, started = 0, time.perf_counter()
        for seed in range(seeds):
            words = np.random.default_rng(seed).choice(1_000, size=WORDS, replace=False)
            result = dd.compare_laws(mechanism, mechanism, words, n_samples, rng=seed)
            rejected += result.outcome == "FAIL"
        low, high = stats.binomtest(rejected, seeds).proportion_ci(0.95, method="exact")
        rows.append(
            {
                "setting": label,
                "comparisons": seeds,
                "samples_per_word": n_samples,
                "rejected": rejected,
                "rate": rejected / seeds,
                "ci_low": low,
                "ci_high": high,
                "seconds": time.perf_counter() - started,
            }
        )
        print(rows[-1], flush=True)
    return rows


def exact_tv(bug: dd.Mechanism, reference: dd.Mechanism, word: int) -> float:
    n = len(reference.space)
    dense = np.zeros((2, n))
    for row, mechanism in enumerate((bug, reference)):
        ids, probabilities = mechanism.output_distribution(word)
        dense[row, ids] = probabilities
    return 0.5 * float(np.abs(dense[0] - dense[1]).sum())


def power_curve(space: dd.EmbeddingSpace, seeds: int, epsilon: float) -> dict:
    reference = dd.TruncatedExponential(space, epsilon)
    bug = broken.TEMWithWrongBottom(space, epsilon)
    words = np.arange(WORDS)
    tv = [exact_tv(bug, reference, int(w)) for w in words]
    curve = []
    for n_samples in (1_000, 3_000, 10_000, 30_000, 100_000, 300_000):
        rejected = sum(
            dd.compare_laws(bug, reference, words, n_samples, rng=seed).outcome == "FAIL"
            for seed in range(seeds)
        )
        curve.append({"samples_per_word": n_samples, "power": rejected / seeds})
        print(curve[-1], flush=True)
    needed = dd.compare_laws(bug, reference, words, 20_000, rng=0, tv=min(tv))
    return {
        "epsilon": epsilon,
        "words": words.tolist(),
        "exact_tv": tv,
        "seeds": seeds,
        "curve": curve,
        "n_for_power_at_min_tv": float(needed.table["n_for_power"].max()),
    }


def harness_cost(space: dd.EmbeddingSpace, n_samples: int) -> dict:
    tem = dd.TruncatedExponential(space, 10.0)
    tem.sample(np.zeros(10_000, dtype=np.int64), rng=0)  # compile, neighbour rows
    inside = [0.0]

    def slow_tem(word_ids, rng):  # our TEM, then spin for 99x its time: 100x slower
        started = time.perf_counter()
        out = tem.sample(word_ids, rng=rng)
        spent = time.perf_counter() - started
        while time.perf_counter() - started < 100 * spent:
            pass
        inside[0] += time.perf_counter() - started
        return out

    claim = dd.PrivacyBound("metric", 10.0)
    started = time.perf_counter()
    report = dd.audit(slow_tem, space=space, claim=claim, pairs=[(0, 1)], n_samples=n_samples,
                      rng=0, progress=False)  # fmt: skip
    total = time.perf_counter() - started
    own_started = time.perf_counter()
    dd.audit(tem, pairs=[(0, 1)], n_samples=n_samples, rng=0, progress=False)
    own = time.perf_counter() - own_started
    return {
        "samples_per_word": n_samples,
        "seconds_per_pair": total,
        "seconds_inside_mechanism": inside[0],
        "harness_share": (total - inside[0]) / total,
        "our_tem_seconds_per_pair": own,
        "outcome": report.outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=5_000)
    parser.add_argument("--fpr-seeds", type=int, default=120)
    parser.add_argument("--power-seeds", type=int, default=20)
    parser.add_argument("--harness-samples", type=int, default=2_000_000)
    args = parser.parse_args()
    space = dd.load_glove(top=args.top)
    fpr = false_positive_rate(space, args.fpr_seeds)
    power = power_curve(space, args.power_seeds, 10.0)
    harness = harness_cost(space, args.harness_samples)
    print(harness, flush=True)
    RESULTS.mkdir(exist_ok=True)
    result = {"space": space.name, "fpr": fpr, "power": power, "harness": harness}
    (RESULTS / "law_test.json").write_text(json.dumps(result, indent=1) + "\n")
    total = sum(r["comparisons"] for r in fpr)
    rejected = sum(r["rejected"] for r in fpr)
    lines = [
        f"Law test on {space.name} ({time.strftime('%Y-%m-%d %H:%M')}; alpha 0.05, Holm over "
        f"{WORDS} words per comparison)",
        "",
        "| self-comparison | comparisons | samples/word | rejected | rate | 95 % CI | seconds |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in fpr:
        lines.append(
            f"| {r['setting']} | {r['comparisons']} | {r['samples_per_word']:,} | "
            f"{r['rejected']} | {r['rate']:.3f} | {r['ci_low']:.3f}-{r['ci_high']:.3f} | "
            f"{r['seconds']:.0f} |"
        )
    lines += [
        f"| all | {total} | | {rejected} | {rejected / total:.3f} | | |",
        "",
        f"Power against TEMWithWrongBottom (epsilon {power['epsilon']:g}; exact total variation "
        f"to TEM on the {WORDS} words: "
        + ", ".join(f"{t:.3g}" for t in power["exact_tv"])
        + f"; {power['seeds']} seeds per point):",
        "",
        "| samples/word | power |",
        "|---:|---:|",
        *[f"| {p['samples_per_word']:,} | {p['power']:.2f} |" for p in power["curve"]],
        "",
        f"n_for_power at the smallest exact TV: {power['n_for_power_at_min_tv']:,.0f} per word.",
        "",
        f"Harness: one pair, {harness['samples_per_word']:,} samples per word, through a "
        f"function 100x slower than our TEM: {harness['seconds_per_pair']:.1f} s per pair, "
        f"{harness['seconds_inside_mechanism']:.1f} s inside the function, harness share "
        f"{harness['harness_share']:.1%} (our TEM directly: "
        f"{harness['our_tem_seconds_per_pair']:.2f} s per pair).",
    ]
    (RESULTS / "law_test.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
