#!/usr/bin/env python3
"""Cost of validating the neighbour cache on load, against a plain load and against a build.

Builds the exact k = 64 table of the GloVe 6B-50d words once (all 400,000 by default; several
minutes on 2 cores), saves it to a private temporary cache folder, then loads it ``--repeats``
times: the plain load (open the file, check its metadata, read the arrays) and the validated load
(the same plus every check of ``densitydp.neighbors._validate``), each check also timed alone.
Writes ``benchmarks/results/cache_<n>.json`` and ``.md``.

    python benchmarks/bench_cache.py                  # 400,000 words
    python benchmarks/bench_cache.py --n-words 50000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def timed(function, *args, **options):
    started = time.perf_counter()
    value = function(*args, **options)
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-words", type=int, default=400_000)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    os.environ["DENSITYDP_CACHE"] = tempfile.mkdtemp(prefix="densitydp-bench-cache-")

    import densitydp as dd
    from densitydp import neighbors as nb

    space = dd.load_glove(top=options.n_words) if options.n_words < 400_000 else dd.load_glove()
    vectors = np.ascontiguousarray(space.vectors, dtype=np.float32)
    n_words, k = len(vectors), options.k
    key = nb.fingerprint(vectors)
    small = vectors[:3000].copy()
    nb.cached_table(small, nb.fingerprint(small), 8, progress=False)  # compile every kernel
    nb._load(
        nb._table_path(nb.cache_dir(), nb.fingerprint(small), 8), small, nb.fingerprint(small), 8
    )

    build_seconds, table = timed(nb.build_table, vectors, k, progress=False)
    save_seconds, path = timed(nb._save, table, vectors, key)
    assert path is not None
    print(f"build {build_seconds:.1f} s, save (with witnesses) {save_seconds:.2f} s", flush=True)

    runs: dict[str, list[float]] = {
        name: []
        for name in (
            "plain_load",
            "validated_load",
            "rows",
            "symmetry",
            "sampled_rows",
            "closest_pair",
            "farthest_pair",
        )
    }
    for _ in range(options.repeats):
        nb._CERTIFIED.clear()
        seconds, (meta, (ids, distances)) = timed(nb._read, path, key, n_words, k)
        runs["plain_load"].append(seconds)
        seconds, loaded = timed(nb._load, path, vectors, key, k)
        assert loaded is not None and np.array_equal(loaded.ids, table.ids)
        runs["validated_load"].append(seconds)
        status = np.empty(n_words, dtype=np.int8)
        runs["rows"].append(timed(nb._kernels.check_table_rows, ids, distances, vectors, status)[0])
        runs["symmetry"].append(timed(nb._kernels.check_table_symmetry, ids, distances, status)[0])
        sample = np.random.default_rng().choice(n_words, nb._VERIFIED_ROWS, replace=False)
        runs["sampled_rows"].append(timed(nb.partial_table, vectors, sample, k, progress=False)[0])
        runs["closest_pair"].append(timed(nb._closest_pair, vectors, meta["min_distance"])[0])
        runs["farthest_pair"].append(timed(nb._farthest_pair, vectors, meta["max_distance"])[0])
        print({name: round(values[-1], 3) for name, values in runs.items()}, flush=True)

    median = {name: statistics.median(values) for name, values in runs.items()}
    validation = median["validated_load"] - median["plain_load"]
    result = {
        "benchmark": "neighbour cache validation on load",
        "n_words": n_words,
        "k": k,
        "verified_rows": nb._VERIFIED_ROWS,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "numba_threads": __import__("numba").get_num_threads(),
            "densitydp": metadata.version("densitydp"),
            "numpy": np.__version__,
            "numba": metadata.version("numba"),
        },
        "file_bytes": path.stat().st_size,
        "build_seconds": build_seconds,
        "save_seconds": save_seconds,
        "runs_seconds": runs,
        "median_seconds": median,
        "validation_seconds": validation,
        "validation_over_plain_load": validation / median["plain_load"],
        "validated_load_over_build": median["validated_load"] / build_seconds,
        "min_distance": table.min_distance,
        "max_distance": table.max_distance,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"cache_{n_words}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"Neighbour cache validation, exact {k}-NN table of {n_words:,} GloVe 6B-50d words "
        f"({result['date']}, {os.cpu_count()} CPUs, median of {options.repeats} loads)",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| build the table (once) | {build_seconds:.1f} |",
        f"| save, with the witness pairs (once) | {save_seconds:.2f} |",
        f"| plain load (open, metadata, read arrays) | {median['plain_load']:.3f} |",
        f"| validated load | {median['validated_load']:.3f} |",
        f"| - ids and exact distance of every pair | {median['rows']:.3f} |",
        f"| - neighbour symmetry | {median['symmetry']:.3f} |",
        f"| - {nb._VERIFIED_ROWS} random rows recomputed exactly | {median['sampled_rows']:.3f} |",
        f"| - closest-pair certificate (min distance) | {median['closest_pair']:.3f} |",
        f"| - centroid certificate (diameter) | {median['farthest_pair']:.3f} |",
        "",
        f"Validation: {validation:.2f} s, {result['validation_over_plain_load']:.1f} x the plain "
        f"load; the validated load is {100 * result['validated_load_over_build']:.2f} % of a "
        "build.",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
