#!/usr/bin/env python3
"""The truncated Gumbel's noise alone: the count pinned at n - 1, so every word is a candidate.

    python benchmarks/gumbel_noise_only.py

With ``poisson_mean=1e7`` the truncated Poisson count is ``n - 1`` up to a probability of about
``n / 1e7``: the candidate count cannot leak, and what remains of the privacy loss is the
noise's. Exact loss (``dd.exact_privacy_loss``) of every pair of a 40-word, 5-d synthetic space
against the calibration's claim ``epsilon * d`` at 1.05 x, 1.5 x and 4 x the smallest epsilon.
Prints one line per epsilon (docs/mechanisms/gumbel.md quotes them).
"""

from __future__ import annotations

import itertools

import densitydp as dd


def main() -> None:
    space = dd.synthetic_space(n_words=40, dim=5, n_clusters=3, rng=0)
    floor = dd.TruncatedGumbel(space, scale=1.0).min_epsilon
    for factor in (1.05, 1.5, 4.0):
        mechanism = dd.TruncatedGumbel(space, epsilon=factor * floor, poisson_mean=1e7)
        worst, violations, pairs = 0.0, 0, 0
        for word, other in itertools.combinations(range(len(space)), 2):
            result = dd.exact_privacy_loss(mechanism, word, other)
            pairs += 1
            violations += result.violation
            worst = max(worst, result.loss / result.claimed)
        print(
            f"{factor:g} x min epsilon (scale {mechanism.scale:.4g}): {pairs} pairs, "
            f"{violations} violations, worst loss / claim {worst:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
