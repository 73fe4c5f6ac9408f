#!/usr/bin/env python3
"""Metropolis–Hastings and KDE speed: densitydp against straightforward numpy, scikit-learn and
scipy, side by side in one process.

    python benchmarks/bench_mcmc.py [--quick]

1. Random-walk Metropolis on the Laplace target ``exp(-epsilon ||x||)`` in 50 dimensions
   (epsilon 10), one chain per core: steps/s and ESS/s (bulk ESS of the radius, ArviZ) of
   ``dd.run_chains`` (one thread) and of a plain numpy loop with the same step size; also the
   rate at which numba draws the proposal's normals (the cap on any such chain).
2. Random-walk Metropolis on a KDE target (10,000 GloVe vectors as reference points, Scott
   bandwidth, 50 d): steps/s of ``dd.run_chains``, of a plain numpy step (vectorised log-sum-exp)
   and of scikit-learn ``KernelDensity.score_samples`` called inside the loop; against the bound
   of the step's n x d multiply-adds (a numba pass over the same reference points that only
   accumulates squared distances, measured here). ESS/s of the baselines is their steps/s times
   the ESS per step of densitydp's chain (same algorithm, same step size).
3. ``KDEPrior.log_density`` throughput (queries/s) on 10,000 and 100,000 GloVe reference points
   against scikit-learn (exact, ``rtol=0``, and ``rtol=1e-2``) and scipy ``gaussian_kde`` with the
   same isotropic bandwidth, plus the largest disagreement with ours (nats) near the words and at
   low density (words plus Laplace noise at epsilon 10), where summed kernel values underflow.

Timings are medians of 3 runs; results go to benchmarks/results/mcmc.{json,md}.

    python benchmarks/bench_mcmc.py --kde-target-before REF [--rounds 3]

runs section 2 alone for two versions of the package side by side: the code of git ref ``REF``
and of ``--kde-target-after`` (default HEAD), each checked out into a temporary ``git worktree``
and run in fresh subprocesses (``PYTHONPATH=<tree>/src``, a private numba cache per version),
alternating for ``--rounds`` rounds; results (medians over the rounds) go to
benchmarks/results/mcmc_kde.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import arviz_stats as azs
import numba
import numpy as np
from scipy import stats
from scipy.special import logsumexp
from sklearn.neighbors import KernelDensity

import densitydp as dd
from densitydp import _kernels

RESULTS = Path(__file__).resolve().parent / "results"
DIM, EPSILON = 50, 10.0


@numba.njit(cache=True)
def laplace_target(position, args):
    (epsilon,) = args
    return -epsilon * math.sqrt(np.sum(position * position))


@numba.njit(cache=True)
def kde_target(position, args):
    return dd.kde.kde_logdensity(position, args)


@numba.njit(cache=True)
def draw_normals(rng, n_steps, dim):
    total = 0.0
    for _ in range(n_steps):
        total += np.sum(rng.standard_normal(dim))
    return total


@numba.njit(cache=True)
def squared_distances_only(position, references_t, n_calls):
    """The n x d multiply-adds of one KDE evaluation, nothing else (the same blocked kernel)."""
    n_points = references_t.shape[1]
    block = _kernels.KDE_BLOCK
    scratch = np.empty(block)
    total = 0.0
    for _ in range(n_calls):
        for start in range(0, n_points, block):
            _kernels.block_squared_distances(
                position, references_t, start, min(start + block, n_points), scratch
            )
            total += scratch[0]
    return total


def median_time(function: Callable[[], Any], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def numpy_random_walk(
    logdensity: Callable[[np.ndarray], float],
    start: np.ndarray,
    step: float,
    n_steps: int,
    seed: int,
) -> np.ndarray:
    """The straightforward numpy chain: one proposal, one density, one uniform per step."""
    generator = np.random.default_rng(seed)
    position, value = start.copy(), logdensity(start)
    draws = np.empty((n_steps, len(start)))
    for t in range(n_steps):
        proposal = position + step * generator.standard_normal(len(start))
        proposal_value = logdensity(proposal)
        if math.log(generator.random()) < proposal_value - value:
            position, value = proposal, proposal_value
        draws[t] = position
    return draws


def ess_of_radius(draws: np.ndarray) -> float:
    """Bulk ESS of the noise radius, draws of shape (chain, draw, dim)."""
    return float(azs.ess(np.linalg.norm(draws, axis=2), method="bulk"))


def laplace_section(quick: bool) -> dict[str, Any]:
    n_draws = 50_000 if quick else 250_000
    start = np.random.default_rng(0).normal(size=(4, DIM)) * 0.5
    run = lambda: dd.run_chains(  # noqa: E731
        laplace_target, start, args=(EPSILON,), n_draws=n_draws, n_warmup=5_000, rng=1, n_jobs=1
    )
    run()  # compile
    seconds = median_time(run)
    result = run()
    ours_steps = 4 * (n_draws + 5_000) / seconds
    ours_ess_per_second = ess_of_radius(result.draws) / seconds
    step = float(np.median(result.step_size))

    def numpy_logdensity(x: np.ndarray) -> float:
        return -EPSILON * math.sqrt(float(x @ x))

    n_numpy = 10_000 if quick else 40_000

    def run_numpy() -> np.ndarray:
        return np.stack(
            [numpy_random_walk(numpy_logdensity, start[c], step, n_numpy, c) for c in range(4)]
        )

    numpy_seconds = median_time(run_numpy)
    numpy_draws = run_numpy()
    numpy_steps = 4 * n_numpy / numpy_seconds
    numpy_ess_per_second = ess_of_radius(numpy_draws) / numpy_seconds
    generator = np.random.default_rng(2)
    draw_normals(generator, 10, DIM)
    normal_seconds = median_time(lambda: draw_normals(generator, 1_000_000, DIM))
    return {
        "dim": DIM,
        "epsilon": EPSILON,
        "step_size": step,
        "acceptance_rate": float(result.acceptance_rate.mean()),
        "densitydp_steps_per_s": ours_steps,
        "densitydp_ess_per_s": ours_ess_per_second,
        "densitydp_ess_per_1000_steps": 1000 * ess_of_radius(result.draws) / (4 * n_draws),
        "numpy_steps_per_s": numpy_steps,
        "numpy_ess_per_s": numpy_ess_per_second,
        "numba_normals_per_s": 1_000_000 * DIM / normal_seconds,
        "speedup_steps": ours_steps / numpy_steps,
        "speedup_ess": ours_ess_per_second / numpy_ess_per_second,
    }


def kde_target_section(space: dd.EmbeddingSpace, quick: bool) -> dict[str, Any]:
    prior = dd.KDEPrior.fit(space.top(10_000), bandwidth="scott")
    args = prior.numba_args()
    references = prior.references.astype(np.float64)
    start = references[:4] + 0.01
    n_draws = 2_000 if quick else 8_000
    run = lambda: dd.run_chains(  # noqa: E731
        kde_target, start, args=args, n_draws=n_draws, n_warmup=500, rng=3, n_jobs=1
    )
    dd.run_chains(kde_target, start, args=args, n_draws=10, n_warmup=0, rng=3, n_jobs=1)
    total_steps = 4 * (n_draws + 500)
    # bound: the step's n x d multiply-adds alone; timed in turn with the chains (each bound run
    # lasts about a third of a chain run), so that both see the same load: the ratio is the
    # median of the pairs' ratios (wall clock; also in process CPU time, which a load on the
    # other core disturbs less)
    position = start[0]
    squared_distances_only(position, prior._references_t, 1)
    bound_calls = total_steps // 3
    walls: dict[str, list[float]] = {"chain": [], "bound": []}
    cpus: dict[str, list[float]] = {"chain": [], "bound": []}

    def timed(name: str, function: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = function()
        walls[name].append(time.perf_counter() - wall)
        cpus[name].append(time.process_time() - cpu)
        return outcome

    for _ in range(3):
        result = timed("chain", run)
        timed("bound", lambda: squared_distances_only(position, prior._references_t, bound_calls))
    seconds = statistics.median(walls["chain"])
    ours_steps = total_steps / seconds
    ess_per_step = ess_of_radius(result.draws - result.draws.mean(axis=(0, 1))) / (4 * n_draws)
    bound_steps = bound_calls / statistics.median(walls["bound"])

    def pair_ratios(times: dict[str, list[float]]) -> float:
        return statistics.median(
            (chain / total_steps) / (bound / bound_calls)
            for chain, bound in zip(times["chain"], times["bound"], strict=True)
        )

    inv_two_h2 = 0.5 / prior.bandwidth**2
    log_norm = (
        -math.log(len(references))
        - DIM * math.log(prior.bandwidth)
        - 0.5 * DIM * math.log(2 * math.pi)
    )

    def numpy_logdensity(x: np.ndarray) -> float:
        difference = references - x
        squared = np.einsum("ij,ij->i", difference, difference)
        return float(logsumexp(-squared * inv_two_h2) + log_norm)

    step = float(np.median(result.step_size))
    n_numpy = 300 if quick else 1_000
    numpy_seconds = median_time(
        lambda: numpy_random_walk(numpy_logdensity, start[0], step, n_numpy, 0)
    )
    numpy_steps = n_numpy / numpy_seconds
    sklearn_kde = KernelDensity(bandwidth=prior.bandwidth, rtol=0).fit(references)

    def sklearn_logdensity(x: np.ndarray) -> float:
        return float(sklearn_kde.score_samples(x[None, :])[0])

    n_sklearn = 50 if quick else 200
    sklearn_seconds = median_time(
        lambda: numpy_random_walk(sklearn_logdensity, start[0], step, n_sklearn, 0)
    )
    sklearn_steps = n_sklearn / sklearn_seconds
    pair_dims = len(references) * DIM
    return {
        "n_points": len(references),
        "dim": DIM,
        "bandwidth": prior.bandwidth,
        "acceptance_rate": float(result.acceptance_rate.mean()),
        "densitydp_steps_per_s": ours_steps,
        "densitydp_pair_dims_per_s": ours_steps * pair_dims,
        "multiply_add_bound_steps_per_s": bound_steps,
        "multiply_add_bound_pair_dims_per_s": bound_steps * pair_dims,
        "ratio_to_bound": pair_ratios(walls),
        "ratio_to_bound_cpu_time": pair_ratios(cpus),
        "densitydp_ess_per_s": ess_per_step * ours_steps,
        "numpy_steps_per_s": numpy_steps,
        "numpy_ess_per_s": ess_per_step * numpy_steps,
        "sklearn_steps_per_s": sklearn_steps,
        "sklearn_ess_per_s": ess_per_step * sklearn_steps,
        "speedup_vs_numpy": ours_steps / numpy_steps,
        "speedup_vs_sklearn": ours_steps / sklearn_steps,
    }


def log_density_section(space: dd.EmbeddingSpace, n_points: int, quick: bool) -> dict[str, Any]:
    prior = dd.KDEPrior.fit(space.top(n_points), bandwidth="scott")
    references = prior.references.astype(np.float64)
    generator = np.random.default_rng(4)
    queries = space.vectors[:2_000].astype(np.float64) + generator.normal(0, 0.05, (2_000, DIM))
    small = queries[: (50 if quick else 200)]
    prior.log_density(queries[:2])
    ours = prior.log_density(queries)
    ours_rate = len(queries) / median_time(lambda: prior.log_density(queries))
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        ours_one_rate = len(queries) / median_time(lambda: prior.log_density(queries))
    finally:
        numba.set_num_threads(threads)
    row: dict[str, Any] = {
        "n_points": n_points,
        "bandwidth": prior.bandwidth,
        "densitydp_queries_per_s": ours_rate,
        "densitydp_threads": threads,
        "densitydp_one_thread_queries_per_s": ours_one_rate,
    }
    # where the density-aware chains run: words plus Laplace noise at epsilon 10 (low density)
    noised = space.vectors[:200].astype(np.float64) + dd.MultivariateLaplace(space, EPSILON).noise(
        200, rng=5
    )
    ours_noised = prior.log_density(noised)
    for name, rtol in (("sklearn_exact", 0.0), ("sklearn_rtol_1e-2", 1e-2)):
        estimator = KernelDensity(bandwidth=prior.bandwidth, rtol=rtol).fit(references)
        seconds = median_time(lambda estimator=estimator: estimator.score_samples(small))
        values = estimator.score_samples(small)
        row[f"{name}_queries_per_s"] = len(small) / seconds
        row[f"{name}_max_abs_error_nats"] = float(np.max(np.abs(values - ours[: len(small)])))
        row[f"{name}_max_abs_error_low_density_nats"] = float(
            np.max(np.abs(estimator.score_samples(noised) - ours_noised))
        )
    scipy_kde = stats.gaussian_kde(references.T)
    scipy_kde._data_covariance = np.eye(DIM)  # isotropic: covariance = bandwidth^2 I
    scipy_kde._data_cho_cov = np.eye(DIM)
    scipy_kde.set_bandwidth(prior.bandwidth)
    seconds = median_time(lambda: scipy_kde.logpdf(small.T))
    row["scipy_queries_per_s"] = len(small) / seconds
    row["scipy_max_abs_error_nats"] = float(
        np.max(np.abs(scipy_kde.logpdf(small.T) - ours[: len(small)]))
    )
    row["speedup_vs_sklearn_exact_one_thread"] = ours_one_rate / row["sklearn_exact_queries_per_s"]
    return row


def _git(*arguments: str) -> str:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", "-C", str(root), *arguments], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def compare_kde_target(before: str, after: str, rounds: int, quick: bool) -> None:
    """Section 2 for the git refs ``before`` and ``after`` (each in a temporary worktree),
    alternating fresh subprocesses; writes results/mcmc_kde.{json,md}."""
    scratch = Path(tempfile.mkdtemp(prefix="densitydp-mcmc-"))
    versions: dict[str, tuple[str, Path]] = {}
    rows: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    try:
        for name, ref in (("before", before), ("after", after)):
            commit = _git("rev-parse", "--short", ref)
            _git("worktree", "add", "--detach", str(scratch / name), commit)
            versions[name] = (commit, scratch / name / "src")
        for _ in range(rounds):
            for name, (_, src) in versions.items():
                cache = scratch / f"cache-{name}"  # numba caches bench kernels per version
                cache.mkdir(mode=0o700, exist_ok=True)
                env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
                env.update(PYTHONPATH=str(src), XDG_CACHE_HOME=str(cache))
                command = [sys.executable, __file__, "--kde-target-only"]
                done = subprocess.run(
                    command + (["--quick"] if quick else []),
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                row = json.loads(done.stdout.strip().splitlines()[-1])
                if not row.pop("package").startswith(str(src)):
                    raise RuntimeError(f"the {name} run did not import densitydp from {src}")
                rows[name].append(row)
                print(name, json.dumps(row), flush=True)
    finally:
        for name in versions:
            _git("worktree", "remove", "--force", str(scratch / name))
        shutil.rmtree(scratch, ignore_errors=True)
    keys = (
        "densitydp_steps_per_s",
        "multiply_add_bound_steps_per_s",
        "ratio_to_bound",
        "ratio_to_bound_cpu_time",
    )
    summary = {
        name: {key: statistics.median(r[key] for r in rows[name]) for key in keys}
        for name in versions
    }
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {numba.config.NUMBA_NUM_THREADS} cores",
        "command": "python benchmarks/bench_mcmc.py " + " ".join(sys.argv[1:]),
        "versions": {name: label for name, (label, _) in versions.items()},
        "rounds": rows,
        "median": summary,
    }
    lines = [
        f"Random-walk Metropolis on a KDE target, before and after, one run "
        f"({results['date']}, {results['machine']})",
        "",
        f"Command: `{results['command']}`",
        "",
        "10,000 GloVe vectors as reference points, Scott bandwidth, 50 d, 4 chains of "
        f"{'2,000' if quick else '8,000'} draws + 500 warm-up steps, one thread; bound = a numba "
        "pass over the same reference points that only accumulates squared distances (the same "
        f"blocked kernel), timed in turn with the chains: 3 chain runs and 3 bound runs of "
        "a third of their steps alternate in each process, and a process's ratio is the median "
        "of its 3 pairs' ratios (wall clock; in process CPU time in the last column, which a "
        f"load on the other core disturbs less). Medians of {rounds} alternating rounds, each a "
        "fresh process.",
        "",
        "| version | steps/s | multiply-add bound (steps/s) | ratio to the bound | "
        "ratio (CPU time) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (label, _) in versions.items():
        row = summary[name]
        lines.append(
            f"| {name}: {label} | {row['densitydp_steps_per_s']:,.0f} | "
            f"{row['multiply_add_bound_steps_per_s']:,.0f} | {row['ratio_to_bound']:.2f}x | "
            f"{row['ratio_to_bound_cpu_time']:.2f}x |"
        )
    for key, label in (("ratio_to_bound", ""), ("ratio_to_bound_cpu_time", " (CPU time)")):
        per_round = ", ".join(
            f"{b[key]:.2f}x -> {a[key]:.2f}x"
            for b, a in zip(rows["before"], rows["after"], strict=True)
        )
        lines += ["", f"Ratio to the bound{label} per round (before -> after): {per_round}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "mcmc_kde.json").write_text(json.dumps(results, indent=1) + "\n")
        (RESULTS / "mcmc_kde.md").write_text(text)


def markdown(results: dict[str, Any]) -> str:
    lap, kde = results["laplace_target"], results["kde_target"]
    lines = [
        f"MCMC and KDE benchmarks ({results['date']}, {results['machine']}, one process)",
        "",
        f"Random-walk Metropolis, Laplace target, {lap['dim']} d, epsilon {lap['epsilon']:g}, "
        f"one chain per core (acceptance {lap['acceptance_rate']:.3f}):",
        "",
        "| | steps/s | ESS/s (radius) |",
        "|---|---:|---:|",
        f"| densitydp | {lap['densitydp_steps_per_s']:,.0f} | {lap['densitydp_ess_per_s']:,.0f} |",
        f"| numpy loop | {lap['numpy_steps_per_s']:,.0f} | {lap['numpy_ess_per_s']:,.0f} |",
        f"| ratio | {lap['speedup_steps']:,.0f}x | {lap['speedup_ess']:,.0f}x |",
        "",
        f"numba draws {lap['numba_normals_per_s'] / 1e6:,.0f} million normals/s per core here "
        f"(cap: {lap['numba_normals_per_s'] / lap['dim']:,.0f} steps/s).",
        "",
        f"Random-walk Metropolis, KDE target, {kde['n_points']:,} reference points in "
        f"{kde['dim']} d (acceptance {kde['acceptance_rate']:.3f}), one thread:",
        "",
        "| | steps/s | ESS/s | pair-dims/s |",
        "|---|---:|---:|---:|",
        f"| densitydp | {kde['densitydp_steps_per_s']:,.0f} | {kde['densitydp_ess_per_s']:,.1f} "
        f"| {kde['densitydp_pair_dims_per_s'] / 1e9:.2f} G |",
        f"| n x d multiply-add bound | {kde['multiply_add_bound_steps_per_s']:,.0f} | | "
        f"{kde['multiply_add_bound_pair_dims_per_s'] / 1e9:.2f} G |",
        f"| numpy step | {kde['numpy_steps_per_s']:,.0f} | {kde['numpy_ess_per_s']:,.1f} | |",
        f"| scikit-learn score_samples | {kde['sklearn_steps_per_s']:,.1f} | "
        f"{kde['sklearn_ess_per_s']:,.2f} | |",
        "",
        f"densitydp is {kde['ratio_to_bound']:.2f}x the multiply-add bound, "
        f"{kde['speedup_vs_numpy']:,.0f}x numpy, {kde['speedup_vs_sklearn']:,.0f}x scikit-learn.",
        "",
        "KDE log density, 2,000 queries near GloVe words (queries/s; error = largest "
        "disagreement with densitydp on the first queries):",
        "",
        "| reference points | densitydp (all threads) | densitydp (1 thread) | sklearn exact | "
        "sklearn rtol 1e-2 | scipy |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines_after = [
        "",
        "At 200 GloVe words plus Laplace noise at epsilon 10 (low density, where the "
        "density-aware chains run), scikit-learn's largest error (nats):",
        "",
        "| reference points | sklearn exact | sklearn rtol 1e-2 |",
        "|---:|---:|---:|",
    ]
    for row in results["log_density"]:
        lines_after.append(
            f"| {row['n_points']:,} | {row['sklearn_exact_max_abs_error_low_density_nats']:.1f} | "
            f"{row['sklearn_rtol_1e-2_max_abs_error_low_density_nats']:.1f} |"
        )
    for row in results["log_density"]:
        lines.append(
            f"| {row['n_points']:,} | {row['densitydp_queries_per_s']:,.0f} | "
            f"{row['densitydp_one_thread_queries_per_s']:,.0f} | "
            f"{row['sklearn_exact_queries_per_s']:,.1f} (error "
            f"{row['sklearn_exact_max_abs_error_nats']:.1e}) | "
            f"{row['sklearn_rtol_1e-2_queries_per_s']:,.1f} (error "
            f"{row['sklearn_rtol_1e-2_max_abs_error_nats']:.1e}) | "
            f"{row['scipy_queries_per_s']:,.1f} (error {row['scipy_max_abs_error_nats']:.1e}) |"
        )
    return "\n".join(lines + lines_after) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Shorter runs (a smoke test).")
    parser.add_argument("--kde-target-before", metavar="REF", help="Compare section 2 with REF.")
    parser.add_argument("--kde-target-after", metavar="REF", default="HEAD", help="(HEAD)")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of the comparison.")
    parser.add_argument("--kde-target-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kde_target_before:
        compare_kde_target(args.kde_target_before, args.kde_target_after, args.rounds, args.quick)
        return
    if args.kde_target_only:
        row = kde_target_section(dd.load_glove(top=10_000), args.quick)
        print(json.dumps({"package": dd.__file__, **row}))
        return
    space = dd.load_glove(top=100_000)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {numba.config.NUMBA_NUM_THREADS} cores",
    }
    results["laplace_target"] = laplace_section(args.quick)
    print(json.dumps(results["laplace_target"], indent=1), flush=True)
    results["kde_target"] = kde_target_section(space, args.quick)
    print(json.dumps(results["kde_target"], indent=1), flush=True)
    results["log_density"] = []
    for n_points in (10_000, 100_000):
        results["log_density"].append(log_density_section(space, n_points, args.quick))
        print(json.dumps(results["log_density"][-1], indent=1), flush=True)
    if args.quick:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mcmc.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "mcmc.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
