#!/usr/bin/env python3
"""Issue 16, target 1: small calls (one short text per ``perturb_text`` call).

One process, the 50,000 most frequent GloVe words; "before" is the text module as it was
before issue 16 (``tests/reference/text.py``, verbatim) with the uncached ``neighbor_rows`` of
that time patched back into the mechanisms, "after" is the current code; both use the same
mechanism kernels.

1. A 16-word sentence, ``perturb_text(sentence, mechanism, rng=i)``: median over ``--calls``
   calls after a warm-up (the sentence's neighbour rows are known), TEM (epsilon 10),
   truncated Gumbel (1.5 x its minimum epsilon) and Laplace (epsilon 10), before and after.
2. ``--reviews`` Rotten Tomatoes reviews: a loop of ``perturb_text`` calls (what
   ``df.text.apply`` does) against ``perturb_texts`` (one call) and ``perturb_text`` on the
   list, TEM epsilon 10. *Cold*: each variant on a freshly loaded space (no neighbour row
   known: rows are computed as words first appear), once; *warm*: the same variants again on
   a space that already holds the rows, median of ``--repeats``.

Writes ``benchmarks/results/small_calls.json`` and ``.md``.

    python benchmarks/bench_small_calls.py
    python benchmarks/bench_small_calls.py --reviews 2000 --calls 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))

SENTENCE = "The old man said that the city would open a new school for the children next year."


def _old_neighbor_rows(space: Any, words: np.ndarray, width: int) -> tuple[np.ndarray, Any]:
    """``mechanisms.base.neighbor_rows`` before issue 16 (no row cache)."""
    from densitydp.mechanisms import _kernels

    table = space.neighbors(width, word_ids=words, progress=False)
    ids = np.ascontiguousarray(table.rows(words)[0], dtype=np.int64)
    distances = np.empty(ids.shape)
    _kernels.row_distances(words, ids, space.vectors, distances)
    return ids, distances


@contextmanager
def before_rows() -> Iterator[None]:
    """Patch the old ``neighbor_rows`` into the modules that imported it."""
    from densitydp.mechanisms import exponential, gumbel

    saved = exponential.neighbor_rows, gumbel.neighbor_rows
    exponential.neighbor_rows = gumbel.neighbor_rows = _old_neighbor_rows
    try:
        yield
    finally:
        exponential.neighbor_rows, gumbel.neighbor_rows = saved


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reviews", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import densitydp as dd
    from reference import text as before

    def fresh_space() -> Any:
        return dd.load_glove(top=50_000)

    space = fresh_space()
    n_words = len(dd.tokenize(SENTENCE)) // 2
    gumbel = dd.TruncatedGumbel(space, scale=1.0)
    mechanisms = {
        "TEM, epsilon 10": dd.TruncatedExponential(space, epsilon=10.0),
        "truncated Gumbel, 1.5 x min epsilon": dd.TruncatedGumbel(
            space, epsilon=1.5 * gumbel.min_epsilon
        ),
        "Laplace, epsilon 10": dd.MultivariateLaplace(space, epsilon=10.0),
    }
    sentence: dict[str, dict[str, float]] = {}
    for name, mechanism in mechanisms.items():
        ids = np.array([space.vocabulary.lookup(w) for w in dd.tokenize(SENTENCE)[1::2]])
        variants: dict[str, Callable[[int], object]] = {
            "before": lambda i, m=mechanism: before.perturb_text(SENTENCE, m, rng=i),
            "after": lambda i, m=mechanism: dd.perturb_text(SENTENCE, m, rng=i),
            "sample alone": lambda i, m=mechanism, ids=ids: m.sample(ids, rng=i),
        }
        times: dict[str, list[float]] = {key: [] for key in variants}
        for i in range(10):
            for key, run in variants.items():
                with before_rows() if key == "before" else _nothing():
                    run(i)
        for i in range(args.calls):  # interleaved, so load hits every variant alike
            for key, run in variants.items():
                with before_rows() if key == "before" else _nothing():
                    times[key].append(timed(lambda run=run, i=i: run(i)))
        sentence[name] = {key: 1e3 * float(np.median(values)) for key, values in times.items()}
        print(name, sentence[name], flush=True)

    reviews = [text.replace("\n", " ") for text in dd.load_dataset("rotten_tomatoes").texts]
    reviews = (reviews * (args.reviews // len(reviews) + 1))[: args.reviews]
    n_tokens = sum(len(dd.tokenize(text)) // 2 for text in reviews)

    def loop(module: Any, mechanism: Any) -> Callable[[], object]:
        return lambda: [module.perturb_text(t, mechanism, rng=i) for i, t in enumerate(reviews)]

    def variants_on(space: Any) -> dict[str, Callable[[], object]]:
        tem = dd.TruncatedExponential(space, epsilon=10.0)
        return {
            "loop of perturb_text (before)": loop(before, tem),
            "loop of perturb_text": loop(dd, tem),
            "perturb_texts": lambda: dd.perturb_texts(reviews, tem, rng=0),
            "perturb_text on the list": lambda: dd.perturb_text(reviews, tem, rng=0),
        }

    cold: dict[str, float] = {}
    for key in variants_on(space):
        run = variants_on(fresh_space())[key]
        with before_rows() if "before" in key else _nothing():
            cold[key] = timed(run)
        print("cold", key, cold[key], flush=True)
    warm_space = fresh_space()
    warm_runs = variants_on(warm_space)
    warm_runs["perturb_text on the list"]()  # every row known
    warm_times: dict[str, list[float]] = {key: [] for key in warm_runs}
    for _ in range(args.repeats):
        for key, run in warm_runs.items():
            with before_rows() if "before" in key else _nothing():
                warm_times[key].append(timed(run))
    warm = {key: float(np.median(values)) for key, values in warm_times.items()}
    print("warm", warm, flush=True)

    command = ("python benchmarks/bench_small_calls.py " + " ".join(sys.argv[1:])).strip()
    result = {
        "command": command,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "sentence": SENTENCE,
        "sentence_words": n_words,
        "sentence_ms_median": sentence,
        "reviews": args.reviews,
        "review_word_tokens": n_tokens,
        "cold_seconds": cold,
        "warm_seconds_median": warm,
        "warm_seconds": warm_times,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "small_calls.json").write_text(json.dumps(result, indent=2) + "\n")
    batched = "perturb_texts"
    lines = [
        f"Small calls (issue 16, target 1): `{command}` ({result['when']}, "
        f"{result['machine']}, shared machine; one process, variants interleaved)",
        "",
        f"1. One {n_words}-word sentence per `perturb_text` call on the 50,000 most frequent "
        f"GloVe words (median of {args.calls} calls, neighbour rows already known):",
        "",
        "| mechanism | before (ms) | after (ms) | before / after | mechanism.sample alone (ms) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {v['before']:.3f} | {v['after']:.3f} | "
            f"{v['before'] / v['after']:.1f}x | {v['sample alone']:.3f} |"
            for name, v in sentence.items()
        ),
        "",
        f"2. {args.reviews:,} Rotten Tomatoes reviews ({n_tokens:,} word tokens), TEM epsilon "
        "10. Cold: each variant on a freshly loaded space, once; warm: the rows already "
        f"known, median of {args.repeats}.",
        "",
        "| variant | cold (s) | cold x perturb_texts | warm (s) | warm x perturb_texts |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {key} | {cold[key]:.2f} | {cold[key] / cold[batched]:.2f} | {warm[key]:.2f} | "
            f"{warm[key] / warm[batched]:.2f} |"
            for key in cold
        ),
        "",
    ]
    (RESULTS / "small_calls.md").write_text("\n".join(lines))
    print("\n".join(lines))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
