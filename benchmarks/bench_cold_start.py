#!/usr/bin/env python3
"""Cold start: import time and the first call of every mechanism in a fresh process, with an
empty and with a warm numba cache; two versions of the code side by side in one run.

    python benchmarks/bench_cold_start.py [--before REF] [--after REF] [--repeats 5] [--quick]

Each version is checked out into a temporary ``git worktree`` (``--after`` defaults to HEAD;
without ``--before`` only one version is measured) and run in fresh subprocesses with
``PYTHONPATH=<worktree>/src``, so that both run on the same machine at the same time.

1. ``python -c "import densitydp"``: wall time of the whole process, median of ``--repeats``
   fresh processes, and the package's cumulative time from ``python -X importtime`` (median).
2. For every mechanism of ``densitydp.mechanisms.MECHANISMS`` and for ``perturb_text`` (TEM):
   in a fresh process, ``import densitydp``, a 500-word synthetic space (8 d), the mechanism
   built by name (``build_mechanism``, epsilon 10; the Gumbel 300) and its first ``sample`` of
   10 tokens (for ``perturb_text``, one 10-word sentence). Once with an empty numba cache (the
   private cache pointed at a new temporary folder through ``XDG_CACHE_HOME``: every kernel
   compiles), then ``--repeats`` times with that cache warm (median). Times are wall clock:
   the process as a whole (interpreter start to exit) and, inside it, import / space / build /
   first call.

Results go to benchmarks/results/cold_start.{json,md} (not with ``--quick``: 1 repeat, two
mechanisms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
EPSILON = 10.0
#: The truncated Gumbel's calibration needs epsilon above (5 + 2 ln n) / min distance (144 here).
EPSILONS = {"gumbel": 300.0}

CHILD = """
import json, time
started = time.perf_counter()
import densitydp as dd
imported = time.perf_counter()
import numpy as np
from densitydp.mechanisms import build_mechanism
name = {name!r}
space = dd.synthetic_space(n_words=500, dim=8, n_clusters=5, rng=0)
made = time.perf_counter()
mechanism = build_mechanism("tem" if name == "perturb_text" else name, space, {epsilon!r})
built = time.perf_counter()
if name == "perturb_text":
    out = dd.perturb_text(" ".join(space.words(np.arange(10))), mechanism, rng=0)
else:
    out = mechanism.sample(np.arange(10), rng=0)
done = time.perf_counter()
print(json.dumps({{
    "file": dd.__file__,
    "import_s": imported - started,
    "space_s": made - imported,
    "build_s": built - made,
    "first_call_s": done - built,
    "total_s": done - started,
}}))
"""


def clean_env(src: Path, cache_home: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(src)
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    return env


def run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed:\n{done.stderr[-2000:]}")
    return seconds, done


def import_times(src: Path, cache_home: Path, repeats: int) -> dict[str, float]:
    env = clean_env(src, cache_home)
    walls, cumulative = [], []
    for _ in range(repeats):
        wall, _ = run([sys.executable, "-c", "import densitydp"], env)
        walls.append(wall)
        _, done = run([sys.executable, "-X", "importtime", "-c", "import densitydp"], env)
        match = re.search(r"\|\s*(\d+)\s*\|\s*densitydp\s*$", done.stderr, re.MULTILINE)
        if match:
            cumulative.append(int(match.group(1)) / 1e6)
    nothing, _ = run([sys.executable, "-c", "pass"], env)
    return {
        "import_wall_s": statistics.median(walls),
        "importtime_cumulative_s": statistics.median(cumulative),
        "interpreter_only_s": nothing,
    }


def first_call(src: Path, name: str, cache_home: Path, expected: str) -> dict[str, float]:
    env = clean_env(src, cache_home)
    code = CHILD.format(name=name, epsilon=EPSILONS.get(name, EPSILON))
    wall, done = run([sys.executable, "-c", code], env)
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not row.pop("file").startswith(expected):
        raise RuntimeError(f"the child did not import densitydp from {expected}")
    row["process_s"] = wall
    return row


def measure(src: Path, names: list[str], repeats: int, scratch: Path) -> dict[str, Any]:
    home = scratch / f"home-{src.parent.name}"
    home.mkdir()
    result: dict[str, Any] = {"import": import_times(src, home, repeats), "mechanisms": {}}
    print(src, json.dumps(result["import"]), flush=True)
    _, listing = run(
        [sys.executable, "-c", "from densitydp.mechanisms import MECHANISMS; print(*MECHANISMS)"],
        clean_env(src, home),
    )
    known = {*listing.stdout.split(), "perturb_text"}
    for name in names:
        if name not in known:  # a mechanism this version does not have
            continue
        cache_home = scratch / f"cache-{src.parent.name}-{name}"
        cache_home.mkdir(mode=0o700)
        cold = first_call(src, name, cache_home, str(src))
        warm_rows = [first_call(src, name, cache_home, str(src)) for _ in range(repeats)]
        warm = {key: statistics.median(r[key] for r in warm_rows) for key in warm_rows[0]}
        result["mechanisms"][name] = {"cold": cold, "warm": warm}
        print(src, name, json.dumps(result["mechanisms"][name]), flush=True)
    return result


def worktree(ref: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref],
        check=True,
        capture_output=True,
    )
    return where / "src"


def markdown(results: dict[str, Any]) -> str:
    versions = list(results["versions"])
    lines = [
        f"Cold start ({results['date']}, {results['machine']}, Python {results['python']}; "
        f"medians of {results['repeats']} fresh processes, wall clock)",
        "",
        f"Command: `{results['command']}`",
        "",
        "| | " + " | ".join(f"{v} ({results['versions'][v]['ref']})" for v in versions) + " |",
        "|---|" + "---:|" * len(versions),
    ]
    for key, label in (
        ("import_wall_s", "`python -c 'import densitydp'` (whole process)"),
        ("importtime_cumulative_s", "`-X importtime`: densitydp cumulative"),
        ("interpreter_only_s", "`python -c pass` (interpreter alone)"),
    ):
        cells = [f"{results['versions'][v]['import'][key]:.3f} s" for v in versions]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "First call in a fresh process: import + 500-word synthetic space + build (epsilon "
        f"{EPSILON:g}, the Gumbel {EPSILONS['gumbel']:g}) + first `sample` of 10 tokens "
        "(`perturb_text`: TEM, one 10-word sentence). Cold: empty numba cache (every kernel "
        "compiles); warm: the same cache again. Whole process (interpreter start to exit), and "
        "in brackets import / build / first call inside it.",
        "",
        "| mechanism | cache | " + " | ".join(versions) + " |",
        "|---|---|" + "---:|" * len(versions),
    ]
    names = list(results["versions"][versions[-1]]["mechanisms"])
    for name in names:
        for cache in ("cold", "warm"):
            cells = []
            for v in versions:
                if name not in results["versions"][v]["mechanisms"]:
                    cells.append("—")
                    continue
                row = results["versions"][v]["mechanisms"][name][cache]
                cells.append(
                    f"{row['process_s']:.2f} s ({row['import_s']:.2f} / {row['build_s']:.2f} / "
                    f"{row['first_call_s']:.2f})"
                )
            lines.append(f"| {name} | {cache} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", help="Git ref of the code to compare against.")
    parser.add_argument("--after", default="HEAD", help="Git ref measured (default HEAD).")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 repeat, two mechanisms.")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from densitydp.mechanisms import MECHANISMS

    names = [*MECHANISMS, "perturb_text"]
    repeats = args.repeats
    if args.quick:
        names, repeats = ["laplace", "perturb_text"], 1
    refs = {"after": args.after} if args.before is None else {
        "before": args.before, "after": args.after
    }  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="densitydp-cold-"))
    trees: list[Path] = []
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "repeats": repeats,
        "command": "python " + " ".join(["benchmarks/bench_cold_start.py", *sys.argv[1:]]),
        "versions": {},
    }
    try:
        for label, ref in refs.items():
            commit = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", ref],
                check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            tree = scratch / label
            trees.append(tree)
            results["versions"][label] = {"ref": commit, **measure(
                worktree(commit, tree), names, repeats, scratch
            )}  # fmt: skip
    finally:
        for tree in trees:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                check=False, capture_output=True,
            )  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
    text = markdown(results)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cold_start.json").write_text(json.dumps(results, indent=1) + "\n")
        (RESULTS / "cold_start.md").write_text(text)


if __name__ == "__main__":
    main()
