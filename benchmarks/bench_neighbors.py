#!/usr/bin/env python3
"""Exact k-NN table of GloVe: densitydp against scikit-learn brute force and faiss IndexFlatL2.

Every method runs in its own child process on the same vectors (the first ``--n-words`` GloVe
words, float32), one after the other, so that its wall time and peak resident memory are its
own. densitydp's figure includes what the others do not give: certified exact ordering
(float64 re-ranking, ties by id), the smallest distance and the exact diameter. The parent
compares every table with densitydp's and writes JSON and a Markdown table.

    python benchmarks/bench_neighbors.py                  # 400,000 words, k = 64
    python benchmarks/bench_neighbors.py --n-words 50000  # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

METHODS = ("densitydp", "sklearn-brute", "faiss-flat")
RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(method: str, n_words: int, k: int, out: Path) -> None:
    import densitydp as dd
    from densitydp import neighbors

    vectors = dd.load_glove(top=n_words).vectors
    if method == "densitydp":
        neighbors.build_table(vectors[:2000].copy(), 8, progress=False)  # JIT warm-up
    loaded = rss_mb()
    started = time.perf_counter()
    extra = {}
    if method == "densitydp":
        table = neighbors.build_table(vectors, k, progress=False)
        ids, distances = table.ids, table.distances
        extra = {
            "min_distance": table.min_distance,
            "max_distance": table.max_distance,
            "n_exact_fallback": table.n_exact_fallback,
        }
    elif method == "sklearn-brute":
        from sklearn.neighbors import NearestNeighbors

        model = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(vectors)
        distances, ids = model.kneighbors(vectors)
    elif method == "faiss-flat":
        import faiss

        index = faiss.IndexFlatL2(vectors.shape[1])
        index.add(vectors)
        squared, ids = index.search(vectors, k)
        distances = np.sqrt(np.maximum(squared, 0))  # faiss returns squared distances
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    np.save(out.with_suffix(".ids.npy"), np.asarray(ids, dtype=np.int64))
    np.save(out.with_suffix(".dist.npy"), np.asarray(distances, dtype=np.float64))
    out.write_text(
        json.dumps(
            {
                "method": method,
                "seconds": seconds,
                "peak_rss_mb": rss_mb(),
                "rss_after_load_mb": loaded,
                **extra,
            }
        )
    )


def versions() -> dict:
    found = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    for package in ("densitydp", "numpy", "numba", "scikit-learn", "faiss-cpu", "threadpoolctl"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def compare(
    reference_ids: np.ndarray, reference_dist: np.ndarray, ids: np.ndarray, dist: np.ndarray
) -> dict:
    same_rows = (ids == reference_ids).all(axis=1)
    same_sets = (np.sort(ids, axis=1) == np.sort(reference_ids, axis=1)).all(axis=1)
    return {
        "rows_identical": float(same_rows.mean()),
        "rows_same_set": float(same_sets.mean()),
        "max_abs_distance_error": float(np.abs(np.sort(dist, 1) - reference_dist).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-words", type=int, default=400_000)
    parser.add_argument("-k", type=int, default=64)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n_words, args.k, args.out)
        return

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            if method == "faiss-flat":
                try:
                    metadata.version("faiss-cpu")
                except metadata.PackageNotFoundError:
                    print("faiss-cpu is not installed: skipped", file=sys.stderr)
                    continue
            out = Path(scratch) / f"{method}.json"
            print(f"{method}: {args.n_words:,} words, k={args.k} ...", file=sys.stderr, flush=True)
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    method,
                    "--out",
                    str(out),
                    "--n-words",
                    str(args.n_words),
                    "-k",
                    str(args.k),
                ],
                check=True,
            )
            row = json.loads(out.read_text())
            row["ids"], row["dist"] = (
                np.load(out.with_suffix(".ids.npy")),
                np.load(out.with_suffix(".dist.npy")),
            )
            rows.append(row)
            print(
                f"  {row['seconds']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB", file=sys.stderr
            )
    arrays = [(row.pop("ids"), row.pop("dist")) for row in rows]
    methods = [row["method"] for row in rows]
    fastest = min(row["seconds"] for row in rows)
    for row, (ids, dist) in zip(rows, arrays, strict=True):
        row["ratio_to_fastest"] = row["seconds"] / fastest
        if "densitydp" in methods and row["method"] != "densitydp":
            exact_ids, exact_dist = arrays[methods.index("densitydp")]
            row.update(compare(exact_ids, exact_dist, ids, dist))
    report = {
        "benchmark": "exact k-NN table of GloVe 6B-50d",
        "n_words": args.n_words,
        "k": args.k,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": versions(),
        "results": rows,
    }
    write(report)


def write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    stem = f"neighbors_{report['n_words']}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        f"Exact {report['k']}-NN table of the first {report['n_words']:,} GloVe 6B-50d words "
        f"({report['date']}, {report['versions']['cpus']} CPUs, Python "
        f"{report['versions']['python']})",
        "",
        "| method | seconds | x fastest | peak RSS (MB) | rows identical to exact "
        "| same neighbour set |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        identical = row.get("rows_identical", 1.0)
        same_set = row.get("rows_same_set", 1.0)
        lines.append(
            f"| {row['method']} | {row['seconds']:.1f} | {row['ratio_to_fastest']:.2f} | "
            f"{row['peak_rss_mb']:.0f} | {identical:.4%} | {same_set:.4%} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
