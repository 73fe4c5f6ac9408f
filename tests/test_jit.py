from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np
from densitydp import _kernels
vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
print(_kernels.squared_distance(np.zeros(3), vectors[1]))
"""


@pytest.mark.slow
def test_kernels_are_cached_under_numba_cache_dir(tmp_path):
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(result.stdout) == 9.0 + 16.0 + 25.0
    cached = [p.name for p in tmp_path.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert any(name.startswith("_kernels.squared_distance") for name in cached), cached
