#!/usr/bin/env python3
"""One PyPI peer mechanism as a long-lived word-perturbation server (runs in the peer venv).

Started by ``benchmarks/audit_peers.py`` with the interpreter of ``benchmarks/.peer-env``
(Python 3.11, numpy < 2: what pypantera 1.0.2 and mldp-text 0.1.2 need)::

    python peer_worker.py --config '{"peer": "pypantera", "mechanism": "TEM", "epsilon": 10,
                                     "vocab": 2000, "glove_dir": "...", "workdir": "...",
                                     "params": {"beta": 0.001}, "seed": 0}'

It builds ONE peer mechanism over the first ``vocab`` GloVe 6B-50d words (frequency order) and
then serves requests, one JSON object per line on stdin, one JSON reply per line on stdout:

    {"op": "perturb", "words": ["the", "king"]}  -> {"ok": true, "words": [...], "seconds": s}
    {"op": "info"}                               -> {"ok": true, "info": {...}}
    {"op": "quit"}                               -> {"ok": true} and exit 0

The first line it writes is the build result: ``{"ok": true, "ready": true, "info": {...}}``
or ``{"ok": false, "error": "...", "traceback": "..."}`` (then it exits 1). A request that fails
gets ``{"ok": false, "error": ...}`` and the worker keeps serving. ``seconds`` is the time spent
inside the peer's own code for that batch, so the caller can tell the harness's overhead from
the peer's. Whatever the peers print goes to stderr: file descriptor 1 is redirected there and
the replies use a private duplicate of the original stdout.

Randomness: the peers draw from numpy's and Python's global generators; the worker seeds both
once (``seed``) and never again, so a run is reproducible for a given sequence of requests.

Offline shims (same as ``peer_bench.py``, imported from it):
  * NLTK: an empty ``wordnet`` directory and a stop-word list (mldp-text imports wordnet);
  * mldp-text TruncatedGumbel: its constructor picks one random word with
    ``random.sample(dict_keys, 1)``, a TypeError on Python >= 3.11; the worker computes the same
    thing (``random.choice`` over the words, seeded) and passes ``min_inter_dist`` /
    ``max_inter_dist`` in, so the peer runs with the bounds its code would have computed;
  * mldp-text TruncatedGumbel with a Poisson draw of 0: the faiss path raises an
    AssertionError (search with k = 0); the procedure then returns the word itself
    (``peer_bench.safe_replace``), which is what its exact path does.

Parameter ``exact_bounds`` (mldp-text TruncatedGumbel only, not a peer parameter): pass the
exact smallest / largest distance between two words as ``min_inter_dist`` / ``max_inter_dist``
instead of the peer's one-word estimate, so a law test sees the rest of its procedure alone.

Embedding files: pypantera reads a GloVe text file; the worker writes one with ``%.9g`` per
value (float32 round-trips exactly, so both sides use identical vectors). mldp-text gets a
gensim KeyedVectors built from the float32 array directly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

#: Words per call of pypantera's embedding mechanisms: its distance is a (n, V, d) broadcast.
PANTERA_CHUNK = 64

PANTERA = ("CMP", "Mahalanobis", "VickreyCMP", "VickreyMhl", "CusText", "SanText", "TEM")
MLDP = {
    "MultivariateCalibrated": "multivariate_calibrated",
    "TEM": "tem",
    "TruncatedGumbel": "truncated_gumbel",
    "Mahalanobis": "mahalanobis",
    "Vickrey": "vickrey",
}


def _peer_bench():
    """peer_bench.py (same directory) without its argument parsing."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import peer_bench

    return peer_bench


def _glove(glove_dir: str, n_words: int) -> tuple[list[str], np.ndarray]:
    words, vectors = _peer_bench().load_glove(glove_dir)
    return list(words[:n_words]), np.ascontiguousarray(vectors[:n_words], dtype=np.float32)


def _exact_text_file(workdir: str, words: list[str], vectors: np.ndarray) -> str:
    """GloVe text format (no header), every float32 written with 9 significant digits."""
    path = os.path.join(workdir, f"glove9_{len(words)}.txt")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for word, row in zip(words, vectors, strict=True):
                f.write(word + " " + " ".join(f"{x:.9g}" for x in row) + "\n")
        os.replace(tmp, path)
    return path


def _distance_range(vectors: np.ndarray) -> tuple[float, float]:
    """Exact smallest and largest distance between two distinct rows (small vocabularies)."""
    x = vectors.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    smallest, largest = np.inf, 0.0
    for start in range(0, len(x), 512):
        d2 = sq[start : start + 512, None] + sq[None, :] - 2.0 * x[start : start + 512] @ x.T
        np.maximum(d2, 0.0, out=d2)
        rows = np.arange(start, min(start + 512, len(x)))
        d2[rows - start, rows] = np.inf
        smallest = min(smallest, float(d2.min()))
        d2[rows - start, rows] = 0.0
        largest = max(largest, float(d2.max()))
    return float(np.sqrt(smallest)), float(np.sqrt(largest))


class Peer:
    """One built peer mechanism and a batch function ``perturb(words) -> words``."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.peer = config["peer"]
        self.name = config["mechanism"]
        self.epsilon = float(config["epsilon"])
        self.params = dict(config.get("params") or {})
        seed = int(config.get("seed", 0))
        workdir = config["workdir"]
        os.makedirs(workdir, exist_ok=True)
        _peer_bench().setup_nltk_shim(workdir)
        self.words, self.vectors = _glove(config.get("glove_dir"), int(config["vocab"]))
        self.info: dict = {
            "peer": self.peer,
            "mechanism": self.name,
            "epsilon": self.epsilon,
            "params": self.params,
            "seed": seed,
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "vocab": len(self.words),
            "words_sha256": hashlib.sha256("\n".join(self.words).encode()).hexdigest(),
        }
        np.random.seed(seed)  # noqa: NPY002 - the peers draw from numpy's global state
        random.seed(seed)
        started = time.perf_counter()
        if self.peer == "pypantera":
            self._build_pantera(workdir)
        elif self.peer == "mldp-text":
            self._build_mldp()
        else:
            raise ValueError(f"unknown peer {self.peer!r}; expected pypantera or mldp-text")
        self.info["setup_seconds"] = time.perf_counter() - started

    # -- pypantera ---------------------------------------------------------------------------

    def _build_pantera(self, workdir: str) -> None:
        from importlib import metadata

        # pypantera installs a top-level package called `src`: keep this directory (and the
        # caller's working directory) from shadowing it.
        sys.path[:] = [p for p in sys.path if p not in ("", ".", HERE, os.getcwd())]
        if self.name not in PANTERA:
            raise ValueError(f"pypantera has no mechanism {self.name!r}; one of {PANTERA}")
        from src.EmbeddingPerturbationMechanism.cmp import CMP
        from src.EmbeddingPerturbationMechanism.mahalanobis import Mahalanobis
        from src.EmbeddingPerturbationMechanism.vickrey import VickreyCMP, VickreyMhl
        from src.SamplingPerturbationMechanism.custext import CusText
        from src.SamplingPerturbationMechanism.santext import SanText
        from src.SamplingPerturbationMechanism.tem import TEM

        classes = {
            "CMP": CMP,
            "Mahalanobis": Mahalanobis,
            "VickreyCMP": VickreyCMP,
            "VickreyMhl": VickreyMhl,
            "CusText": CusText,
            "SanText": SanText,
            "TEM": TEM,
        }
        path = _exact_text_file(workdir, self.words, self.vectors)
        mech = classes[self.name]({"embPath": path, "epsilon": self.epsilon, **self.params})
        self.mech = mech
        loaded = list(mech.vocab.embeddings.keys())
        self.info["version"] = metadata.version("pypantera")
        self.info["vocabulary_loaded"] = len(loaded)
        self.info["missing_words"] = sorted(set(self.words) - set(loaded))[:50]
        self.info["n_missing_words"] = len(set(self.words) - set(loaded))
        if self.name == "TEM":
            self.info["gamma"] = float(mech.gamma)
        self.vocabulary = set(loaded)

    def _perturb_pantera(self, words: list[str]) -> list[str]:
        mech, out = self.mech, []
        if self.name in ("CMP", "Mahalanobis", "VickreyCMP", "VickreyMhl"):
            # what obfuscateText does for one text: processText(noisyEmb(tokens))
            for start in range(0, len(words), PANTERA_CHUNK):
                chunk = words[start : start + PANTERA_CHUNK]
                out.extend(mech.processText(mech.noisyEmb(chunk)).split(" "))
        elif self.name == "SanText":
            # its probability cache is keyed by the whole text: one word per text keeps it to
            # one row per distinct word (a batch-sized key would grow without bound)
            for word in words:
                out.append(mech.processText([word]))
        else:  # CusText caches per word; TEM has no cache
            for start in range(0, len(words), 1024):
                out.extend(mech.processText(words[start : start + 1024]).split(" "))
        return out

    # -- mldp-text ---------------------------------------------------------------------------

    def _build_mldp(self) -> None:
        from importlib import metadata

        import faiss
        import mldp_text
        from gensim.models import KeyedVectors

        base = self.name.split(" ")[0]
        if base not in MLDP:
            raise ValueError(f"mldp-text has no mechanism {self.name!r}; one of {list(MLDP)}")
        kv = KeyedVectors(vector_size=self.vectors.shape[1], count=0, dtype=np.float32)
        kv.add_vectors(self.words, self.vectors)
        kwargs = dict(self.params)
        if kwargs.pop("exact_bounds", False):
            # the exact smallest / largest distance over all pairs instead of its one-word
            # estimate: isolates the rest of the procedure (candidates, noise) for a law test
            exact_min, exact_max = _distance_range(self.vectors)
            kwargs["min_inter_dist"], kwargs["max_inter_dist"] = exact_min, exact_max
        if base == "TruncatedGumbel" and "min_inter_dist" not in kwargs:
            # what TruncatedGumbel.__init__ computes (from ONE random word) before it hits
            # random.sample(dict_keys) on Python >= 3.11
            start = random.choice(kv.index_to_key)
            index = faiss.IndexFlatL2(kv.vector_size)
            index.add(np.ascontiguousarray(kv.vectors).astype(np.float32))
            squared, _ = index.search(np.array([kv[start]]).astype(np.float32), len(kv))
            distances = np.sqrt(squared[0][squared[0] != 0])
            kwargs["min_inter_dist"] = float(distances.min())
            kwargs["max_inter_dist"] = float(distances.max())
            self.info["bounds_from_word"] = start
        if base == "TruncatedGumbel":
            exact_min, exact_max = _distance_range(self.vectors)
            self.info["min_inter_dist"] = kwargs["min_inter_dist"]
            self.info["max_inter_dist"] = kwargs["max_inter_dist"]
            self.info["exact_min_inter_dist"] = exact_min
            self.info["exact_max_inter_dist"] = exact_max
        self.mech = mldp_text.get_mechanism(
            MLDP[base],
            epsilon=self.epsilon,
            embedding_matrix=kv,
            dim=self.vectors.shape[1],
            vocab=set(self.words),
            **kwargs,
        )
        if base == "TruncatedGumbel":
            b = self.mech.b
            self.info["a"] = float(np.real(self.mech.a))
            self.info["b"] = float(np.real(b))
            self.info["b_imag"] = float(np.imag(b))
        if base == "TEM":
            beta = 0.001
            self.info["threshold"] = round(
                2 / self.epsilon * np.log(((1 - beta) * len(self.words)) / beta), 1
            )
        self.info["version"] = metadata.version("mldp-text")
        self.info["faiss"] = metadata.version("faiss-cpu")
        self.info["vocabulary_loaded"] = len(kv)
        self.info["n_missing_words"] = 0
        self.vocabulary = set(self.words)

    def _perturb_mldp(self, words: list[str]) -> list[str]:
        safe_replace = _peer_bench().safe_replace
        return [safe_replace(self.mech, word) for word in words]

    # -- the one entry point -----------------------------------------------------------------

    def perturb(self, words: list[str]) -> list[str]:
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise TypeError("`words` must be a list of strings")
        if not words:
            return []
        if self.peer == "pypantera":
            out = self._perturb_pantera(words)
        else:
            out = self._perturb_mldp(words)
        out = [str(w) for w in out]  # numpy str_ from np.random.choice
        if len(out) != len(words):
            raise RuntimeError(f"the peer returned {len(out)} words for {len(words)}")
        return out


def serve(config: dict, reply_stream) -> int:
    def reply(message: dict) -> None:
        reply_stream.write(json.dumps(message) + "\n")
        reply_stream.flush()

    try:
        peer = Peer(config)
    except BaseException as exc:  # reported to the caller, then exit
        reply(
            {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
        return 1
    reply({"ok": True, "ready": True, "info": peer.info})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "perturb":
                started = time.perf_counter()
                out = peer.perturb(request["words"])
                reply({"ok": True, "words": out, "seconds": time.perf_counter() - started})
            elif op == "info":
                reply({"ok": True, "info": peer.info})
            elif op == "quit":
                reply({"ok": True})
                return 0
            else:
                reply({"ok": False, "error": f"unknown op {op!r}"})
        except Exception as exc:  # one failed batch is a message, not a crash
            reply(
                {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
            )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="JSON object (see the module docstring)")
    args = parser.parse_args()
    config = json.loads(args.config)
    # Replies go to a private copy of stdout; anything else written to fd 1 (peer prints, C
    # libraries) lands on stderr and cannot corrupt the protocol.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(os.dup(2), "w", buffering=1)
    with os.fdopen(reply_fd, "w", encoding="utf-8") as reply_stream:
        return serve(config, reply_stream)


if __name__ == "__main__":
    sys.exit(main())
