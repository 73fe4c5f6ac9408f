"""Test configuration: an isolated neighbour cache, shared small spaces."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

# Never touch the user's cache: every test session gets its own folder.
os.environ["DENSITYDP_CACHE"] = tempfile.mkdtemp(prefix="densitydp-test-cache-")
# figures are written to files, never shown
os.environ.setdefault("MPLBACKEND", "Agg")

import densitydp as dd


@pytest.fixture(scope="session")
def small_space() -> dd.EmbeddingSpace:
    return dd.synthetic_space(n_words=600, dim=8, n_clusters=5, rng=3)


@pytest.fixture(scope="session")
def glove_top():
    """The 20,000 most frequent GloVe words (skipped when the extra is missing)."""
    pytest.importorskip("pyarrow")
    try:
        return dd.load_glove(top=20_000)
    except ModuleNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSITYDP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def brute_distances(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    diff = array[:, None, :] - array[None, :, :]
    return np.sqrt((diff**2).sum(-1))


def assert_same_at_thread_counts(mechanisms, words, rng) -> None:
    """Each mechanism samples ``words`` the same with 1 and 2 numba threads."""
    import numba

    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append([m.sample(words, rng=rng) for m in mechanisms])
    finally:
        numba.set_num_threads(before)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)
