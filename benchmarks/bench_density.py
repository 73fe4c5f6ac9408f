#!/usr/bin/env python3
"""Density-aware Laplace: speed and behaviour of the exact samplers, side by side with the
multivariate Laplace mechanism and the old uncertified 50-step chain, in one process.

    python benchmarks/bench_density.py [--quick]

Token streams: Zipfian, token ``i`` of the space drawn with probability proportional to
``1 / rank^1.07`` (GloVe rows are frequency-ordered), seed 12345; a run perturbs a prefix of the
stream. Timings are medians of 3 runs after a warm-up call (JIT compilation and the exact
neighbour rows of the stream's distinct words, which every decoder of a space shares).

a. Tokens/s of the exact tilt-1 sampler (epsilon 10) on 50,000 and 400,000 GloVe words with
   Scott priors of 10,000 points, all 50,000 words (50k space) and 100,000 points (400k space),
   beside ``MultivariateLaplace(space, 10)`` on the same stream and the old 50-step chain
   (``sampler="chain"``, on a shorter prefix). ``draw`` is the sampler alone
   (``draw_points``), ``end to end`` adds the exact nearest-word decoding (what ``sample``
   does). Streams: 200,000 tokens on 50,000 words, 10,000 on 400,000 words (where the exact
   nearest-word search of every mechanism costs ~1 ms a token). Set-up per distinct word:
   ``draw_points`` over (at most) 5,000 of the stream's distinct words, one token each,
   divided by their number.
b. Exact rejection for tilt 0.1 and 0.5 at epsilon 5, 10, 20 (50k space, 10,000-point prior and
   a prior on all 50,000 words): tokens/s on a stream prefix sized to take ~2 s, the stream's
   acceptance (tokens / proposals) and the acceptance per word (1 / mean proposals) over 20
   frequent and 20 rare words; beside the 50-step chain (same prior and tilt, epsilon 10: its
   cost does not depend on epsilon).
c. Tilt 1: acceptance of the mixing-weight sampler (measured, and ``min_acceptance()``) and
   the ``"budget"`` sampler's delta with 40 proposals (``budget_failure``).
d. Steps the ``"certified"`` chain needs for delta 1e-9 at tilts 0.1, 0.5, 2 (the 20 frequent
   and 20 rare words).
e. ``N_w`` (``plausible_deniability``, 200 draws) at epsilon 5 and 10, tilt 1, for 200 words
   inside and 200 outside the 10,000-point prior, and the same words with the all-words prior;
   the multivariate Laplace mechanism alongside.

Results go to benchmarks/results/density.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import densitydp as dd

RESULTS = Path(__file__).resolve().parent / "results"
STREAM_SEED, WORDS_SEED, ZIPF_EXPONENT = 12345, 0, 1.07
REPEATS = 3


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def zipf_stream(n_words: int, n_tokens: int) -> np.ndarray:
    """Word ids drawn with probability proportional to ``1 / rank^1.07`` (row = rank - 1)."""
    weights = np.arange(1, n_words + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    return np.random.default_rng(STREAM_SEED).choice(
        n_words, size=n_tokens, p=weights / weights.sum()
    )


def median_seconds(function: Callable[[int], Any], repeats: int = REPEATS) -> float:
    times = []
    for rep in range(repeats):
        started = time.perf_counter()
        function(rep)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def density(space: dd.EmbeddingSpace, epsilon: float, prior: dd.KDEPrior, **options: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dd.PrivacyWarning)
        return dd.DensityAwareLaplace(space, epsilon, prior, progress=False, **options)


def old_chain(space: dd.EmbeddingSpace, epsilon: float, prior: dd.KDEPrior, tilt: float) -> Any:
    return density(space, epsilon, prior, tilt=tilt, sampler="chain", n_steps=50)


def end_to_end(mechanism: Any, stream: np.ndarray, rep: int) -> tuple[float, float, np.ndarray]:
    """Seconds of ``draw_points`` and of draw + decode (exactly what ``sample`` does), and the
    proposals of each token."""
    started = time.perf_counter()
    points, proposals = mechanism.draw_points(stream, rng=rep, return_proposals=True)
    drawn = time.perf_counter()
    radii = np.linalg.norm(points - mechanism.space.vectors[stream].astype(np.float64), axis=1)
    mechanism.decode(stream, points, radii)
    return drawn - started, time.perf_counter() - started, proposals


def time_draw_and_decode(mechanism: Any, stream: np.ndarray, warm: bool = True) -> dict[str, Any]:
    if warm:
        mechanism.draw_points(stream[:8], rng=0)  # JIT
    runs = [end_to_end(mechanism, stream, rep) for rep in range(REPEATS)]
    draw = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    return {
        "draw_tokens_per_s": len(stream) / draw,
        "tokens_per_s": len(stream) / total,
        "proposals": runs[0][2],
    }


def time_sample(mechanism: Any, stream: np.ndarray) -> float:
    mechanism.sample(stream[:64], rng=0)
    return len(stream) / median_seconds(lambda rep: mechanism.sample(stream, rng=rep))


def frequent_and_rare(n_words: int, n_each: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``n_each`` words among the 1,000 most frequent and among the 10,000 least frequent."""
    generator = np.random.default_rng(WORDS_SEED)
    frequent = np.sort(generator.choice(1_000, size=n_each, replace=False))
    rare = np.sort(
        generator.choice(np.arange(n_words - 10_000, n_words), size=n_each, replace=False)
    )
    return frequent, rare


# -- a ------------------------------------------------------------------------------------------


def speed_section(
    space: dd.EmbeddingSpace,
    priors: dict[str, dd.KDEPrior],
    n_tokens: int,
    chain_tokens: dict[str, int],
) -> list[dict[str, Any]]:
    epsilon = 10.0
    stream = zipf_stream(len(space), n_tokens)
    distinct = np.unique(stream)
    # set-up per distinct word: one token for each of (at most) 5,000 of the distinct words
    setup_words = np.sort(
        np.random.default_rng(WORDS_SEED).choice(distinct, min(5_000, len(distinct)), replace=False)
    )
    laplace = dd.MultivariateLaplace(space, epsilon)
    started = time.perf_counter()
    laplace.sample(distinct, rng=0)  # JIT and the neighbour rows of the distinct words
    log(
        f"V={len(space):,}: warm-up (neighbour rows of {len(distinct):,} words) "
        f"{time.perf_counter() - started:.1f} s"
    )
    laplace_rate = time_sample(laplace, stream)
    log(f"V={len(space):,}: Laplace {laplace_rate:,.0f} tokens/s")
    rows = []
    for label, prior in priors.items():
        mechanism = density(space, epsilon, prior)
        rates = time_draw_and_decode(mechanism, stream)
        setup = median_seconds(
            lambda rep, mechanism=mechanism: mechanism.draw_points(setup_words, rng=rep)
        ) / len(setup_words)
        chain = old_chain(space, epsilon, prior, 1.0)
        short = stream[: chain_tokens[label]]
        chain_rates = time_draw_and_decode(chain, short)
        chain_rate = chain_rates["tokens_per_s"]
        row = {
            "n_words": len(space),
            "prior": label,
            "prior_points": prior.n_points,
            "bandwidth": prior.bandwidth,
            "epsilon": epsilon,
            "n_tokens": len(stream),
            "n_distinct": len(distinct),
            "setup_ms_per_distinct_word": 1000 * setup,
            "exact_draw_tokens_per_s": rates["draw_tokens_per_s"],
            "exact_tokens_per_s": rates["tokens_per_s"],
            "laplace_tokens_per_s": laplace_rate,
            "exact_over_laplace": rates["tokens_per_s"] / laplace_rate,
            "chain_n_tokens": len(short),
            "chain_n_distinct": len(np.unique(short)),
            "chain_tokens_per_s": chain_rate,
            "chain_draw_tokens_per_s": chain_rates["draw_tokens_per_s"],
            "exact_over_chain": rates["tokens_per_s"] / chain_rate,
            "exact_over_chain_draw": rates["draw_tokens_per_s"] / chain_rates["draw_tokens_per_s"],
        }
        log(json.dumps(row))
        rows.append(row)
    return rows


# -- b ------------------------------------------------------------------------------------------


def acceptance_per_word(mechanism: Any, words: np.ndarray, per_word: int) -> np.ndarray:
    ids = np.repeat(words, per_word)
    _, proposals = mechanism.draw_points(ids, rng=1, return_proposals=True)
    return per_word / proposals.reshape(len(words), per_word).sum(axis=1)


def rejection_section(
    space: dd.EmbeddingSpace, priors: dict[str, dd.KDEPrior], quick: bool
) -> list[dict[str, Any]]:
    frequent, rare = frequent_and_rare(len(space))
    words = np.concatenate([frequent, rare])
    stream = zipf_stream(len(space), 20_000)
    target = 1.0 if quick else 2.0
    rows = []
    for label, prior in priors.items():
        for tilt in (0.1, 0.5):
            chain = old_chain(space, 10.0, prior, tilt)
            chain.sample(stream[:8], rng=0)
            pilot = 32
            started = time.perf_counter()
            chain.sample(stream[:pilot], rng=0)
            n_chain = int(np.clip(target * pilot / (time.perf_counter() - started), 50, 5_000))
            chain_rate = time_sample(chain, stream[:n_chain])
            for epsilon in (5.0, 10.0, 20.0):
                mechanism = density(space, epsilon, prior, tilt=tilt)
                # per-word acceptance, 5 tokens per word (the pilot for the stream's length) ...
                started = time.perf_counter()
                per_word = acceptance_per_word(mechanism, words, 5)
                pilot_rate = 5 * len(words) / (time.perf_counter() - started)
                # ... or more, up to 100, when they take at most ~3 s
                tokens_per_word = int(np.clip(3.0 * pilot_rate / len(words), 5, 100))
                if tokens_per_word > 5:
                    per_word = acceptance_per_word(mechanism, words, tokens_per_word)
                n_tokens = int(np.clip(target * pilot_rate, 50, len(stream)))
                short = stream[:n_tokens]
                rates = time_draw_and_decode(mechanism, short, warm=False)
                proposals = rates["proposals"]
                row = {
                    "prior": label,
                    "prior_points": prior.n_points,
                    "tilt": tilt,
                    "epsilon": epsilon,
                    "n_tokens": n_tokens,
                    "n_distinct": len(np.unique(short)),
                    "exact_tokens_per_s": rates["tokens_per_s"],
                    "exact_draw_tokens_per_s": rates["draw_tokens_per_s"],
                    "stream_acceptance": len(short) / float(proposals.sum()),
                    "tokens_per_word": tokens_per_word,
                    "acceptance_median": float(np.median(per_word)),
                    "acceptance_min": float(per_word.min()),
                    "acceptance_min_word": space.words([int(words[per_word.argmin()])])[0],
                    "acceptance_median_frequent": float(np.median(per_word[: len(frequent)])),
                    "acceptance_median_rare": float(np.median(per_word[len(frequent) :])),
                    "chain_epsilon": 10.0,
                    "chain_n_tokens": n_chain,
                    "chain_tokens_per_s": chain_rate,
                    "exact_over_chain": rates["tokens_per_s"] / chain_rate,
                }
                log(json.dumps(row))
                rows.append(row)
    return rows


# -- c ------------------------------------------------------------------------------------------


def tilt_one_section(
    space: dd.EmbeddingSpace, priors: dict[str, dd.KDEPrior]
) -> list[dict[str, Any]]:
    frequent, rare = frequent_and_rare(len(space))
    words = np.concatenate([frequent, rare])
    stream = zipf_stream(len(space), 50_000)
    rows = []
    for label, prior in priors.items():
        for epsilon in (5.0, 10.0, 20.0):
            mechanism = density(space, epsilon, prior)
            _, proposals = mechanism.draw_points(stream, rng=0, return_proposals=True)
            per_word = acceptance_per_word(mechanism, words, 500)
            budget = density(space, epsilon, prior, sampler="budget", max_proposals=40)
            row = {
                "prior": label,
                "prior_points": prior.n_points,
                "epsilon": epsilon,
                "stream_acceptance": len(stream) / float(proposals.sum()),
                "acceptance_min_per_word": float(per_word.min()),
                "min_acceptance": mechanism.min_acceptance(),
                "budget_max_proposals": 40,
                "budget_failure": budget.budget_failure,
            }
            log(json.dumps(row))
            rows.append(row)
    return rows


# -- d ------------------------------------------------------------------------------------------


def certified_section(
    space: dd.EmbeddingSpace, priors: dict[str, dd.KDEPrior]
) -> list[dict[str, Any]]:
    frequent, rare = frequent_and_rare(len(space))
    rows = []
    for label, prior in priors.items():
        started = time.perf_counter()
        log_sup = prior.log_sup_bound()
        log(f"{label}: log_sup_bound {log_sup:.3f} in {time.perf_counter() - started:.1f} s")
        for tilt in (0.1, 0.5, 2.0):
            for epsilon in (5.0, 10.0, 20.0):
                mechanism = density(
                    space,
                    epsilon,
                    prior,
                    tilt=tilt,
                    sampler="certified",
                    delta=1e-9,
                    max_steps=10**18,
                )
                row: dict[str, Any] = {
                    "prior": label,
                    "prior_points": prior.n_points,
                    "log_sup_bound": log_sup,
                    "tilt": tilt,
                    "epsilon": epsilon,
                    "delta": 1e-9,
                }
                for group, ids in (("frequent", frequent), ("rare", rare)):
                    steps = mechanism.certified_steps(ids)
                    row[f"{group}_median_steps"] = float(np.median(steps))
                    row[f"{group}_max_steps"] = float(np.max(steps))
                log(json.dumps(row))
                rows.append(row)
    return rows


# -- e ------------------------------------------------------------------------------------------


def deniability_section(
    space: dd.EmbeddingSpace, subsample: dd.KDEPrior, everything: dd.KDEPrior, n_each: int
) -> list[dict[str, Any]]:
    generator = np.random.default_rng(WORDS_SEED)
    inside_ids = np.asarray(subsample.reference_ids)
    outside_ids = np.setdiff1d(np.arange(len(space)), inside_ids)
    groups = {
        "inside": np.sort(generator.choice(inside_ids, size=n_each, replace=False)),
        "outside": np.sort(generator.choice(outside_ids, size=n_each, replace=False)),
    }
    rows = []
    for epsilon in (5.0, 10.0):
        settings = {
            "multivariate Laplace": dd.MultivariateLaplace(space, epsilon),
            f"tilt 1, {subsample.n_points:,}-point prior": density(space, epsilon, subsample),
            f"tilt 1, all {everything.n_points:,} words": density(space, epsilon, everything),
        }
        for label, mechanism in settings.items():
            ids = np.concatenate(list(groups.values()))
            table = dd.plausible_deniability(mechanism, ids, n_samples=200, rng=0)
            n_w = table["N_w"].to_numpy()
            row: dict[str, Any] = {"epsilon": epsilon, "mechanism": label}
            for position, (group, members) in enumerate(groups.items()):
                chunk = slice(position * n_each, (position + 1) * n_each)
                assert np.array_equal(table["word_id"].to_numpy()[chunk], members)
                values = n_w[chunk]
                row[f"{group}_median"] = float(np.median(values))
                row[f"{group}_q25"] = float(np.quantile(values, 0.25))
                row[f"{group}_q75"] = float(np.quantile(values, 0.75))
            log(json.dumps(row))
            rows.append(row)
    return rows


# -- report -------------------------------------------------------------------------------------


def fmt_steps(value: float) -> str:
    if not math.isfinite(value):
        return "inf"
    return f"{value:,.0f}" if value < 1e7 else f"{value:.2g}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Density-aware Laplace benchmarks ({results['date']}, {results['machine']}, one "
        f"process; {results['elapsed_minutes']:.1f} min)",
        "",
        f"Zipfian token streams (p ~ 1/rank^{ZIPF_EXPONENT}, seed {STREAM_SEED}); medians of "
        f"{REPEATS} runs; Scott priors (`KDEPrior.fit(space, 'scott', max_points=N, rng=0)`).",
        "",
        "a. Tilt 1, exact mixture sampler, epsilon 10 (tokens/s; draw = `draw_points` only; end "
        "to end = draw + exact nearest-word decoding, what `sample` does):",
        "",
        "| V | prior points | tokens (distinct) | set-up per distinct word | exact: draw | "
        "exact: end to end | Laplace | exact / Laplace | chain: draw | chain: end to end "
        "(tokens) | exact / chain: draw | exact / chain: end to end |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["speed"]:
        lines.append(
            f"| {row['n_words']:,} | {row['prior_points']:,} | {row['n_tokens']:,} "
            f"({row['n_distinct']:,}) | {row['setup_ms_per_distinct_word']:.3f} ms | "
            f"{row['exact_draw_tokens_per_s']:,.0f} | {row['exact_tokens_per_s']:,.0f} | "
            f"{row['laplace_tokens_per_s']:,.0f} | {row['exact_over_laplace']:.2f} | "
            f"{row['chain_draw_tokens_per_s']:,.1f} | "
            f"{row['chain_tokens_per_s']:,.1f} ({row['chain_n_tokens']:,}) | "
            f"{row['exact_over_chain_draw']:,.0f}x | {row['exact_over_chain']:,.0f}x |"
        )
    lines += [
        "",
        "b. 0 < tilt < 1, exact rejection (tokens/s end to end on a stream prefix sized to "
        "take ~2 s; acceptance = tokens / proposals on that prefix, and per word = 1 / mean "
        "proposals over 20 frequent + 20 rare words; chain: 50 steps, same prior and tilt, "
        "epsilon 10):",
        "",
        "| prior points | tilt | epsilon | tokens (distinct) | exact | stream acceptance | "
        "per word: median (frequent / rare) | per word: min | chain | exact / chain |",
        "|---:|---:|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in results["rejection"]:
        lines.append(
            f"| {row['prior_points']:,} | {row['tilt']:g} | {row['epsilon']:g} | "
            f"{row['n_tokens']:,} ({row['n_distinct']:,}) | {row['exact_tokens_per_s']:,.0f} | "
            f"{row['stream_acceptance']:.3g} | {row['acceptance_median']:.3g} "
            f"({row['acceptance_median_frequent']:.3g} / {row['acceptance_median_rare']:.3g}) | "
            f"{row['acceptance_min']:.3g} ({row['acceptance_min_word']}) | "
            f"{row['chain_tokens_per_s']:,.1f} | {row['exact_over_chain']:.2f}x |"
        )
    lines += [
        "",
        "c. Tilt 1, mixing-weight rejection: acceptance of one proposal (stream of 50,000 "
        "tokens; smallest per-word value over the 40 words, 500 tokens each; "
        "`min_acceptance()` over every kernel distance) and the budget sampler's delta "
        "(`budget_failure`, 40 proposals):",
        "",
        "| prior points | epsilon | stream acceptance | min per word | `min_acceptance()` | "
        "budget delta (40) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["tilt_one"]:
        lines.append(
            f"| {row['prior_points']:,} | {row['epsilon']:g} | {row['stream_acceptance']:.4f} | "
            f"{row['acceptance_min_per_word']:.4f} | {row['min_acceptance']:.4f} | "
            f"{row['budget_failure']:.2e} |"
        )
    lines += [
        "",
        "d. Steps of the certified chain for delta 1e-9 (`certified_steps`; 20 frequent words "
        "among the top 1,000, 20 rare among the last 10,000; median / max):",
        "",
        "| prior points | tilt | epsilon | frequent: median | frequent: max | rare: median | "
        "rare: max |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["certified"]:
        lines.append(
            f"| {row['prior_points']:,} | {row['tilt']:g} | {row['epsilon']:g} | "
            f"{fmt_steps(row['frequent_median_steps'])} | {fmt_steps(row['frequent_max_steps'])} "
            f"| {fmt_steps(row['rare_median_steps'])} | {fmt_steps(row['rare_max_steps'])} |"
        )
    n_each = results["settings"]["deniability_words_each"]
    lines += [
        "",
        f"e. N_w (fraction of 200 draws returning the word) for {n_each} words inside and "
        f"{n_each} outside the 10,000-point prior (drawn uniformly from each set; median "
        "[quartiles]):",
        "",
        "| epsilon | mechanism | inside the 10k prior | outside it |",
        "|---:|---|---|---|",
    ]
    for row in results["deniability"]:
        lines.append(
            f"| {row['epsilon']:g} | {row['mechanism']} | {row['inside_median']:.3f} "
            f"[{row['inside_q25']:.3f}, {row['inside_q75']:.3f}] | {row['outside_median']:.3f} "
            f"[{row['outside_q25']:.3f}, {row['outside_q75']:.3f}] |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Shorter runs (a smoke test).")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {numba.config.NUMBA_NUM_THREADS} cores",
        "densitydp": dd.__version__,
        "settings": {
            "stream_seed": STREAM_SEED,
            "words_seed": WORDS_SEED,
            "zipf_exponent": ZIPF_EXPONENT,
            "repeats": REPEATS,
            "prior_seed": 0,
            "deniability_words_each": 50 if args.quick else 200,
        },
    }
    small = dd.load_glove(top=50_000)
    priors = {
        "10k": dd.KDEPrior.fit(small, bandwidth="scott", max_points=10_000, rng=0),
        "all": dd.KDEPrior.fit(small, bandwidth="scott", rng=0),
    }
    results["deniability"] = deniability_section(
        small, priors["10k"], priors["all"], results["settings"]["deniability_words_each"]
    )
    results["certified"] = certified_section(small, priors)
    results["tilt_one"] = tilt_one_section(small, priors)
    results["rejection"] = rejection_section(small, priors, args.quick)
    chain_tokens = {"10k": 300, "all": 100} if args.quick else {"10k": 1_000, "all": 200}
    results["speed"] = speed_section(small, priors, 20_000 if args.quick else 200_000, chain_tokens)
    large = dd.load_glove()
    large_priors = {
        "10k": dd.KDEPrior.fit(large, bandwidth="scott", max_points=10_000, rng=0),
        "100k": dd.KDEPrior.fit(large, bandwidth="scott", max_points=100_000, rng=0),
    }
    results["speed"] += speed_section(
        large,
        large_priors,
        5_000 if args.quick else 10_000,
        {"10k": 300, "100k": 50} if args.quick else {"10k": 1_000, "100k": 100},
    )
    results["elapsed_minutes"] = (time.perf_counter() - started) / 60
    text = markdown(results)
    print(text)
    if args.quick:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "density.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "density.md").write_text(text)


if __name__ == "__main__":
    main()
