#!/usr/bin/env python3
"""Issue 15: corpus perturbation on a Dask cluster (``densitydp.distributed``).

All on this machine (2 cores, shared: every ratio is taken within this one command, with the
variants interleaved repeat by repeat; medians quoted). Corpus: the Rotten Tomatoes reviews
(``dd.load_dataset("rotten_tomatoes")``, newlines made spaces) cycled to the token count
needed, one review per row of a pandas DataFrame; "tokens" are word tokens
(``len(dd.tokenize(text)) // 2``). Spaces: the bundled GloVe (6B, 50 dimensions), all 400,000
words or the 50,000 most frequent, loaded afresh for each mechanism (no neighbour row known).
Other users' processes share the 2 cores: the CPU they take during each measurement is
recorded (``/proc/stat`` busy time minus this benchmark's processes), and so is the CPU time
of the workers (``/proc/PID/stat``).

1. Throughput of ``perturb_dataframe(frame, "text", mechanism, client=...)`` on three local
   clusters alive side by side: 1 worker x 1 numba thread, 2 workers x 1 numba thread each
   (``LocalCluster(n_workers, threads_per_worker=1, processes=True,
   env={"NUMBA_NUM_THREADS": "1"})``) and ``connect("local:1")`` (1 worker, 2 numba threads).
   Laplace (epsilon 10) on 400,000 words, TEM (epsilon 10) on 50,000 and 400,000 words. Each
   cluster is warmed by small jobs (imports, numba). The first job of a mechanism object on a
   client ships it to the workers and their fresh copies compute their neighbour rows
   (Laplace: its cascade): timed once, apart; later jobs with the same object reuse the
   workers' copies (``densitydp.distributed`` keeps what it shipped per client and object):
   median of the repeats, clusters interleaved. Scaling efficiency = rate(2 workers) / (2 x rate(1
   worker)). Outputs of the same seed compared across clusters.
2. Overhead of the Dask path on one partition: ``perturb_texts(texts, mechanism,
   rng=default_rng(seed).spawn(1)[0])`` here (numba and BLAS on 1 thread, rows known) against
   ``perturb_dataframe`` of the same one-partition frame on the 1 x 1 cluster (the worker's
   copy warm), outputs compared; and the mechanism's first job against the call here on a
   fresh unpickled copy (what that job's worker starts from).
3. Bytes: the mechanism as pickled (protocol 5), as dask serialises it and as ``dask.sizeof``
   counts it; jobs on the 2-worker cluster, with a new mechanism object and again with the
   same one, the same corpus cut into 2 and into 8 partitions: the loopback interface's
   received bytes (``/proc/net/dev``, ``lo``; other processes of the machine count too) and
   the workers' ``transfer_incoming_log``, against the bytes of the input and output texts.
4. Per-core rate for sizing: ``perturb_texts`` here, numba and BLAS on 1 thread, first pass
   ("cold": rows computed as words first appear) and median of 3 more passes on the same
   texts ("warm", wall and CPU time); core-hours for 10^9 tokens at the warm rate per CPU
   second and workers to finish them in 24 h at the measured warm 2-worker efficiency.

Writes ``benchmarks/results/distributed.json`` and ``.md``.

    python benchmarks/bench_distributed.py
    python benchmarks/bench_distributed.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import pickle
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: Word tokens per partition in parts 1 and 3 (Laplace 400k: ``--laplace-partition``).
PARTITION_TOKENS = 100_000
TARGET_TOKENS = 1e9
TARGET_HOURS = 24.0


def lo_rx_bytes() -> int:
    """Bytes received on the loopback interface so far (all processes of the machine)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            return int(counters.split()[0])
    raise RuntimeError("no `lo` interface in /proc/net/dev")


def incoming_bytes(client: Any) -> int:
    """Bytes the workers received from other workers (their transfer logs)."""
    totals = client.run(
        lambda dask_worker: sum(entry["total"] for entry in dask_worker.transfer_incoming_log)
    )
    return int(sum(totals.values()))


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> int:
    """CPU ticks (user + system) of process ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


def _own_pids() -> list[int]:
    """This process and its descendants (the local clusters' nannies and workers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(parents.get(pid, ()))
    return pids


def _busy_ticks() -> int:
    """CPU ticks all CPUs spent busy so far (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return user + nice + system + irq + softirq


class CpuMeter:
    """CPU used during a block: by the given worker processes, and by processes that are not
    this benchmark's (other users of the shared machine), in cores."""

    def __init__(self, worker_pids: Any = ()) -> None:
        self.worker_pids = list(worker_pids)

    def __enter__(self) -> CpuMeter:
        self.pids = _own_pids()
        self.own = sum(_ticks(pid) for pid in self.pids)
        self.workers = sum(_ticks(pid) for pid in self.worker_pids)
        self.busy = _busy_ticks()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self.start
        pids = set(self.pids) | set(_own_pids())
        own = sum(_ticks(pid) for pid in pids) - self.own  # a pid born inside: all its ticks
        busy = _busy_ticks() - self.busy
        self.worker_cpu_seconds = (
            sum(_ticks(pid) for pid in self.worker_pids) - self.workers
        ) / CLOCK_TICKS
        self.others_cores = max(0.0, (busy - own) / CLOCK_TICKS / max(wall, 1e-9))


def worker_pids(client: Any) -> list[int]:
    return list(client.run(os.getpid).values())


def module_fingerprint() -> str | None:
    """Hash of the code of ``densitydp.distributed`` as loaded in this process (the module is
    edited concurrently: the client and the workers must have run the same code)."""
    import hashlib
    import marshal
    import types

    module = sys.modules.get("densitydp.distributed")
    if module is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(vars(module)):
        value = getattr(module, name)
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            digest.update(name.encode())
            digest.update(marshal.dumps(value.__code__))
    return digest.hexdigest()[:16]


def module_file_sha() -> str:
    """Hash of ``src/densitydp/distributed.py`` as it is on disk now."""
    import hashlib

    return hashlib.sha256((ROOT / "src/densitydp/distributed.py").read_bytes()).hexdigest()[:16]


def git(*args: str) -> str:
    import subprocess

    run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return run.stdout.strip()


class Corpus:
    """Rotten Tomatoes reviews, cycled to any number of word tokens."""

    def __init__(self) -> None:
        import densitydp as dd

        self.reviews = [t.replace("\n", " ") for t in dd.load_dataset("rotten_tomatoes").texts]
        self.tokens = np.array([len(dd.tokenize(t)) // 2 for t in self.reviews])

    def rows_for(self, tokens: float) -> int:
        """Rows holding about ``tokens`` word tokens."""
        return max(1, round(tokens / self.tokens.mean()))

    def docs(self, n_tokens: float, start: int = 0) -> list[str]:
        """Reviews from ``start`` on, cycled, until they hold at least ``n_tokens`` tokens."""
        n = len(self.reviews)
        out, total, i = [], 0, start
        while total < n_tokens:
            out.append(self.reviews[i % n])
            total += int(self.tokens[i % n])
            i += 1
        return out

    @staticmethod
    def count(texts: Any) -> int:
        import densitydp as dd

        return sum(len(dd.tokenize(t)) // 2 for t in texts)


def frame_of(texts: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame({"text": texts, "row": np.arange(len(texts))})


def text_bytes(texts: Any) -> int:
    return sum(len(t.encode("utf-8")) for t in texts)


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def cpu_timed(run: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds (this process) of ``run()``."""
    cpu = time.process_time()
    seconds, _ = timed(run)
    return seconds, time.process_time() - cpu


@contextlib.contextmanager
def one_thread() -> Any:
    """numba and BLAS on one thread in this process (the workers' setting); restored after."""
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        numba.set_num_threads(before)


def dask_job(
    client: Any, frame: Any, mechanism: Any, rows: int, seed: int, pids: Any = ()
) -> dict[str, Any]:
    """One ``perturb_dataframe`` job, timed, with its tasks' compute times and CPU use."""
    from distributed import get_task_stream

    from densitydp.distributed import perturb_dataframe

    with get_task_stream(client=client) as stream, CpuMeter(pids) as meter:
        seconds, out = timed(
            lambda: perturb_dataframe(
                frame,
                "text",
                mechanism,
                rng=seed,
                client=client,
                partition_rows=rows,
                progress=False,
            )
        )
    tasks = []
    for record in stream.data:
        if "_pandas_task" not in str(record.get("key")):
            continue
        for step in record.get("startstops", ()):
            if step.get("action") == "compute":
                tasks.append((record["worker"], step["start"], step["stop"]))
    tasks.sort(key=lambda task: task[1])
    first: dict[str, float] = {}
    later: list[float] = []
    for worker, start, stop in tasks:
        if worker in first:
            later.append(stop - start)
        else:
            first[worker] = stop - start
    return {
        "seconds": seconds,
        "compute_seconds": float(sum(stop - start for _, start, stop in tasks)),
        "first_task_seconds": list(first.values()),
        "later_task_seconds": later,
        "n_tasks": len(tasks),
        "worker_cpu_seconds": meter.worker_cpu_seconds,
        "others_cores": meter.others_cores,
        "out": out["text"].tolist(),
    }


def median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="part 1 (default 3)")
    parser.add_argument("--overhead-repeats", type=int, default=None, help="part 2 (default 5)")
    parser.add_argument("--no-tem400k", action="store_true", help="skip TEM 400k in part 1")
    args = parser.parse_args()
    quick = args.quick
    repeats = args.repeats or (2 if quick else 3)
    overhead_repeats = args.overhead_repeats or (3 if quick else 5)

    import dask
    import distributed
    import pandas as pd

    import densitydp as dd
    from densitydp.distributed import connect, perturb_dataframe

    command = ("python benchmarks/bench_distributed.py " + " ".join(sys.argv[1:])).strip()
    load_start = load()
    started = time.perf_counter()
    commit_at_start = git("rev-parse", "--short", "HEAD")
    edited_at_start = bool(git("status", "--porcelain", "src/densitydp/distributed.py"))
    file_at_start = module_file_sha()
    print(command, "load", load_start, flush=True)
    corpus = Corpus()

    # each mechanism on a space of its own, freshly loaded: no neighbour row is known
    def glove(top: int | None) -> Any:
        return dd.load_glove() if top is None else dd.load_glove(top=top)

    space_50k = glove(50_000)
    gumbel_min = dd.TruncatedGumbel(space_50k, scale=1.0).min_epsilon
    builders: dict[str, Callable[[], Any]] = {
        "Laplace 400k": lambda: dd.MultivariateLaplace(glove(None), epsilon=10.0),
        "Laplace 50k": lambda: dd.MultivariateLaplace(glove(50_000), epsilon=10.0),
        "TEM 50k": lambda: dd.TruncatedExponential(glove(50_000), epsilon=10.0),
        "TEM 400k": lambda: dd.TruncatedExponential(glove(None), epsilon=10.0),
        "exponential 50k": lambda: dd.ExponentialMechanism(glove(50_000), epsilon=10.0),
        "truncated Gumbel 50k": lambda: dd.TruncatedGumbel(glove(50_000), epsilon=1.5 * gumbel_min),
    }
    space_dim = space_50k.dim
    del space_50k
    parameters = {
        "Laplace 400k": "epsilon 10",
        "Laplace 50k": "epsilon 10",
        "TEM 50k": "epsilon 10, default beta",
        "TEM 400k": "epsilon 10, default beta",
        "exponential 50k": "epsilon 10",
        "truncated Gumbel 50k": f"epsilon {1.5 * gumbel_min:.4g} (1.5 x min)",
    }

    # ------------------------------------------------------------- 4. per core, here
    # tokens per timed pass (warm); the cold pass is the first pass over the same texts
    core_tokens = {
        "Laplace 400k": 3_000 if quick else 8_000,
        "Laplace 50k": 10_000 if quick else 30_000,
        "TEM 50k": 100_000 if quick else 250_000,
        "TEM 400k": 100_000 if quick else 250_000,
        "exponential 50k": 50_000 if quick else 150_000,
        "truncated Gumbel 50k": 100_000 if quick else 250_000,
    }
    per_core: dict[str, dict[str, Any]] = {}
    with one_thread():
        for name, n_tokens in core_tokens.items():
            mechanism = builders[name]()
            texts = corpus.docs(n_tokens)
            tokens = corpus.count(texts)
            with CpuMeter() as meter:
                cold, _ = cpu_timed(lambda m=mechanism, t=texts: dd.perturb_texts(t, m, rng=0))
                warm = [
                    cpu_timed(lambda m=mechanism, t=texts, i=i: dd.perturb_texts(t, m, rng=i + 1))
                    for i in range(3)
                ]
            per_core[name] = {
                "others_cores": meter.others_cores,
                "parameters": parameters[name],
                "tokens": tokens,
                "cold_seconds": cold,
                "warm_seconds": [w for w, _ in warm],
                "warm_cpu_seconds": [c for _, c in warm],
                "cold_tokens_per_s": tokens / cold,
                "tokens_per_s": tokens / median([w for w, _ in warm]),
                "tokens_per_cpu_s": tokens / median([c for _, c in warm]),
            }
            print(
                f"[4] {name}: {tokens:,} tokens, cold {tokens / cold:,.0f} tok/s, warm "
                f"{per_core[name]['tokens_per_s']:,.0f} tok/s wall, "
                f"{per_core[name]['tokens_per_cpu_s']:,.0f} tok per CPU s (median of 3); other "
                f"processes {meter.others_cores:.2f} cores",
                flush=True,
            )
            del mechanism

    # ------------------------------------------------------------- clusters
    stack = contextlib.ExitStack()
    clusters: dict[str, Any] = {}
    for label, n_workers in (("1 worker x 1 thread", 1), ("2 workers x 1 thread", 2)):
        cluster = stack.enter_context(
            distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env={"NUMBA_NUM_THREADS": "1"},
            )
        )
        clusters[label] = stack.enter_context(distributed.Client(cluster))
    clusters['connect("local:1"): 1 worker x 2 numba threads'] = stack.enter_context(
        connect("local:1")
    )
    one, two = clusters["1 worker x 1 thread"], clusters["2 workers x 1 thread"]
    with stack:
        pids = {label: worker_pids(client) for label, client in clusters.items()}
        # warm each cluster: imports and numba on every worker (one partition per worker)
        warm_texts = corpus.docs(4_000)
        for client in clusters.values():
            for build in (builders["TEM 50k"], builders["Laplace 50k"]):
                perturb_dataframe(
                    frame_of(warm_texts),
                    "text",
                    build(),
                    rng=0,
                    client=client,
                    partition_rows=len(warm_texts) // 2 + 1,
                    progress=False,
                )
        print("[1] clusters warm", flush=True)

        # --------------------------------------------------------- 1. throughput
        laplace_partition = 3_000 if quick else 6_000
        jobs = {
            "Laplace 400k": (4 * laplace_partition, laplace_partition),
            "TEM 50k": (
                (4 if quick else 10) * PARTITION_TOKENS,
                PARTITION_TOKENS,
            ),
        }
        if not args.no_tem400k and not quick:
            jobs["TEM 400k"] = (10 * PARTITION_TOKENS, PARTITION_TOKENS)
        throughput: dict[str, dict[str, Any]] = {}
        for name, (n_tokens, partition_tokens) in jobs.items():
            mechanism = builders[name]()
            texts = corpus.docs(n_tokens)
            tokens = corpus.count(texts)
            n_parts = round(n_tokens / partition_tokens)  # even: 2 workers get equal shares
            rows = math.ceil(len(texts) / n_parts)
            frame = frame_of(texts)
            # the first job of a mechanism object ships it; the workers' fresh copies compute
            # their neighbour rows (Laplace: its cascade) as the words come: timed apart
            first_jobs: dict[str, dict[str, Any]] = {}
            for label, client in clusters.items():
                job = first_jobs[label] = dask_job(client, frame, mechanism, rows, 99, pids[label])
                print(
                    f"[1] {name} {label} first job: {job['seconds']:.2f} s, "
                    f"{tokens / job['seconds']:,.0f} tok/s, workers' CPU "
                    f"{job['worker_cpu_seconds']:.1f} s, other processes "
                    f"{job['others_cores']:.2f} cores",
                    flush=True,
                )
            for label, client in clusters.items():  # a partition may land on another worker
                dask_job(client, frame, mechanism, rows, 98, pids[label])
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in clusters}
            for r in range(repeats):
                for label, client in clusters.items():
                    job = dask_job(client, frame, mechanism, rows, 100 + r, pids[label])
                    runs[label].append(job)
                    print(
                        f"[1] {name} {label} repeat {r}: {job['seconds']:.2f} s, "
                        f"{tokens / job['seconds']:,.0f} tok/s, workers' CPU "
                        f"{job['worker_cpu_seconds']:.1f} s, other processes "
                        f"{job['others_cores']:.2f} cores",
                        flush=True,
                    )
            identical = all(
                runs[label][r]["out"] == runs["1 worker x 1 thread"][r]["out"]
                for label in clusters
                for r in range(repeats)
            )
            summary: dict[str, Any] = {
                "tokens": tokens,
                "rows": len(texts),
                "partition_rows": rows,
                "partitions": math.ceil(len(texts) / rows),
                "identical_outputs_across_clusters": identical,
                "clusters": {},
            }
            for label, jobs_done in runs.items():
                seconds = [job["seconds"] for job in jobs_done]
                first = [s for job in jobs_done for s in job["first_task_seconds"]]
                later = [s for job in jobs_done for s in job["later_task_seconds"]]
                cpu = [job["worker_cpu_seconds"] for job in jobs_done]
                summary["clusters"][label] = {
                    "seconds": seconds,
                    "tokens_per_s": tokens / median(seconds),
                    "worker_cpu_seconds": cpu,
                    "tokens_per_worker_cpu_s": tokens / median(cpu),
                    "others_cores": [job["others_cores"] for job in jobs_done],
                    "compute_seconds": [job["compute_seconds"] for job in jobs_done],
                    "first_task_seconds_median": median(first) if first else None,
                    "later_task_seconds_median": median(later) if later else None,
                    "first_job_seconds": first_jobs[label]["seconds"],
                    "first_job_worker_cpu_seconds": first_jobs[label]["worker_cpu_seconds"],
                    "first_job_others_cores": first_jobs[label]["others_cores"],
                }
            one_s = [job["seconds"] for job in runs["1 worker x 1 thread"]]
            two_s = [job["seconds"] for job in runs["2 workers x 1 thread"]]
            summary["efficiency"] = median(one_s) / (2 * median(two_s))
            summary["first_job_efficiency"] = first_jobs["1 worker x 1 thread"]["seconds"] / (
                2 * first_jobs["2 workers x 1 thread"]["seconds"]
            )
            summary["efficiency_per_repeat"] = [
                a / (2 * b) for a, b in zip(one_s, two_s, strict=True)
            ]
            summary["others_cores_per_repeat"] = [
                (one_job["others_cores"], two_job["others_cores"])
                for one_job, two_job in zip(
                    runs["1 worker x 1 thread"], runs["2 workers x 1 thread"], strict=True
                )
            ]
            clusters_done = summary["clusters"]
            summary["cpu_ratio_2_over_1"] = (
                clusters_done["2 workers x 1 thread"]["tokens_per_worker_cpu_s"]
                / clusters_done["1 worker x 1 thread"]["tokens_per_worker_cpu_s"]
            )
            throughput[name] = summary
            print(
                f"[1] {name}: efficiency {summary['efficiency']:.2f} "
                f"(per repeat {[round(e, 2) for e in summary['efficiency_per_repeat']]}), "
                f"identical outputs: {identical}",
                flush=True,
            )
            del mechanism

        # --------------------------------------------------------- 2. overhead, one partition
        overhead_tokens = {
            "TEM 50k": PARTITION_TOKENS if not quick else 50_000,
            "Laplace 400k": 10_000 if not quick else 3_000,
        }
        fresh_repeats = min(3, overhead_repeats)
        pids_one = pids["1 worker x 1 thread"]
        overhead: dict[str, dict[str, Any]] = {}
        for name, n_tokens in overhead_tokens.items():
            mechanism = builders[name]()
            texts = corpus.docs(n_tokens, start=1_000)
            tokens = corpus.count(texts)
            frame = frame_of(texts)
            shipped = pickle.dumps(mechanism, protocol=5)
            with one_thread():
                dd.perturb_texts(texts, mechanism, rng=0)  # rows known here
            # the first job ships the mechanism; its copy on the worker then knows the rows
            first = dask_job(one, frame, mechanism, len(texts), 199, pids_one)
            print(f"[2] {name} first dask job: {first['seconds']:.3f} s", flush=True)
            times: dict[str, list[float]] = {"warm": [], "dask": [], "fresh copy": []}
            task_compute: list[float] = []
            others: list[float] = []
            same = True
            for r in range(overhead_repeats):
                with one_thread(), CpuMeter() as meter:
                    seconds, plain = timed(
                        lambda m=mechanism, t=texts, r=r: dd.perturb_texts(
                            t, m, rng=np.random.default_rng(200 + r).spawn(1)[0]
                        )
                    )
                times["warm"].append(seconds)
                others.append(meter.others_cores)
                job = dask_job(one, frame, mechanism, len(texts), 200 + r, pids_one)
                others.append(job["others_cores"])
                times["dask"].append(job["seconds"])
                task_compute.append(job["compute_seconds"])
                same = same and list(plain) == job["out"]
                if r < fresh_repeats:
                    with one_thread():
                        seconds, fresh = timed(
                            lambda b=shipped, t=texts, r=r: dd.perturb_texts(
                                t, pickle.loads(b), rng=np.random.default_rng(200 + r).spawn(1)[0]
                            )
                        )
                    times["fresh copy"].append(seconds)
                    same = same and list(fresh) == list(plain)
                print(
                    f"[2] {name} repeat {r}: here {times['warm'][-1]:.3f} s, dask "
                    f"{job['seconds']:.3f} s (task compute {job['compute_seconds']:.3f} s)"
                    + (f", fresh copy here {seconds:.3f} s" if r < fresh_repeats else ""),
                    flush=True,
                )
            med = {key: median(values) for key, values in times.items()}
            overhead[name] = {
                "tokens": tokens,
                "rows": len(texts),
                "seconds": times,
                "seconds_median": med,
                "first_job_seconds": first["seconds"],
                "task_compute_seconds": task_compute,
                "task_compute_median": median(task_compute),
                "overhead_pct_per_repeat": (
                    per_repeat := [
                        100 * (d / w - 1) for d, w in zip(times["dask"], times["warm"], strict=True)
                    ]
                ),
                # paired: each repeat's call here and job back to back, the same seed
                "overhead_pct": median(per_repeat),
                "overhead_pct_of_medians": 100 * (med["dask"] / med["warm"] - 1),
                "first_job_vs_fresh_copy_pct": 100 * (first["seconds"] / med["fresh copy"] - 1),
                "outside_task_seconds_median": median(
                    [d - c for d, c in zip(times["dask"], task_compute, strict=True)]
                ),
                "identical_outputs": same,
                "others_cores_median": median(others),
            }
            print(
                f"[2] {name}: dask vs here {overhead[name]['overhead_pct']:+.1f} % (per repeat "
                f"{[round(v, 1) for v in overhead[name]['overhead_pct_per_repeat']]}); first "
                f"job vs fresh copy here {overhead[name]['first_job_vs_fresh_copy_pct']:+.1f} %; "
                f"identical outputs: {same}",
                flush=True,
            )
            del mechanism, shipped, first

        # --------------------------------------------------------- 3. bytes
        from distributed.protocol import serialize

        sizes: dict[str, dict[str, int]] = {}
        shipped_by_name: dict[str, bytes] = {}
        for name in ("Laplace 400k", "TEM 50k"):
            mechanism = builders[name]()
            _, frames = serialize(mechanism)
            shipped_by_name[name] = pickle.dumps(mechanism, protocol=5)
            sizes[name] = {
                "pickle_protocol_5": len(shipped_by_name[name]),
                "dask_serialize": int(sum(memoryview(f).nbytes for f in frames)),
                "dask_sizeof": int(dask.sizeof.sizeof(mechanism)),
                "vectors_nbytes": int(mechanism.space.vectors.nbytes),
            }
            print(f"[3] {name} sizes {sizes[name]}", flush=True)
            del mechanism, frames

        def measured_job(
            frame: Any, mechanism: Any, rows: int, seed: int, label: str
        ) -> dict[str, Any]:
            lo_before, in_before = lo_rx_bytes(), incoming_bytes(two)
            job = dask_job(two, frame, mechanism, rows, seed, pids["2 workers x 1 thread"])
            lo_after, in_after = lo_rx_bytes(), incoming_bytes(two)
            record = {
                "lo": lo_after - lo_before,
                "incoming": in_after - in_before,
                "seconds": job["seconds"],
                "worker_cpu_seconds": job["worker_cpu_seconds"],
                "output_bytes": text_bytes(job["out"]),
            }
            print(
                f"[3] {label}: loopback {record['lo'] / 1e6:.2f} MB, worker-to-worker "
                f"{record['incoming'] / 1e6:.2f} MB, {job['seconds']:.2f} s",
                flush=True,
            )
            return record

        bytes_tokens = (2 if quick else 4) * PARTITION_TOKENS
        texts = corpus.docs(bytes_tokens, start=2_000)
        tokens = corpus.count(texts)
        frame = frame_of(texts)
        cuts = {2: math.ceil(len(texts) / 2), 8: math.ceil(len(texts) / 8)}
        kinds = ("new mechanism object", "same object again")
        records: dict[tuple[int, str], list[dict[str, Any]]] = {
            (n, kind): [] for n in cuts for kind in kinds
        }
        for r in range(3):
            for n_parts, rows in cuts.items():
                mechanism = pickle.loads(shipped_by_name["TEM 50k"])
                for kind in kinds:
                    records[(n_parts, kind)].append(
                        measured_job(
                            frame, mechanism, rows, 300 + r, f"TEM 50k, {n_parts} parts, {kind}"
                        )
                    )
                del mechanism
                gc.collect()  # the workers' copy is forgotten once the object is collected
        tiny = corpus.docs(1_000, start=3_000)
        tiny_frame = frame_of(tiny)
        for r in range(2 if quick else 3):
            mechanism = pickle.loads(shipped_by_name["Laplace 400k"])
            for kind in kinds:
                records.setdefault(("tiny", kind), []).append(
                    measured_job(
                        tiny_frame,
                        mechanism,
                        math.ceil(len(tiny) / 2),
                        400 + r,
                        f"Laplace 400k tiny job, {kind}",
                    )
                )
            del mechanism
            gc.collect()
        moved: dict[str, dict[str, Any]] = {}
        for (n_parts, kind), recs in records.items():
            if n_parts == "tiny":
                key = f"Laplace 400k, {corpus.count(tiny):,} tokens in 2 partitions, {kind}"
            else:
                key = f"TEM 50k, {tokens:,} tokens in {n_parts} partitions, {kind}"
            moved[key] = {
                "partitions": 2 if n_parts == "tiny" else n_parts,
                "kind": kind,
                "lo_bytes": [rec["lo"] for rec in recs],
                "lo_bytes_median": median([rec["lo"] for rec in recs]),
                "incoming_bytes": [rec["incoming"] for rec in recs],
                "incoming_bytes_median": median([rec["incoming"] for rec in recs]),
                "seconds_median": median([rec["seconds"] for rec in recs]),
                "worker_cpu_seconds_median": median([rec["worker_cpu_seconds"] for rec in recs]),
            }
        output_bytes = records[(2, kinds[0])][0]["output_bytes"]
        input_bytes = text_bytes(texts)
        frame_pickle = len(pickle.dumps(frame, protocol=5))
        delta = {
            kind: moved[f"TEM 50k, {tokens:,} tokens in 8 partitions, {kind}"]["lo_bytes_median"]
            - moved[f"TEM 50k, {tokens:,} tokens in 2 partitions, {kind}"]["lo_bytes_median"]
            for kind in kinds
        }
        shipped_per_new_object = {}
        for name, key in (
            ("TEM 50k, 2 partitions", 2),
            ("TEM 50k, 8 partitions", 8),
            ("Laplace 400k", "tiny"),
        ):
            extra = median([rec["lo"] for rec in records[(key, kinds[0])]]) - median(
                [rec["lo"] for rec in records[(key, kinds[1])]]
            )
            pickled = sizes["Laplace 400k" if key == "tiny" else "TEM 50k"]["pickle_protocol_5"]
            shipped_per_new_object[name] = extra / pickled
        module_code = {"client": module_fingerprint()}
        for label, client in clusters.items():
            for address, value in client.run(module_fingerprint).items():
                module_code[f"{label} {address}"] = value
        del shipped_by_name

    # ------------------------------------------------------------- sizing
    def efficiency_for(name: str) -> tuple[float, str]:
        if name in throughput:
            return throughput[name]["efficiency"], name
        source = "Laplace 400k" if name.startswith("Laplace") else "TEM 50k"
        return throughput[source]["efficiency"], source

    sizing: dict[str, dict[str, Any]] = {}
    for name, entry in per_core.items():
        efficiency, source = efficiency_for(name)
        core_hours = TARGET_TOKENS / entry["tokens_per_cpu_s"] / 3600
        sizing[name] = {
            "tokens_per_cpu_s_per_core": entry["tokens_per_cpu_s"],
            "core_hours_per_1e9_tokens": core_hours,
            "efficiency": efficiency,
            "efficiency_from": source,
            "workers_for_24h": math.ceil(core_hours / (TARGET_HOURS * efficiency)),
        }

    load_end = load()
    elapsed = time.perf_counter() - started
    result = {
        "command": command,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "versions": {
            "dask": dask.__version__,
            "distributed": distributed.__version__,
            "pandas": pd.__version__,
        },
        "load_start": load_start,
        "load_end": load_end,
        "elapsed_seconds": elapsed,
        "corpus": {
            "name": "rotten_tomatoes",
            "reviews": len(corpus.reviews),
            "tokens": int(corpus.tokens.sum()),
            "tokens_per_review": float(corpus.tokens.mean()),
            "partition_rows_for_1e5_tokens": corpus.rows_for(PARTITION_TOKENS),
        },
        "glove_dim": space_dim,
        "throughput": throughput,
        "overhead": overhead,
        "mechanism_bytes": sizes,
        "bytes_moved": moved,
        "lo_bytes_8_minus_2_partitions": delta,
        "shipped_per_new_object": shipped_per_new_object,
        "densitydp_commit": commit_at_start,
        "distributed_py_changed_since_commit": edited_at_start,
        "distributed_py_changed_during_run": module_file_sha() != file_at_start,
        "module_code": module_code,
        "same_module_code_everywhere": len(set(module_code.values())) == 1,
        "bytes_job_input": {
            "tokens": tokens,
            "input_text_bytes": input_bytes,
            "output_text_bytes": output_bytes,
            "input_frame_pickle_bytes": frame_pickle,
        },
        "per_core": per_core,
        "sizing": sizing,
    }
    for summary in throughput.values():
        for entry in summary["clusters"].values():
            entry.pop("out", None)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = markdown(result)
    (RESULTS / "distributed.md").write_text("\n".join(lines))
    print("\n".join(lines))


def markdown(result: dict[str, Any]) -> list[str]:
    mb = 1e6
    corpus = result["corpus"]
    lines = [
        f"Distributed perturbation (issue 15): `{result['command']}` ({result['when']}, "
        f"{result['machine']}, shared machine; load average {result['load_start']} at start, "
        f"{result['load_end']} at end; {result['elapsed_seconds'] / 60:.1f} min; dask "
        f"{result['versions']['distributed']}; densitydp {result['densitydp_commit']}"
        + (", distributed.py edited since" if result["distributed_py_changed_since_commit"] else "")
        + (
            "; distributed.py was edited on disk during the run: the numbers are of the code "
            "loaded at the start"
            if result["distributed_py_changed_during_run"]
            else ""
        )
        + (
            ""
            if result["same_module_code_everywhere"]
            else "; MODULE CODE DIFFERED between the client and workers (edited during the run)"
        )
        + ")",
        "",
        f"Corpus: Rotten Tomatoes, {corpus['reviews']:,} reviews ({corpus['tokens']:,} word "
        f"tokens, {corpus['tokens_per_review']:.1f} a review), cycled; one review a row; "
        f"10^5 tokens = {corpus['partition_rows_for_1e5_tokens']:,} rows. GloVe 6B, "
        f"{result['glove_dim']} dimensions, each mechanism on a freshly loaded space. 'Other "
        "processes': CPU that other users of the machine took during the measurement (cores, "
        "median; the machine has 2).",
        "",
        "1. Throughput of `perturb_dataframe(frame, 'text', mechanism, client=...)`. First job: "
        "the mechanism object's first job on that client (it is shipped; each worker's copy "
        "computes its neighbour rows, Laplace its cascade). Then, after one more untimed job, "
        "the same object again, the workers' copies warm: median of the repeats, clusters "
        "interleaved. Efficiency = "
        "rate(2 workers) / (2 x rate(1 worker)).",
        "",
        "| mechanism | tokens | partitions | cluster | first job (s) | warm job (s, median) | "
        "tokens/s (warm) | workers' CPU (s) | tokens / worker CPU s | other processes "
        "(cores) | efficiency (warm; first job) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, summary in result["throughput"].items():
        for i, (label, entry) in enumerate(summary["clusters"].items()):
            efficiency = ""
            if label.startswith("2 workers"):
                efficiency = f"{summary['efficiency']:.2f}; {summary['first_job_efficiency']:.2f}"
            lines.append(
                f"| {name if i == 0 else ''} | {summary['tokens']:,} | "
                f"{summary['partitions']} | {label} | {entry['first_job_seconds']:.2f} | "
                f"{median(entry['seconds']):.2f} | {entry['tokens_per_s']:,.0f} | "
                f"{median(entry['worker_cpu_seconds']):.1f} | "
                f"{entry['tokens_per_worker_cpu_s']:,.0f} | {median(entry['others_cores']):.2f} | "
                f"{efficiency} |"
            )
    lines += [
        "",
        "Efficiency per repeat (the 1-worker and 2-worker jobs of a repeat back to back; "
        "in brackets the other processes' cores during the 1-worker / 2-worker job): "
        + "; ".join(
            f"{name} "
            + ", ".join(
                f"{e:.2f} ({a:.1f} / {b:.1f})"
                for e, (a, b) in zip(
                    summary["efficiency_per_repeat"],
                    summary["others_cores_per_repeat"],
                    strict=True,
                )
            )
            for name, summary in result["throughput"].items()
        )
        + ". Tokens per worker CPU second, 2 workers / 1 worker: "
        + "; ".join(
            f"{name} {summary['cpu_ratio_2_over_1']:.2f}"
            for name, summary in result["throughput"].items()
        )
        + ". Outputs of the same seed identical across the three clusters: "
        + ", ".join(
            f"{name} {summary['identical_outputs_across_clusters']}"
            for name, summary in result["throughput"].items()
        )
        + ".",
        "",
        "2. Overhead on one partition: `perturb_texts(texts, mechanism, "
        "rng=default_rng(seed).spawn(1)[0])` here (numba and BLAS 1 thread, the mechanism's "
        "rows known) against `perturb_dataframe` of the same one-partition frame on the "
        "1 worker x 1 thread cluster (the worker's copy warm: after a first job), median; "
        "and the first job against the call here on a fresh unpickled copy (what that first "
        "job's worker starts from).",
        "",
        "| mechanism | tokens | here (s) | dask (s) | task compute (s) | overhead (median of "
        "the repeats' ratios) | overhead per repeat (%) | first job (s) | fresh copy here "
        "(s) | first job vs fresh copy | identical | other processes (cores) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for name, entry in result["overhead"].items():
        med = entry["seconds_median"]
        lines.append(
            f"| {name} | {entry['tokens']:,} | {med['warm']:.3f} | {med['dask']:.3f} | "
            f"{entry['task_compute_median']:.3f} | {entry['overhead_pct']:+.1f} % | "
            f"{', '.join(f'{v:+.0f}' for v in entry['overhead_pct_per_repeat'])} | "
            f"{entry['first_job_seconds']:.3f} | {med['fresh copy']:.3f} | "
            f"{entry['first_job_vs_fresh_copy_pct']:+.1f} % | {entry['identical_outputs']} | "
            f"{entry['others_cores_median']:.2f} |"
        )
    job = result["bytes_job_input"]
    delta = result["lo_bytes_8_minus_2_partitions"]
    per_task = 6 * result["mechanism_bytes"]["TEM 50k"]["pickle_protocol_5"]
    lines += [
        "",
        "3. Bytes. The mechanism as shipped, and x 2 workers:",
        "",
        "| mechanism | pickle (MB) | dask serialize (MB) | dask.sizeof (bytes) | "
        "x 2 workers, pickle (MB) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {s['pickle_protocol_5'] / mb:.1f} | {s['dask_serialize'] / mb:.1f} | "
            f"{s['dask_sizeof']:,} | {2 * s['pickle_protocol_5'] / mb:.1f} |"
            for name, s in result["mechanism_bytes"].items()
        ),
        "",
        "Jobs on the 2-worker cluster (median of 3; each repeat: a new mechanism object "
        "(unpickled copy) for a job, then the same object for a second job). TEM 50k: input "
        f"text {job['input_text_bytes'] / mb:.2f} MB (pickled frame "
        f"{job['input_frame_pickle_bytes'] / mb:.2f} MB), output text "
        f"{job['output_text_bytes'] / mb:.2f} MB.",
        "",
        "| job | loopback rx (MB) | worker-to-worker (MB) | s |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {entry['lo_bytes_median'] / mb:.2f} | "
            f"{entry['incoming_bytes_median'] / mb:.2f} | {entry['seconds_median']:.2f} |"
            for name, entry in result["bytes_moved"].items()
        ),
        "",
        "Loopback, 8 partitions - 2 partitions: "
        + "; ".join(f"{kind} {value / mb:+.2f} MB" for kind, value in delta.items())
        + f". Were the mechanism sent with each task it would be about {per_task / mb:+.0f} MB "
        f"(6 more tasks x {per_task / 6 / mb:.1f} MB). A new mechanism object's job - the same "
        "object's job, in pickles of the mechanism (client to scheduler, scheduler to each "
        "worker): "
        + "; ".join(
            f"{name} {value:.2f}" for name, value in result["shipped_per_new_object"].items()
        )
        + ".",
        "",
        "4. Per core (numba and BLAS 1 thread, `perturb_texts` here; cold: the first pass "
        "over the texts, rows computed as words first appear; warm: median of 3 more passes "
        "over the same texts, wall and CPU time of this process) and sizing for 10^9 tokens: "
        "core-hours at the warm rate per CPU second, workers to finish in 24 h at the measured "
        "warm 2-worker efficiency (of the same mechanism where measured, else the one named). "
        "A worker's cold start (its rows) is paid once per worker and is not in these hours.",
        "",
        "| mechanism | parameters | tokens | cold tok/s | warm tok/s (wall) | warm tok / CPU s "
        "| core-hours / 10^9 tokens | efficiency (from) | workers for 10^9 in 24 h | other "
        "processes (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in result["per_core"].items():
        size = result["sizing"][name]
        lines.append(
            f"| {name} | {entry['parameters']} | {entry['tokens']:,} | "
            f"{entry['cold_tokens_per_s']:,.0f} | {entry['tokens_per_s']:,.0f} | "
            f"{entry['tokens_per_cpu_s']:,.0f} | {size['core_hours_per_1e9_tokens']:,.1f} | "
            f"{size['efficiency']:.2f} ({size['efficiency_from']}) | "
            f"{size['workers_for_24h']:,} | {entry['others_cores']:.2f} |"
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    main()
