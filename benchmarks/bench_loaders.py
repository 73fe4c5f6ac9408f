#!/usr/bin/env python3
"""Load time and peak memory of EmbeddingSpace.from_file beside gensim's load_word2vec_format.

Generates a random 400,000 x 300 space (words ``w0000000``..., values N(0, 0.4^2)), writes it
once as word2vec text (6 significant digits, as GloVe files have) and as word2vec binary, then
loads each file in a fresh subprocess per loader and repeat: wall time of the load call, and peak
memory as ``ru_maxrss`` after the load minus ``ru_maxrss`` after the imports (the process's own
peak, so temporaries count). The raw float32 size is ``n_words * dim * 4`` bytes. Writes
``benchmarks/results/loaders.json`` and ``.md``.

    python benchmarks/bench_loaders.py                     # 400,000 x 300 (about 1.2 GB of text)
    python benchmarks/bench_loaders.py --n-words 50000     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

GENERATE = """
import sys, numpy as np, densitydp as dd
n_words, dim, text, binary = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = np.random.default_rng(0)
vectors = rng.normal(0.0, 0.4, size=(n_words, dim)).astype(np.float32)
space = dd.EmbeddingSpace([f"w{i:07d}" for i in range(n_words)], vectors)
space.to_file(text, format="word2vec", precision=6)
space.to_file(binary, format="word2vec-binary")
"""

LOAD = """
import json, resource, sys, time
loader, path = sys.argv[1], sys.argv[2]
if loader == "densitydp":
    import densitydp as dd
    load = lambda: dd.EmbeddingSpace.from_file(path).vectors
else:
    from gensim.models import KeyedVectors
    binary = path.endswith(".bin")
    load = lambda: KeyedVectors.load_word2vec_format(path, binary=binary).vectors
import numpy  # noqa: F401
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
vectors = load()
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_bytes": (peak - baseline) * 1024,
                  "shape": list(vectors.shape), "checksum": float(vectors[::997].sum())}))
"""


def run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-words", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    options = parser.parse_args()
    n_words, dim = options.n_words, options.dim
    raw_bytes = n_words * dim * 4
    with tempfile.TemporaryDirectory(prefix="densitydp-bench-loaders-") as folder:
        text = os.path.join(folder, "vectors.txt")
        binary = os.path.join(folder, "vectors.bin")
        started = time.perf_counter()
        run(GENERATE, str(n_words), str(dim), text, binary)
        generate_seconds = time.perf_counter() - started
        sizes = {"text": os.path.getsize(text), "binary": os.path.getsize(binary)}
        rows = []
        for kind, path in (("text", text), ("binary", binary)):
            for loader in ("densitydp", "gensim"):
                for repeat in range(options.repeats):
                    measured = json.loads(run(LOAD, loader, path))
                    measured.update(file=kind, loader=loader, repeat=repeat)
                    rows.append(measured)
                    print(
                        f"{kind:6s} {loader:9s} {measured['seconds']:7.2f} s  "
                        f"peak {measured['peak_bytes'] / 2**20:7.0f} MiB "
                        f"({measured['peak_bytes'] / raw_bytes:.2f} x raw)",
                        flush=True,
                    )
    for kind in ("text", "binary"):
        checksums = {r["checksum"] for r in rows if r["file"] == kind}
        assert len(checksums) == 1, f"the loaders disagree on the {kind} file: {checksums}"

    def best(kind: str, loader: str, key: str) -> float:
        return min(r[key] for r in rows if r["file"] == kind and r["loader"] == loader)

    summary = {
        kind: {
            "densitydp_seconds": best(kind, "densitydp", "seconds"),
            "gensim_seconds": best(kind, "gensim", "seconds"),
            "time_ratio": best(kind, "densitydp", "seconds") / best(kind, "gensim", "seconds"),
            "densitydp_peak_over_raw": best(kind, "densitydp", "peak_bytes") / raw_bytes,
            "gensim_peak_over_raw": best(kind, "gensim", "peak_bytes") / raw_bytes,
        }
        for kind in ("text", "binary")
    }
    result = {
        "benchmark": "loaders",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n_words": n_words,
        "dim": dim,
        "raw_float32_bytes": raw_bytes,
        "file_bytes": sizes,
        "generate_seconds": generate_seconds,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "gensim": metadata.version("gensim"),
        "numpy": metadata.version("numpy"),
        "rows": rows,
        "summary": summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loaders.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Loading a {n_words:,} x {dim} word2vec file ({result['date']}, {result['cpus']} CPUs, "
        f"best of {options.repeats}; each load in a fresh process; raw float32 "
        f"{raw_bytes / 1e6:.0f} MB; text file {sizes['text'] / 1e6:.0f} MB, binary "
        f"{sizes['binary'] / 1e6:.0f} MB; gensim {result['gensim']})",
        "",
        "| file | loader | seconds | peak memory (MB) | peak / raw float32 |",
        "|---|---|---:|---:|---:|",
    ]
    for kind in ("text", "binary"):
        for loader in ("densitydp", "gensim"):
            seconds = best(kind, loader, "seconds")
            peak = best(kind, loader, "peak_bytes")
            lines.append(
                f"| {kind} | {loader} | {seconds:.2f} | {peak / 1e6:.0f} | {peak / raw_bytes:.2f} |"
            )
    lines += [
        "",
        "densitydp / gensim time: "
        + ", ".join(f"{kind} {summary[kind]['time_ratio']:.2f}" for kind in ("text", "binary"))
        + ".",
    ]
    (RESULTS / "loaders.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
