#!/usr/bin/env python3
"""`make bench`: run every benchmark of this folder; results go to benchmarks/results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ["bench_neighbors.py"],  # full GloVe (400,000 words), k = 64: about 15-25 minutes here
]

if __name__ == "__main__":
    for command in BENCHMARKS:
        subprocess.run(
            [sys.executable, str(HERE / command[0]), *command[1:], *sys.argv[1:]], check=True
        )
