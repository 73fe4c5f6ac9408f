#!/usr/bin/env python3
"""How loose the Mahalanobis mechanism's per-word text claim is.

    python benchmarks/mahalanobis_worst_claims.py

``perturb_text`` reports, per word ``w``, ``epsilon * r(w) / sqrt(s_min(M))`` (``r`` the exact
farthest Euclidean distance): an upper bound on ``max_w' epsilon * d_RM(w, w')``. For 200 words
drawn (seed 0) from the 10,000 most frequent of the 50,000-word GloVe space, the ratio of that
bound to the exact maximum over every ``w'`` (``privacy_loss_bound`` against all words), at
``lam`` 1 and 0.2. docs/mechanisms/mahalanobis.md quotes it.
"""

from __future__ import annotations

import numpy as np

import densitydp as dd


def main() -> None:
    space = dd.load_glove(top=50_000)
    words = np.random.default_rng(0).choice(10_000, 200, replace=False)
    everyone = np.arange(len(space))
    for lam in (1.0, 0.2):
        mechanism = dd.MahalanobisMechanism(space, 10.0, lam=lam)
        claimed, _ = mechanism._worst_claims(words)
        exact = np.array(
            [mechanism.privacy_loss_bound(np.full(len(space), w), everyone).max() for w in words]
        )
        ratio = claimed / exact
        print(
            f"lam {lam:g}: bound / exact maximum, median {np.median(ratio):.2f} "
            f"(min {ratio.min():.2f}, max {ratio.max():.2f}) over {len(words)} words"
        )


if __name__ == "__main__":
    main()
