#!/usr/bin/env python3
"""Audit the PyPI peers' word mechanisms with densitydp's black-box auditor (issue 13, item 4).

    python benchmarks/audit_peers.py                          # every peer mechanism
    python benchmarks/audit_peers.py --peer pypantera --mechanism TEM --time-cap 120
    python benchmarks/audit_peers.py --no-build               # reuse benchmarks/.peer-env
    python benchmarks/audit_peers.py --throughput-only        # round trip + words/s, no audit

Peers: pypantera 1.0.2 (CMP, Mahalanobis, VickreyCMP, VickreyMhl, CusText, SanText, TEM) and
mldp-text 0.1.2 (MultivariateCalibrated, Mahalanobis, Vickrey and TruncatedGumbel, each with its
faiss IVF index and with ``use_faiss=False``, and TEM). Each is compared with densitydp's
implementation of the same paper at the peer's parameters (issue 14): Mahalanobis with
``MahalanobisMechanism(lam=...)``, VickreyCMP / VickreyMhl with ``VickreyMechanism(threshold=t,
lam=...)``, SanText with ``SanText``, pypantera's CusText (each word's own top-K) with
``CusText(mapping="top-k")``, mldp-text's truncated Gumbel with ``TruncatedGumbel`` in both
conventions (``"mldp"``: the same law expected; ``"seed"``: a different one, one row each,
``--mechanism convention=`` selects them). They need Python 3.11 and numpy < 2, so
each runs in ``benchmarks/.peer-env`` (created as in ``bench_mechanisms.py``) as a long-lived
``peers/peer_worker.py`` subprocess that serves batches of words over stdin / stdout. Here, in
densitydp's environment, the worker is wrapped as a plain word-level function
``fn(words: list[str]) -> list[str]`` (the peer's own randomness, no rng) and handed to
``dd.audit(fn, space=..., claim=..., interface="words", pairs="nearest", ...)``; where densitydp
implements the same mechanism, ``reference=`` adds the law test (``dd.compare_laws``) on the same
draws.

Space: the ``--vocab`` most frequent GloVe 6B-50d words, the same for the peer and for our
reference (the peers are slow: about 7-50 words/s for pypantera's TEM at 50,000 words). Samples
per word: as many as ``--time-cap`` seconds allow at the peer's measured speed (at most
``--samples``); recorded with the seconds taken.

Writes ``benchmarks/results/audit_peers.json`` and ``audit_peers.md`` (after every mechanism,
so an interrupted run keeps what it finished).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORKER = HERE / "peers" / "peer_worker.py"
WORKDIR = HERE / ".peer-work"
sys.path.insert(0, str(HERE))
from bench_mechanisms import PEER_ENV, PEER_REQUIREMENTS, find_python311  # noqa: E402

#: Words per request to the worker (requests are JSON lines; a few hundred kB each).
BATCH = 4096


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the peer process
class WorkerError(RuntimeError):
    """The worker failed to build, died, timed out or reported an error for a batch."""


class PeerWorker:
    """A ``peers/peer_worker.py`` process serving one peer mechanism; call it on a list of words.

    ``peer_seconds`` is the time the peer's own code took (reported by the worker per batch);
    ``wall_seconds`` the round trips as seen from here; their difference is the harness's
    overhead (JSON, pipes, the reader thread).
    """

    def __init__(
        self,
        python: Path,
        config: dict,
        *,
        log_path: Path,
        build_timeout: float = 900.0,
        batch_timeout: float = 900.0,
        batch: int = BATCH,
    ) -> None:
        self.config = config
        self.batch = batch
        self.batch_timeout = batch_timeout
        self.log_path = log_path
        self.peer_seconds = 0.0
        self.wall_seconds = 0.0
        self.words_done = 0
        self.requests = 0
        self._log = open(log_path, "w")  # noqa: SIM115 - the worker's stderr, closed in close()
        self._process = subprocess.Popen(
            [str(python), str(WORKER), "--config", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._receive(build_timeout)
        if not ready.get("ok"):
            self.close()
            raise WorkerError(f"building the peer failed: {ready.get('error')}")
        self.info: dict = ready["info"]

    def _read(self) -> None:
        for line in self._process.stdout:  # type: ignore[union-attr]
            self._lines.put(line)
        self._lines.put(None)

    def _tail(self) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-8:])
        except OSError:
            return ""

    def _receive(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close(kill=True)
            raise WorkerError(f"no reply from the worker within {timeout:g} s") from None
        if line is None:
            code = self._process.wait()
            raise WorkerError(f"the worker exited (status {code}); its log ends:\n{self._tail()}")
        return json.loads(line)

    def request(self, message: dict, timeout: float | None = None) -> dict:
        if self._process.poll() is not None:
            raise WorkerError(f"the worker is not running; its log ends:\n{self._tail()}")
        self._process.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
        self._process.stdin.flush()  # type: ignore[union-attr]
        return self._receive(self.batch_timeout if timeout is None else timeout)

    def __call__(self, words: list[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(words), self.batch):
            chunk = list(words[start : start + self.batch])
            started = time.perf_counter()
            reply = self.request({"op": "perturb", "words": chunk})
            self.wall_seconds += time.perf_counter() - started
            self.requests += 1
            if not reply.get("ok"):
                raise WorkerError(f"the peer failed on a batch: {reply.get('error')}")
            self.peer_seconds += reply["seconds"]
            self.words_done += len(chunk)
            out.extend(reply["words"])
        return out

    def stats(self) -> dict:
        return {
            "words": self.words_done,
            "requests": self.requests,
            "peer_seconds": round(self.peer_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "overhead_fraction": (
                round(1.0 - self.peer_seconds / self.wall_seconds, 4) if self.wall_seconds else None
            ),
        }

    def close(self, kill: bool = False) -> None:
        if self._process.poll() is None and not kill:
            with contextlib.suppress(WorkerError, OSError, ValueError):
                self.request({"op": "quit"}, timeout=30)
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._log.close()


# --------------------------------------------------------------------------- what is audited
@dataclass
class Spec:
    peer: str
    mechanism: str
    epsilon: float
    epsilon_source: str
    params: dict = field(default_factory=dict)
    #: "metric" (epsilon * Euclidean distance), "pure" (epsilon), or "mahalanobis"
    #: (epsilon * the regularised Mahalanobis distance the paper's guarantee is stated in).
    claim: str = "metric"
    #: densitydp's implementation of the same law, or None.
    reference: str | None = None
    #: What reading the code suggested (to be confirmed or not by the audit).
    suspect: str = ""
    #: Keyword arguments of the reference (besides space and epsilon): the peer's parameters.
    reference_options: dict = field(default_factory=dict)
    #: Tells apart two rows of one peer mechanism audited against different references.
    variant: str = ""

    @property
    def key(self) -> str:
        return f"{self.peer}:{self.mechanism}" + (f" vs {self.variant}" if self.variant else "")


PANTERA_EPS = (
    "pypantera README, Parameters: `--epsilon` default [1.0, 5.0, 10.0, 12.5, 15.0, 17.5, 20.0, "
    "50.0]; its example results table shows 1, 5, 10 (docstrings use 0.1 as a placeholder)"
)
MLDP_EPS = (
    "mldp-text README, Basic Usage: get_mechanism('multivariate_calibrated', epsilon=1) (the "
    "only epsilon its README gives for these mechanisms; 1.5 and 1.2 appear for vickrey / "
    "mahalanobis)"
)

SPECS = [
    Spec("pypantera", "CMP", 10.0, PANTERA_EPS, {}, "metric", "MultivariateLaplace"),
    Spec(
        "pypantera",
        "Mahalanobis",
        10.0,
        PANTERA_EPS + "; lam=1 from its README table",
        {"lam": 1.0},
        "mahalanobis",
        "MahalanobisMechanism",
        "direction renormalised after applying M^(1/2) (changes the law; RESEARCH.md)",
        {"lam": 1.0},
    ),
    Spec(
        "pypantera",
        "VickreyCMP",
        10.0,
        PANTERA_EPS + "; t=0.75 from its README table",
        {"t": 0.75},
        "metric",
        "VickreyMechanism",
        "argpartition(.., 2)[:, :2] does not order the two nearest words, so P(first) = "
        "(1 - t) d2 / (t d1 + (1 - t) d2) is applied to whichever comes first: for t != 0.5 the "
        "law differs from the paper's; post-processing of the CMP noise either way, so the claim "
        "should survive",
        {"threshold": 0.75, "lam": 0.0},
    ),
    Spec(
        "pypantera",
        "VickreyMhl",
        10.0,
        PANTERA_EPS + "; lam=1, t=0.75 from its README table",
        {"lam": 1.0, "t": 0.75},
        "mahalanobis",
        "VickreyMechanism",
        "the Mahalanobis noise with its direction renormalised after M^(1/2), and the unordered "
        "two nearest words of VickreyCMP",
        {"threshold": 0.75, "lam": 1.0},
    ),
    Spec(
        "pypantera",
        "CusText",
        1.0,
        PANTERA_EPS + " (the first default); K=10 from its README",
        {"k": 10, "distance": "euclidean"},
        "pure",
        "CusText",
        "per-word top-K output sets (not shared): supports of neighbours differ",
        {"k": 10, "mapping": "top-k"},
    ),
    Spec(
        "pypantera",
        "SanText",
        10.0,
        PANTERA_EPS,
        {},
        "metric",
        "SanText",
        "probability rows cached per whole text (the worker sends one word per text)",
    ),
    Spec(
        "pypantera",
        "TEM",
        10.0,
        PANTERA_EPS + "; beta=0.001 from its README table",
        {"beta": 0.001},
        "metric",
        "TruncatedExponential",
        "bottom branch: np.random.choice on a list of vectors raises, caught, returns the input",
    ),
    Spec(
        "mldp-text",
        "MultivariateCalibrated (faiss)",
        1.0,
        MLDP_EPS,
        {},
        "metric",
        "MultivariateLaplace",
        "approximate IVF nearest-word search (nlist 100, nprobe 50)",
    ),
    Spec(
        "mldp-text",
        "MultivariateCalibrated (exact)",
        1.0,
        MLDP_EPS,
        {"use_faiss": False},
        "metric",
        "MultivariateLaplace",
    ),
    Spec(
        "mldp-text",
        "TEM",
        1.0,
        MLDP_EPS,
        {},
        "metric",
        "TruncatedExponential",
        "bottom score -gamma + (2/eps) ln(|V| / |L_w|); gamma from |V| (not |V| - 1), rounded",
    ),
    Spec(
        "mldp-text",
        "TruncatedGumbel (faiss)",
        1.0,
        MLDP_EPS,
        {},
        "metric",
        "TruncatedGumbel",
        "noise added to faiss's squared L2 distances; Delta_min/max from one random word; "
        "real part of a complex calibration below the meaningful epsilon",
    ),
    Spec(
        "mldp-text",
        "TruncatedGumbel (exact)",
        1.0,
        MLDP_EPS,
        {"use_faiss": False},
        "metric",
        "TruncatedGumbel",
        "Delta_min/max from one random word; real part of a complex calibration",
    ),
]
MLDP_DEFAULTS = (
    MLDP_EPS + "; its own defaults otherwise (Mahalanobis lambd=0.2; Vickrey k=2, t=[1, 0])"
)
SPECS += [
    Spec(
        "mldp-text",
        f"Mahalanobis ({path})",
        1.0,
        MLDP_DEFAULTS,
        {"lambd": 0.2, "use_faiss": path == "faiss"},
        "mahalanobis",
        "MahalanobisMechanism",
        "Sigma~ = np.cov (ddof 1) / np.var of ALL entries (not the mean per-dimension "
        "variance); sqrtm each call; direction not renormalised (as in the paper)"
        + ("; approximate IVF search (nlist 100, nprobe 50)" if path == "faiss" else ""),
        {"lam": 0.2},
    )
    for path in ("faiss", "exact")
] + [
    Spec(
        "mldp-text",
        f"Vickrey ({path})",
        1.0,
        MLDP_DEFAULTS,
        {"use_faiss": path == "faiss"},
        "metric",
        "VickreyMechanism",
        "not the paper's rule: the input word is removed from the candidates when it is the "
        "nearest, then softmax(-t . d) over k=2 candidates with t=[1, 0] (squared L2 from "
        "faiss); depends on the input word, so not post-processing of the noise. Reference: "
        "our Vickrey (CMP noise) at its default threshold (the peer has no threshold to match)"
        + ("; approximate IVF search" if path == "faiss" else ""),
        {"lam": 0.0},
    )
    for path in ("faiss", "exact")
]
TG_ABOVE_FLOOR = (
    "not from the peer's docs: densitydp refuses epsilon <= (5 + 2 ln n) / Delta_min (57.5 for "
    "the 2,000-word space), so 60 is the smallest round epsilon at which a reference exists"
)
SPECS += [
    Spec(
        "mldp-text",
        f"TruncatedGumbel ({path})",
        60.0,
        TG_ABOVE_FLOOR,
        {} if path == "faiss" else {"use_faiss": False},
        "metric",
        "TruncatedGumbel",
        ("noise added to faiss's squared L2 distances; " if path == "faiss" else "")
        + "Delta_min/max from one random word; the word plus k - 1 neighbours: "
        + (
            "convention='mldp' should be the same law"
            if convention == "mldp"
            else "convention='seed' (k + 1 candidates, re-derived calibration) is a different law"
        ),
        {"convention": convention},
        f"convention={convention}",
    )
    for path in ("faiss", "exact")
    for convention in ("mldp", "seed")
] + [
    Spec(
        "mldp-text",
        "TruncatedGumbel (exact, exact bounds)",
        60.0,
        TG_ABOVE_FLOOR,
        {"use_faiss": False, "exact_bounds": True},
        "metric",
        "TruncatedGumbel",
        "the peer given the exact Delta_min / Delta_max over all pairs (the worker's "
        "exact_bounds, not a peer option), so only its candidates and noise remain: "
        + (
            "convention='mldp' should be the same law"
            if convention == "mldp"
            else "convention='seed' (k + 1 candidates, re-derived calibration) is a different law"
        ),
        {"convention": convention},
        f"convention={convention}",
    )
    for convention in ("mldp", "seed")
]


def mahalanobis_claim(space: Any, epsilon: float, lam: float) -> Callable[[Any, Any], Any]:
    """epsilon * d_RM(w, w'), d_RM^2 = (x - y)^T M^-1 (x - y), M = lam * Sigma~ + (1 - lam) I with
    Sigma~ the covariance scaled to unit average variance (as pypantera builds it)."""
    vectors = np.asarray(space.vectors, dtype=np.float64)
    covariance = np.cov(vectors.T, ddof=0)
    sigma = covariance / np.mean(np.var(vectors.T, axis=1))
    inverse = np.linalg.inv(lam * sigma + (1.0 - lam) * np.eye(vectors.shape[1]))

    def claim(word_ids: Any, other_ids: Any) -> Any:
        diff = vectors[np.asarray(word_ids)] - vectors[np.asarray(other_ids)]
        value = epsilon * np.sqrt(np.einsum("...i,ij,...j->...", diff, inverse, diff))
        return float(value) if np.ndim(value) == 0 else value

    return claim


def build_reference(dd: Any, spec: Spec, space: Any) -> tuple[Any, str]:
    if spec.reference is None:
        return None, "densitydp has no implementation of this mechanism: privacy-loss audit only"
    if not hasattr(dd, spec.reference):
        return None, f"no reference: this densitydp has no dd.{spec.reference}"
    kwargs = dict(spec.reference_options)
    if spec.reference == "TruncatedExponential":
        kwargs["beta"] = spec.params.get("beta", 1e-3)
    try:
        return getattr(dd, spec.reference)(space, epsilon=spec.epsilon, **kwargs), ""
    except (TypeError, ValueError) as exc:
        options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        return None, (
            f"no reference: dd.{spec.reference}(epsilon={spec.epsilon:g}, {options}) refused: {exc}"
        )


def _lam(params: dict) -> float:
    """The peer's Mahalanobis lambda (pypantera ``lam``, mldp-text ``lambd``, default 0.2)."""
    return float(params.get("lam", params.get("lambd", 0.2)))


def claim_for(dd: Any, spec: Spec, space: Any) -> Any:
    if spec.claim == "mahalanobis":
        return mahalanobis_claim(space, spec.epsilon, _lam(spec.params))
    return dd.PrivacyBound(spec.claim, spec.epsilon)


# --------------------------------------------------------------------------- measurements
def throughput(worker: PeerWorker, words: list[str], n_words: int) -> dict:
    """Words/s of the peer on ``n_words`` draws over ``words``, and the harness's overhead:
    a one-word round trip (latency) and the share of a big batch's wall time not spent in the
    peer."""
    started = time.perf_counter()
    reply = worker.request({"op": "perturb", "words": [words[0]]})
    latency = time.perf_counter() - started
    if not reply.get("ok"):
        raise WorkerError(reply.get("error"))
    batch = [words[i % len(words)] for i in range(n_words)]
    before_peer, before_wall = worker.peer_seconds, worker.wall_seconds
    out = worker(batch)
    peer = worker.peer_seconds - before_peer
    wall = worker.wall_seconds - before_wall
    return {
        "words": n_words,
        "peer_words_per_s": n_words / peer if peer > 0 else math.inf,
        "round_trip_words_per_s": n_words / wall if wall > 0 else math.inf,
        "overhead_fraction": 1.0 - peer / wall if wall > 0 else 0.0,
        "one_word_round_trip_ms": latency * 1e3,
        "changed_fraction": float(np.mean([a != b for a, b in zip(batch, out, strict=True)])),
    }


def samples_for_violation(
    hits: int, other_hits: int, n: int, claimed: float, alpha: float
) -> float:
    """Smallest confirmation sample at which the same hit frequencies would already show the
    violation (Clopper-Pearson at the audit's per-interval error ``alpha``): how many samples
    the finding needed, roughly (doubling search, then bisection)."""
    from scipy.stats import beta

    p, q = hits / n, other_hits / n

    def shows(m: int) -> bool:
        k, j = round(p * m), round(q * m)
        if k == 0:
            return False
        lower = beta.ppf(alpha, k, m - k + 1)
        upper = 1.0 if j >= m else beta.ppf(1 - alpha, j + 1, m - j)
        return lower > 0 and math.log(lower / upper) > claimed

    if not shows(n):
        return math.nan
    low, high = 1, n
    while high - low > max(1, low // 50):
        mid = (low + high) // 2
        if shows(mid):
            high = mid
        else:
            low = mid
    return 2 * high  # both halves: selection + confirmation


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# --------------------------------------------------------------------------- one mechanism
def audit_one(dd: Any, spec: Spec, space: Any, python: Path, glove_dir: str, args: Any) -> dict:
    row: dict[str, Any] = {
        "peer": spec.peer,
        "mechanism": spec.mechanism,
        "epsilon": spec.epsilon,
        "epsilon_source": spec.epsilon_source,
        "params": spec.params,
        "claim": spec.claim,
        "suspect": spec.suspect,
        "variant": spec.variant,
        "reference_options": spec.reference_options,
        "command": " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "vocab": len(space),
        "notes": [],
    }
    started = time.perf_counter()
    params = dict(spec.params)
    if spec.peer == "mldp-text" and spec.mechanism.startswith("TruncatedGumbel"):
        params.setdefault("use_faiss", "faiss" in spec.mechanism)
    config = {
        "peer": spec.peer,
        "mechanism": spec.mechanism.split(" ")[0],
        "epsilon": spec.epsilon,
        "vocab": len(space),
        "glove_dir": glove_dir,
        "workdir": str(WORKDIR),
        "params": params,
        "seed": args.seed,
    }
    tag = spec.key.replace(":", "-").replace(" ", "_").replace("(", "").replace(")", "")
    log(f"{spec.key} eps={spec.epsilon:g}: building the peer ...")
    try:
        worker = PeerWorker(
            python, config, log_path=WORKDIR / f"worker-{tag}.log", batch_timeout=args.batch_timeout
        )
    except WorkerError as exc:
        row.update(verdict=f"ERROR: {exc}", outcome="ERROR", seconds=time.perf_counter() - started)
        return row
    try:
        info = worker.info
        row["peer_info"] = info
        words = space.words(np.arange(len(space)))
        import hashlib

        ours = hashlib.sha256("\n".join(words).encode()).hexdigest()
        if info.get("words_sha256") != ours:
            row["notes"].append("the peer's GloVe slice differs from densitydp's (sha256)")
        if info.get("n_missing_words"):
            row["notes"].append(
                f"the peer loaded {info['vocabulary_loaded']} of {len(space)} words "
                f"(missing e.g. {info.get('missing_words', [])[:5]})"
            )
        frequent = [words[i] for i in np.random.default_rng(1).choice(min(500, len(words)), 32)]
        speed = throughput(worker, frequent, args.probe_words)
        row["throughput"] = speed
        log(
            f"{spec.key}: {speed['peer_words_per_s']:,.0f} words/s in the peer, "
            f"{speed['round_trip_words_per_s']:,.0f} round trip (overhead "
            f"{100 * speed['overhead_fraction']:.1f}%, one-word round trip "
            f"{speed['one_word_round_trip_ms']:.1f} ms)"
        )
        if args.throughput_only:
            row.update(verdict="not audited (--throughput-only)", outcome="-")
            return row
        n_words = len(np.unique(_pairs(dd, space, args)))
        budget = speed["peer_words_per_s"] * args.time_cap / n_words
        n_samples = int(min(args.samples, budget)) // 2 * 2
        if n_samples < args.min_samples:
            row["notes"].append(
                f"the time cap allows {n_samples} samples per word; ran the minimum "
                f"{args.min_samples}"
            )
            n_samples = args.min_samples
        row["samples_per_word"] = n_samples
        row["audit_words"] = int(n_words)
        reference, why = build_reference(dd, spec, space)
        if why:
            row["notes"].append(why)
        row["reference"] = repr(reference) if reference is not None else None
        claim = claim_for(dd, spec, space)
        log(
            f"{spec.key}: auditing {args.pairs} nearest pairs ({n_words} words) x {n_samples:,} "
            f"samples (expected {n_words * n_samples / speed['peer_words_per_s']:.0f} s) ..."
        )
        audit_started = time.perf_counter()
        kwargs = dict(
            space=space, claim=claim, interface="words", pairs="nearest",
            n_pairs=args.pairs, n_samples=n_samples, rng=args.seed,
        )  # fmt: skip
        accepts_reference = "reference" in inspect.signature(dd.audit).parameters
        if "progress" in inspect.signature(dd.audit).parameters:
            kwargs["progress"] = False
        if reference is not None and accepts_reference:
            report = dd.audit(worker, reference=reference, **kwargs)
            law = report.law
        else:
            report = dd.audit(worker, **kwargs)
            law = None
            if reference is not None:  # an auditor without `reference=`: a separate law test
                law = dd.compare_laws(
                    worker, reference, report.table[["word_id", "other_id"]].to_numpy().ravel(),
                    n_samples, rng=args.seed, space=space, claim=claim, interface="words",
                )  # fmt: skip
        row["audit_seconds"] = time.perf_counter() - audit_started
        row.update(_from_report(report, law, spec))
    except WorkerError as exc:
        row.update(verdict=f"ERROR: {exc}", outcome="ERROR")
    except Exception as exc:  # one mechanism's failure must not stop the others
        import traceback

        row.update(verdict=f"ERROR: {type(exc).__name__}: {exc}", outcome="ERROR")
        row["traceback"] = traceback.format_exc()
    finally:
        row["worker"] = worker.stats()
        worker.close()
        row["seconds"] = time.perf_counter() - started
    log(f"{spec.key}: {row.get('verdict')}")
    return row


def _pairs(dd: Any, space: Any, args: Any) -> np.ndarray:
    """The pairs dd.audit will draw (same rng, same strategy), to size the sample."""
    from densitydp.audit.sampling import choose_pairs

    return choose_pairs(space, "nearest", args.pairs, rng=np.random.default_rng(args.seed))


def _from_report(report: Any, law: Any, spec: Spec) -> dict:
    table = report.table
    out: dict[str, Any] = {
        "verdict": report.verdict(),
        "outcome": report.outcome,
        "violations": int(table["violation"].sum()),
        "pairs": len(table),
        "tested_pairs": int(table["tested"].sum()),
        "summary": report.summary(),
        "pairs_table": table.drop(columns=[c for c in ("event_id",) if c in table]).to_dict(
            "records"
        ),
        "report_notes": list(getattr(report, "notes", [])),
    }
    findings = []
    alpha = getattr(report, "loss_alpha", 0.0) or 0.0
    for r in table[table["violation"]].itertuples():
        needed = (
            samples_for_violation(int(r.hits), int(r.other_hits), int(r.n), float(r.claimed), alpha)
            if alpha > 0
            else math.nan
        )
        findings.append(
            {
                "kind": "privacy loss",
                "pair": f"{r.word} / {r.other}",
                "distance": float(r.distance),
                "event": r.event,
                "hits": int(r.hits),
                "other_hits": int(r.other_hits),
                "n_confirm": int(r.n),
                "eps_lower": float(r.eps_lower),
                "claimed": float(r.claimed),
                "samples_needed_per_word": needed,
            }
        )
    if law is not None:
        lt = law.table
        out["law"] = {
            "test": str(lt["test"].iloc[0]) if len(lt) else None,
            "words": len(lt),
            "rejected": int(lt["rejected"].sum()),
            "min_p_value": float(lt["p_value"].min()),
            "min_p_adjusted": float(lt["p_adjusted"].min()),
            "max_tv_hat": float(lt["tv_hat"].max()),
            "max_tv_lower": float(lt["tv_lower"].max()),
            "max_tv_upper": float(lt["tv_upper"].max()),
            "n_samples": int(law.n_samples),
            "table": lt.to_dict("records"),
        }
        try:
            from densitydp.audit.laws import samples_for_power
        except ImportError:  # pragma: no cover - API still moving
            samples_for_power = None
        for r in lt[lt["rejected"]].itertuples():
            needed = math.nan
            if samples_for_power is not None and r.tv_hat > 0:
                try:
                    needed = samples_for_power(
                        float(r.tv_hat), int(r.bins), law.alpha / len(lt),
                        two_sample=str(r.test) != "goodness of fit",
                    )  # fmt: skip
                except Exception:  # the API is still moving: leave the figure out
                    needed = math.nan
            findings.append(
                {
                    "kind": "law",
                    "word": r.word,
                    "test": r.test,
                    "p_adjusted": float(r.p_adjusted),
                    "tv_hat": float(r.tv_hat),
                    "tv_lower": float(r.tv_lower),
                    "tv_upper": float(r.tv_upper),
                    "outside": int(getattr(r, "outside", 0) or 0),
                    "samples_needed_per_word": needed,
                }
            )
    if report.goodness_of_fit is not None:
        out["goodness_of_fit"] = report.goodness_of_fit.to_dict("records")
    out["findings"] = findings
    return out


# --------------------------------------------------------------------------- output
def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def row_order(row: dict) -> tuple:
    """Rows in the order of SPECS (peer, mechanism, reference variant), then by epsilon."""
    for i, spec in enumerate(SPECS):
        if (spec.peer, spec.mechanism, spec.variant) == (
            row["peer"],
            row["mechanism"],
            row.get("variant", ""),
        ):
            return (i, float(row["epsilon"]))
    return (len(SPECS), float(row["epsilon"]))


def stale(row: dict) -> bool:
    """A saved row no spec produces any more: an unknown mechanism, or a row without a
    reference variant at an epsilon where the mechanism now has one row per variant."""
    same = [s for s in SPECS if (s.peer, s.mechanism) == (row["peer"], row["mechanism"])]
    variant = row.get("variant", "")
    if not any(s.variant == variant for s in same):
        return True
    return not variant and any(s.variant and s.epsilon == row["epsilon"] for s in same)


def law_verdict(row: dict) -> str:
    """The law comparison in a few words: which reference, and whether the laws differ."""
    law = row.get("law")
    if not row.get("reference"):
        return "no reference"
    if not law:
        return "not compared"
    if law["rejected"]:
        evidence = (
            f"TV >= {law['max_tv_lower']:.2g}"
            if law["max_tv_lower"] > 0
            else f"p_adj {law['min_p_adjusted']:.2g}"
        )
        return f"**differs** ({law['rejected']}/{law['words']} words; {evidence})"
    return f"same law not rejected (TV <= {law['max_tv_upper']:.2g})"


def write_results(rows: list[dict], meta: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit_peers.json").write_text(
        json.dumps(jsonable({"meta": meta, "rows": rows}), indent=1) + "\n"
    )
    commands = sorted(
        {(r["date"], r["command"]) for r in rows if r.get("command") is not None}, reverse=True
    )
    lines = [
        "# Audit of the PyPI peers' word mechanisms",
        "",
        f"`python benchmarks/audit_peers.py {meta['argv']}` — {meta['date']}; densitydp "
        f"{meta['densitydp']}; space: the {meta['vocab']:,} most frequent GloVe 6B-50d words "
        f"(peer and reference alike); {meta['pairs']} nearest pairs per mechanism; "
        f"confidence 0.95 (Bonferroni over pairs); machine: {meta['cpus']} cores, shared.",
        "",
    ]
    if commands:
        lines += [
            "Rows merged from several runs (`--merge`); this session's, newest first (rows "
            "without a run line in their section are from earlier sessions): "
            + "; ".join(f"{date}: `{command}`" for date, command in commands),
            "",
        ]
    lines += [
        "| peer | mechanism | epsilon | verdict | violations | law vs reference | law p (Holm, "
        "min) | TV upper (max) | samples / word | seconds | peer words/s | harness overhead |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        law = row.get("law") or {}
        speed = row.get("throughput") or {}
        name = row["mechanism"] + (f" vs {row['variant']}" if row.get("variant") else "")
        lines.append(
            f"| {row['peer']} | {name} | {row['epsilon']:g} | "
            f"{row.get('outcome', '-')} | "
            f"{_fmt(row.get('violations'), 'd') if 'violations' in row else '-'}"
            f"{'/' + str(row['pairs']) if 'pairs' in row else ''} | {law_verdict(row)} | "
            f"{_fmt(law.get('min_p_adjusted'))} | {_fmt(law.get('max_tv_upper'))} | "
            f"{_fmt(row.get('samples_per_word'), ',')} | {_fmt(row.get('seconds'), '.0f')} | "
            f"{_fmt(speed.get('peer_words_per_s'), ',.0f')} | "
            f"{_fmt(100 * speed['overhead_fraction'] if speed else None, '.1f')}% |"
        )
    lines += ["", "## Per mechanism", ""]
    for row in rows:
        name = row["mechanism"] + (f" vs {row['variant']}" if row.get("variant") else "")
        lines.append(f"### {row['peer']} {name} (epsilon {row['epsilon']:g})")
        lines.append("")
        lines.append(f"- verdict: {row.get('verdict', '-')}")
        lines.append(f"- epsilon source: {row['epsilon_source']}")
        if row.get("command") is not None:
            lines.append(
                f"- run: `python benchmarks/audit_peers.py {row['command']}` ({row['date']})"
            )
        claim = {
            "metric": f"{row['epsilon']:g} * Euclidean d(w, w')",
            "pure": f"{row['epsilon']:g}-DP (any two words)",
            "mahalanobis": f"{row['epsilon']:g} * d_RM(w, w') (regularised Mahalanobis, lam "
            f"{_lam(row['params']):g})",
        }[row["claim"]]
        lines.append(f"- claim audited: {claim}; reference: {row.get('reference') or 'none'}")
        if row.get("suspect"):
            lines.append(f"- suspected from the code (to verify): {row['suspect']}")
        info = row.get("peer_info") or {}
        extra = {
            k: info[k]
            for k in ("gamma", "threshold", "min_inter_dist", "max_inter_dist",
                      "exact_min_inter_dist", "exact_max_inter_dist", "bounds_from_word",
                      "a", "b", "b_imag", "setup_seconds")
            if k in info
        }  # fmt: skip
        if extra:
            lines.append(
                "- peer parameters: " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items())
            )
        for note in row.get("notes", []) + row.get("report_notes", []):
            lines.append(f"- note: {note}")
        for f in row.get("findings", []):
            if f["kind"] == "privacy loss":
                lines.append(
                    f"- finding (privacy loss): pair {f['pair']} (d = {f['distance']:.3f}), "
                    f"event {f['event']}: {f['hits']} vs {f['other_hits']} hits of "
                    f"{f['n_confirm']:,} confirmation draws, eps_lower {f['eps_lower']:.3g} > "
                    f"claimed {f['claimed']:.3g}; needed about "
                    f"{_fmt(f['samples_needed_per_word'], ',.0f')} samples per word"
                )
            else:
                lines.append(
                    f"- finding (law vs reference): word {f['word']!r} ({f['test']}): p_adj "
                    f"{f['p_adjusted']:.2g}, TV in [{f['tv_lower']:.3g}, {f['tv_upper']:.3g}] "
                    f"(hat {f['tv_hat']:.3g}), {f['outside']} draws outside the reference's "
                    f"support; found with {_fmt(row.get('samples_per_word'), ',')} samples per "
                    "word (a test sized for ANY law at this TV with power 0.9 would need "
                    f"{_fmt(f['samples_needed_per_word'], ',.0f')})"
                )
        if row.get("traceback"):
            lines.append("- traceback (last line): " + row["traceback"].strip().splitlines()[-1])
        lines.append("")
    (RESULTS / "audit_peers.md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- main
def peer_python(build: bool) -> Path:
    python = PEER_ENV / "bin" / "python"
    if python.exists():
        return python
    if not build:
        raise SystemExit(f"{python} does not exist; run without --no-build to create it")
    base = find_python311()
    if base is None:
        raise SystemExit("no Python 3.11 found: the peers (numpy < 2) cannot be installed")
    log(f"creating the peer environment with {base}")
    subprocess.run([base, "-m", "venv", str(PEER_ENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer", choices=["pypantera", "mldp-text"], action="append")
    parser.add_argument(
        "--mechanism",
        action="append",
        help="substring of 'peer:mechanism vs variant' (repeatable)",
    )
    parser.add_argument("--vocab", type=int, default=2000, help="most frequent GloVe words")
    parser.add_argument("--samples", type=int, default=200_000, help="max samples per word")
    parser.add_argument("--min-samples", type=int, default=200)
    parser.add_argument(
        "--time-cap", type=float, default=240.0, help="seconds of peer time per mechanism audit"
    )
    parser.add_argument("--pairs", type=int, default=5, help="nearest pairs per mechanism")
    parser.add_argument("--epsilon", type=float, help="override every mechanism's epsilon")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-words", type=int, default=400, help="words in the speed probe")
    parser.add_argument("--batch-timeout", type=float, default=900.0)
    parser.add_argument("--no-build", action="store_true", help="reuse benchmarks/.peer-env")
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument(
        "--merge", action="store_true",
        help="keep the rows of the existing results for mechanisms not run this time",
    )  # fmt: skip
    parser.add_argument(
        "--rewrite-md", action="store_true", help="rewrite the .md from the existing .json and exit"
    )
    args = parser.parse_args(argv)
    if args.rewrite_md:
        saved = json.loads((RESULTS / "audit_peers.json").read_text())
        write_results(saved["rows"], saved["meta"])
        return 0

    import densitydp as dd
    from densitydp.embeddings import _glove_files

    python = peer_python(not args.no_build)
    WORKDIR.mkdir(exist_ok=True)
    glove_dir = str(_glove_files()[0].parent)  # data files only; the peer reads them itself
    space = dd.load_glove(top=args.vocab)
    specs = [
        s
        for s in SPECS
        if (not args.peer or s.peer in args.peer)
        and (not args.mechanism or any(m.lower() in s.key.lower() for m in args.mechanism))
    ]
    if args.epsilon is not None:
        for s in specs:
            s.epsilon = args.epsilon
            s.epsilon_source = "--epsilon on the command line"
    meta = {
        "argv": " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "densitydp": dd.__version__,
        "vocab": len(space),
        "pairs": args.pairs,
        "seed": args.seed,
        "time_cap": args.time_cap,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }

    def key(row: dict) -> tuple:
        return (row["peer"], row["mechanism"], float(row["epsilon"]), row.get("variant", ""))

    def order(row: dict) -> tuple:
        return row_order(row)

    kept: list[dict] = []
    previous = RESULTS / "audit_peers.json"
    if args.merge and previous.exists():
        kept = json.loads(previous.read_text())["rows"]
        kept = [r for r in kept if not stale(r)]
    rows: list[dict] = []
    for spec in specs:
        rows.append(audit_one(dd, spec, space, python, glove_dir, args))
        done = {key(r) for r in rows}
        merged = [r for r in kept if key(r) not in done] + rows
        merged.sort(key=order)
        write_results(merged, meta)
    rows = [r for r in kept if key(r) not in {key(x) for x in rows}] + rows
    rows.sort(key=order)
    meta["loadavg_end"] = os.getloadavg()
    write_results(rows, meta)
    log(f"wrote {RESULTS / 'audit_peers.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
