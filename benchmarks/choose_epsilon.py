#!/usr/bin/env python3
"""Choosing epsilon on GloVe: the epsilon at which every mechanism reaches a median N_w of 0.9,
0.5 and 0.1, and the guarantee it claims there.

    python benchmarks/choose_epsilon.py [--levels 0.9 0.5 0.1] [--n-samples 1000] [--no-full]

``dd.calibrate_epsilon`` with its defaults (200 words evenly spaced over the 10,000 most
frequent, bracket (1, 100), rtol 1e-3, seed 0) for every mechanism of
``densitydp.mechanisms.MECHANISMS`` on ``load_glove(top=50_000, words="alpha")``; then for the
exact mechanisms on the full 400,000-word space, except the truncated Gumbel when its exact
min / max distance is not cached (the all-pairs pass takes about 15 minutes here). The
density-aware mechanisms get their default prior (``default_prior``: every word for the
density-aware Laplace, 10,000 words for the prior-weighted exponential) fitted once per space.

Per result: the epsilon found and the value reached, evaluations and wall time, the claimed
guarantee (the bound's notion and epsilon), the claimed loss for the median nearest-neighbour
pair among the words (bound epsilon x median nearest distance) and, for one word of a sentence
replaced by any other word, bound epsilon x the largest distance from a calibration word to the
farthest word of the space (``space.farthest_distance``). Results go to
benchmarks/results/choosing_epsilon.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import densitydp as dd
from densitydp.calibration import MAX_EPSILON, default_words
from densitydp.mechanisms import DEFAULT_PRIOR_POINTS, MECHANISMS, default_prior
from densitydp.neighbors import cached_extremes

RESULTS = Path(__file__).resolve().parent / "results"
SENTENCE = 20

LABELS = {
    "laplace": "multivariate Laplace",
    "gumbel": "truncated Gumbel",
    "exponential": "exponential",
    "tem": "TEM",
    "density-laplace": "density-aware Laplace",
    "prior-exponential": "prior-weighted exponential",
}


def log(*parts: Any) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def factories(
    space: dd.EmbeddingSpace,
) -> dict[str, Callable[[dd.EmbeddingSpace, float], dd.Mechanism] | str]:
    """Every named mechanism; the density-aware ones with their default prior fitted once."""
    prior_all = default_prior(space)
    prior_points = default_prior(space, DEFAULT_PRIOR_POINTS)

    def density_laplace(space: dd.EmbeddingSpace, epsilon: float) -> dd.Mechanism:
        return dd.DensityAwareLaplace(space, epsilon, prior_all, progress=False)

    def prior_exponential(space: dd.EmbeddingSpace, epsilon: float) -> dd.Mechanism:
        return dd.PriorWeightedExponential(space, epsilon, prior_points)

    built: dict[str, Any] = {
        "density-laplace": density_laplace,
        "prior-exponential": prior_exponential,
    }
    return {name: built.get(name, name) for name in MECHANISMS}


def calibrate(
    name: str,
    factory: Any,
    space: dd.EmbeddingSpace,
    level: float,
    n_samples: int,
    farthest: float,
) -> dict[str, Any]:
    started = time.perf_counter()
    row: dict[str, Any] = {"mechanism": name, "space": space.name, "target_N_w": level}
    try:
        found = dd.calibrate_epsilon(
            factory, space, {"N_w": level}, n_samples=n_samples, rng=0, progress=False
        )
    except ValueError as exc:
        row.update(reached=False, error=str(exc), seconds=time.perf_counter() - started)
        log(f"{name} N_w={level}: {exc}")
        return row
    bound = found.bound
    row.update(
        reached=True,
        epsilon=found.epsilon,
        N_w=found.value,
        tolerance=found.tolerance,
        method=found.method,
        n_samples=found.n_samples,
        n_evaluations=found.n_evaluations,
        refused=int(found.history["refused"].sum()),
        seconds=time.perf_counter() - started,
        notion=bound.notion,
        bound_epsilon=bound.epsilon,
        delta=bound.delta,
        claim=str(bound).split(";")[0],
        nearest_distance=found.nearest_distance,
        nearest_loss=found.nearest_loss,
        farthest_distance=farthest,
        one_word_loss=bound.epsilon * farthest if bound.notion == "metric" else bound.epsilon,
        history=found.history[["epsilon", "value", "refused", "seconds"]].to_dict("records"),
        summary=str(found),
    )
    log(
        f"{name} N_w={level}: epsilon {found.epsilon:.4g} (value {found.value:.4g}, "
        f"{found.n_evaluations} evaluations, {row['seconds']:.1f} s)"
    )
    return row


def run_space(
    space: dd.EmbeddingSpace, names: list[str], levels: list[float], n_samples: int
) -> tuple[list[dict[str, Any]], float]:
    started = time.perf_counter()
    farthest = float(np.max(space.farthest_distance(default_words(space))))
    all_factories = factories(space)
    rows = [
        calibrate(name, all_factories[name], space, level, n_samples, farthest)
        for name in names
        for level in levels
    ]
    return rows, time.perf_counter() - started


def fmt(value: float, digits: int = 4) -> str:
    if value >= 1e5:
        return f"{value:.3g}"
    return f"{value:.{digits}g}"


def unreachable(error: str) -> str:
    """A short form of calibrate_epsilon's 'not reachable' message."""
    found = re.search(r"epsilon = (\S+) the median N_w is (\S+),", error)
    if found is None:
        return error
    epsilon, value = float(found.group(1)), found.group(2)
    if "factory accepts" in error:
        return f"N_w {value} at the smallest epsilon accepted, {fmt(epsilon)}"
    return f"N_w {value} at epsilon {epsilon:g} (the cap)"


def table(rows: list[dict[str, Any]], levels: list[float]) -> list[str]:
    lines = [
        "| mechanism | target N_w | epsilon | N_w reached | method | evaluations | seconds | "
        "claimed guarantee | median nearest pair: loss | one word replaced: loss |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        label = LABELS[row["mechanism"]]
        if not row["reached"]:
            lines.append(
                f"| {label} | {row['target_N_w']:g} | unreachable: {unreachable(row['error'])} "
                f"| - | - | - | {row['seconds']:.1f} | - | - | - |"
            )
            continue
        lines.append(
            f"| {label} | {row['target_N_w']:g} | {fmt(row['epsilon'])} | {row['N_w']:.4f} "
            f"(+/- {row['tolerance']:.2g}) | {row['method']} | {row['n_evaluations']} | "
            f"{row['seconds']:.1f} | {fmt(row['bound_epsilon'])} d (metric) | "
            f"{fmt(row['nearest_loss'], 3)} | {fmt(row['one_word_loss'], 3)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", nargs="+", type=float, default=[0.9, 0.5, 0.1])
    parser.add_argument("--n-samples", type=int, default=1_000)
    parser.add_argument("--no-full", action="store_true", help="skip the 400,000-word space")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {numba.config.NUMBA_NUM_THREADS} cores",
        "densitydp": dd.__version__,
        "command": " ".join(["python", "benchmarks/choose_epsilon.py", *sys.argv[1:]]),
        "settings": {
            "words": "200 ids evenly spaced over the first 10,000 (default_words)",
            "bracket": [1.0, 100.0],
            "rtol": 1e-3,
            "seed": 0,
            "n_samples": args.n_samples,
            "max_epsilon": MAX_EPSILON,
            "sentence_words": SENTENCE,
        },
        "spaces": {},
    }
    spaces: list[tuple[str, Callable[[], dd.EmbeddingSpace], list[str]]] = [
        ("glove-alpha-50k", lambda: dd.load_glove(top=50_000, words="alpha"), list(MECHANISMS))
    ]
    if not args.no_full:
        spaces.append(("glove-400k", dd.load_glove, []))
    for key, load, names in spaces:
        space = load()
        if not names:  # the full space: the exact mechanisms only
            exact = ["exponential", "tem", "prior-exponential", "gumbel"]
            names = exact
            if cached_extremes(space.vectors, space.fingerprint) is None:
                names = [n for n in exact if n != "gumbel"]
                results["spaces"].setdefault(key, {})["skipped"] = {
                    "gumbel": "its exact min / max distance is not cached: the all-pairs pass "
                    "over 400,000 words takes about 15 minutes here"
                }
        log(f"{space!r}: {', '.join(names)}")
        rows, seconds = run_space(space, names, args.levels, args.n_samples)
        entry = results["spaces"].setdefault(key, {})
        entry.update(name=space.name, n_words=len(space), rows=rows, seconds=seconds)
    results["seconds"] = time.perf_counter() - started

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "choosing_epsilon.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        f"Choosing epsilon on GloVe ({results['date']}, {results['machine']}, one process; "
        f"{results['seconds'] / 60:.1f} min in all)",
        "",
        f"Command: `{results['command']}`. `dd.calibrate_epsilon(factory, space, "
        "{'N_w': t}, rng=0)` with its defaults: the median of the exact (or sampled, "
        f"{args.n_samples} draws per word, tolerance 2 binomial standard errors) N_w = "
        "P[M(w) = w] over 200 words evenly spaced over the 10,000 most frequent, bracket "
        "(1, 100) widened x4, rtol 1e-3, exact tolerance 1e-3, epsilon capped at "
        f"{MAX_EPSILON:g}. Claimed losses: the bound's epsilon x the median distance from a "
        "calibration word to its nearest other word, and x the largest distance from a "
        "calibration word to the farthest word of the space (one word of a sentence, of "
        f"{SENTENCE} words or any other length, replaced by any word; a whole {SENTENCE}-word "
        f"sentence replaced composes to {SENTENCE} times that).",
        "",
    ]
    for entry in results["spaces"].values():
        if "rows" not in entry:
            continue
        rows = entry["rows"]
        farthest = next((r["farthest_distance"] for r in rows if r["reached"]), float("nan"))
        nearest = next((r["nearest_distance"] for r in rows if r["reached"]), float("nan"))
        lines += [
            f"{entry['name']} ({entry['n_words']:,} words; {entry['seconds'] / 60:.1f} min; "
            f"median nearest distance {nearest:.4g}, largest farthest distance {farthest:.4g}):",
            "",
            *table(rows, args.levels),
            "",
        ]
        for name, reason in entry.get("skipped", {}).items():
            lines += [f"Skipped: {LABELS[name]}: {reason}.", ""]
    (RESULTS / "choosing_epsilon.md").write_text("\n".join(lines))
    log(f"done in {results['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
