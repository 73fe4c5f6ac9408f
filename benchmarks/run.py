#!/usr/bin/env python3
"""`make bench`: run every benchmark of this folder; results go to benchmarks/results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_neighbors.py",  # exact table of all 400,000 GloVe words: about 15 minutes here
    "bench_mechanisms.py",  # ours and the PyPI peers: about 45 minutes here
    "bench_laplace_pruning.py",  # exact Laplace decoding against numpy brute force: 2 minutes
    "bench_mcmc.py",  # MH chains and KDE against numpy / scikit-learn / scipy: 2 minutes
    "bench_audit.py",  # audit seconds per pair at 10 million samples per word: 2 minutes
]

if __name__ == "__main__":
    for script in BENCHMARKS:
        subprocess.run([sys.executable, str(HERE / script)], check=True)
