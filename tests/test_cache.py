"""The neighbour cache under attack: every forged, foreign or odd file is detected (CacheWarning,
file rebuilt) or harmless (the table equals the uncached one).

Tests run as root here, and root ignores permission bits, so unwritable folders are emulated
honestly: ``DENSITYDP_CACHE`` under a regular file (``mkdir`` raises ``NotADirectoryError``), a
monkeypatched ``tempfile.mkstemp`` raising ``PermissionError``, and ``os.chown`` to hand the
folder to another uid.
"""

from __future__ import annotations

import json
import os
import stat
import warnings

import numpy as np
import pytest

import densitydp as dd
from densitydp import neighbors as nb

K = 10


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return dd.synthetic_space(n_words=300, dim=6, n_clusters=4, rng=11).vectors


@pytest.fixture(scope="module")
def reference(vectors) -> nb.NeighborTable:
    return dd.EmbeddingSpace([f"w{i}" for i in range(len(vectors))], vectors).neighbors(
        K, cache=False
    )


@pytest.fixture(autouse=True)
def _forget_certificates():
    nb._CERTIFIED.clear()  # every test certifies from its own files
    yield
    nb._CERTIFIED.clear()


def new_space(vectors: np.ndarray) -> dd.EmbeddingSpace:
    return dd.EmbeddingSpace([f"w{i}" for i in range(len(vectors))], vectors)


def cache_file(folder) -> os.PathLike:
    (path,) = folder.glob("neighbors-*.npz")
    return path


def read_file(path) -> tuple[dict, np.ndarray, np.ndarray]:
    with np.load(path) as archive:
        meta = json.loads(bytes(archive["meta"]).decode())
        return meta, archive["ids"].copy(), archive["distances"].copy()


def write_file(path, meta, ids, distances) -> None:
    """What a forger with write access does: any arrays, any metadata, a well-formed file."""
    payload = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as stream:
        np.savez(stream, ids=ids, distances=distances, meta=payload)


def exact_distance(vectors, a, b) -> float:
    return float(np.sqrt(((vectors[a].astype(np.float64) - vectors[b]) ** 2).sum()))


def assert_rebuilt(vectors, reference, folder, match):
    """Loading warns with ``match``, returns the exact table, and leaves a valid file."""
    with pytest.warns(dd.CacheWarning, match=match):
        table = new_space(vectors).neighbors(K)
    np.testing.assert_array_equal(table.ids, reference.ids)
    np.testing.assert_array_equal(table.distances, reference.distances)
    assert table.min_distance == reference.min_distance
    assert table.max_distance == reference.max_distance
    nb._CERTIFIED.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = new_space(vectors).neighbors(K)  # the rebuilt file is valid
    np.testing.assert_array_equal(again.ids, reference.ids)


@pytest.fixture
def no_sampling(monkeypatch):
    """Switch off the random exact rows, to show a deterministic check catches the attack."""
    monkeypatch.setattr(nb, "_VERIFIED_ROWS", 0)


@pytest.fixture
def cached(vectors, fresh_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new_space(vectors).neighbors(K)
    nb._CERTIFIED.clear()
    return fresh_cache


# ----------------------------------------------------------------------------- the honest path


def test_roundtrip_is_validated_private_and_read_only(vectors, reference, cached):
    assert stat.S_IMODE(cached.stat().st_mode) == 0o700
    path = cache_file(cached)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    meta, _, _ = read_file(path)
    low_a, low_b = meta["min_distance_pair"]
    high_a, high_b = meta["max_distance_pair"]
    assert exact_distance(vectors, low_a, low_b) == pytest.approx(meta["min_distance"], rel=1e-15)
    assert exact_distance(vectors, high_a, high_b) == pytest.approx(meta["max_distance"], rel=1e-15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = new_space(vectors).neighbors(K)
        extremes = (new_space(vectors).min_distance(), new_space(vectors).max_distance())
    np.testing.assert_array_equal(table.ids, reference.ids)
    assert extremes == (reference.min_distance, reference.max_distance)
    assert not table.ids.flags.writeable and not table.distances.flags.writeable


def test_each_load_draws_a_fresh_sample(vectors, cached, monkeypatch):
    monkeypatch.setattr(nb, "_VERIFIED_ROWS", 20)
    drawn = []
    original = nb.partial_table

    def spy(vectors, word_ids, k, **options):
        drawn.append(tuple(np.sort(word_ids)))
        return original(vectors, word_ids, k, **options)

    monkeypatch.setattr(nb, "partial_table", spy)
    for _ in range(3):
        new_space(vectors).neighbors(K)
    assert len(drawn) == 3 and len(set(drawn)) == 3  # 300 choose 20: a repeat is impossible


# ----------------------------------------------------------------------------- forged metadata


@pytest.mark.parametrize("field", ["min_distance", "max_distance"])
@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_forged_extreme_value(vectors, reference, cached, field, factor):
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    meta[field] *= factor
    write_file(path, meta, ids, distances)
    with pytest.warns(dd.CacheWarning, match="witness pair"):
        assert new_space(vectors).min_distance() == reference.min_distance  # metadata path
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "witness pair")


def test_forged_min_with_a_consistent_witness(vectors, reference, cached, no_sampling):
    """A larger min_distance backed by a real pair at that distance: the grid finds the closer
    pair. (Larger is the dangerous direction: the Gumbel noise shrinks.)"""
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    row = int(np.argsort(distances[:, 1])[10])
    meta["min_distance_pair"] = [row, int(ids[row, 1])]
    meta["min_distance"] = exact_distance(vectors, row, int(ids[row, 1]))
    write_file(path, meta, ids, distances)
    with pytest.warns(dd.CacheWarning, match="closer than min_distance"):
        assert new_space(vectors).min_distance() == reference.min_distance


def test_forged_min_with_the_closest_pair_hidden(vectors, reference, cached, no_sampling):
    """The closest pair removed from both of its rows, every row still consistent (sorted,
    exact distances, symmetric): the closest-pair certificate catches it without sampling."""
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    a, b = meta["min_distance_pair"]
    for row, gone in ((a, b), (b, a)):
        keep = [j for j in range(K) if ids[row, j] != gone]
        order = np.argsort([exact_distance(vectors, row, w) for w in range(len(vectors))])
        order = [w for w in order if w != row and w not in ids[row]]
        new_ids = [*list(ids[row, keep]), order[0]]
        ids[row] = new_ids
        distances[row] = [np.float32(exact_distance(vectors, row, w)) for w in new_ids]
    row = int(np.argmin(distances[:, 1]))
    meta["min_distance_pair"] = [row, int(ids[row, 1])]
    meta["min_distance"] = exact_distance(vectors, row, int(ids[row, 1]))
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "closer than min_distance")


def test_forged_max_with_a_consistent_witness(vectors, reference, cached, no_sampling):
    """A smaller diameter backed by a real pair: the centroid certificate finds a farther pair.
    (Smaller is the dangerous direction: the Gumbel truncation window shrinks.)"""
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    a = meta["max_distance_pair"][0]
    far = np.argsort([exact_distance(vectors, a, w) for w in range(len(vectors))])[-5]
    meta["max_distance_pair"] = [a, int(far)]
    meta["max_distance"] = exact_distance(vectors, a, int(far))
    assert meta["max_distance"] < reference.max_distance
    write_file(path, meta, ids, distances)
    with pytest.warns(dd.CacheWarning, match="farther than max_distance"):
        assert new_space(vectors).max_distance() == reference.max_distance
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "farther than max_distance")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_distance_pair", [3, 3]),
        ("max_distance_pair", [0, 10**9]),
        ("max_distance_pair", None),
        ("min_distance", "0.1"),
        ("n_exact_fallback", -1),
        ("k", K + 1),
        ("format_version", 1),
        ("n_words", 299),
    ],
)
def test_forged_metadata_fields(vectors, reference, cached, field, value):
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    meta[field] = value
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "corrupt neighbour cache")


# ----------------------------------------------------------------------------- forged table


def test_swapped_neighbour_ids(vectors, reference, cached, no_sampling):
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    ids[17, [2, 5]] = ids[17, [5, 2]]
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "differs from its pair's exact distance")


def test_swapped_neighbours_with_their_distances(vectors, reference, cached, no_sampling):
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    ids[17, [2, 5]] = ids[17, [5, 2]]
    distances[17, [2, 5]] = distances[17, [5, 2]]
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "not non-decreasing")


def test_replaced_row_consistent_in_itself(vectors, reference, cached, no_sampling):
    """Row 40 replaced by farther words with their exact distances, sorted: the symmetry check
    finds a true neighbour whose own row lists word 40 but which row 40 now omits."""
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    order = np.argsort([exact_distance(vectors, 40, w) for w in range(len(vectors))])
    order = [int(w) for w in order if w != 40]
    ids[40] = [40, *order[K : 2 * K - 1]]
    distances[40] = [np.float32(exact_distance(vectors, 40, w)) for w in ids[40]]
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "missing from its neighbour's row")


def test_shifted_distances(vectors, reference, cached, no_sampling):
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    distances[:, 1:] *= np.float32(1.01)
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "differs from its pair's exact distance")


def test_a_row_forged_consistently_is_caught_by_the_sample(vectors, reference, cached):
    """Rows 5 and its nearest neighbour drop each other, symmetric and exact: only the exact
    recomputation of sampled rows can see it (here the sample covers all 300 rows)."""
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    a = 5
    b = int(ids[a, 1])
    if sorted([a, b]) == sorted(meta["min_distance_pair"]):
        pytest.skip("that is the closest pair, caught by the closest-pair certificate")
    for row, gone in ((a, b), (b, a)):
        order = np.argsort([exact_distance(vectors, row, w) for w in range(len(vectors))])
        new_ids = [row, *[int(w) for w in order if w not in (row, gone)][: K - 1]]
        ids[row] = new_ids
        distances[row] = [np.float32(exact_distance(vectors, row, w)) for w in new_ids]
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "sampled row differs")


@pytest.mark.parametrize("bad", [-1, -(2**31), 300, 2**31 - 1])
def test_out_of_range_ids_never_reach_a_kernel(vectors, reference, cached, no_sampling, bad):
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    ids[123, 4] = bad
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "out of range")


def test_a_full_table_with_out_of_range_ids_cannot_be_built():
    ids = np.array([[0, 1], [1, 2]], dtype=np.int32)
    with pytest.raises(ValueError, match="must lie in"):
        nb.NeighborTable(ids=ids, distances=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="must start with word i"):
        nb.NeighborTable(ids=ids[::-1] % 2, distances=np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("change", ["column0", "repeat", "nan", "dtype", "shape"])
def test_malformed_rows(vectors, reference, cached, no_sampling, change):
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    if change == "column0":
        ids[8, [0, 1]] = ids[8, [1, 0]]
    elif change == "repeat":
        ids[8, 3] = ids[8, 2]
        distances[8, 3] = distances[8, 2]
    elif change == "nan":
        distances[8, 3] = np.nan
    elif change == "dtype":
        ids = ids.astype(np.int64)
    else:
        ids, distances = ids[:-1], distances[:-1]
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, cached, "corrupt neighbour cache")


# ----------------------------------------------------------------------------- odd files


def test_file_of_another_space_renamed(vectors, reference, fresh_cache):
    other = vectors + np.float32(0.25)
    new_space(other).neighbors(K)
    (path,) = fresh_cache.glob("*.npz")
    path.rename(fresh_cache / f"neighbors-{new_space(vectors).fingerprint[:24]}-k{K}.npz")
    assert_rebuilt(vectors, reference, fresh_cache, "fingerprint does not match")


def test_file_of_another_space_with_its_metadata_rewritten(vectors, reference, fresh_cache):
    """Same size, fingerprint field forged too: the distances do not fit these vectors."""
    other = vectors[::-1].copy()
    new_space(other).neighbors(K)
    (path,) = fresh_cache.glob("*.npz")
    meta, ids, distances = read_file(path)
    meta["fingerprint"] = new_space(vectors).fingerprint
    path.unlink()
    path = fresh_cache / f"neighbors-{meta['fingerprint'][:24]}-k{K}.npz"
    write_file(path, meta, ids, distances)
    assert_rebuilt(vectors, reference, fresh_cache, "corrupt neighbour cache")


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_file(vectors, reference, cached, keep):
    path = cache_file(cached)
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    assert_rebuilt(vectors, reference, cached, "corrupt neighbour cache")


def test_oversized_member_is_not_read(vectors, reference, cached):
    path = cache_file(cached)
    meta, _ids, distances = read_file(path)
    write_file(path, meta, np.zeros((300, 4000), np.int32), distances)
    assert_rebuilt(vectors, reference, cached, "more than a table|larger than a table")


def test_directory_where_the_file_should_be(vectors, reference, fresh_cache):
    fresh_cache.mkdir(mode=0o700)
    blocker = fresh_cache / f"neighbors-{new_space(vectors).fingerprint[:24]}-k{K}.npz"
    blocker.mkdir()
    (blocker / "keep").write_text("user data")
    with pytest.warns(dd.CacheWarning) as caught:
        table = new_space(vectors).neighbors(K)
    messages = " ".join(str(w.message) for w in caught)
    assert "not a regular file" in messages and "could not save" in messages
    np.testing.assert_array_equal(table.ids, reference.ids)
    assert table.max_distance == reference.max_distance
    assert (blocker / "keep").read_text() == "user data"  # nothing of the user's is deleted


def test_fifo_where_the_file_should_be_does_not_hang(vectors, reference, fresh_cache):
    fresh_cache.mkdir(mode=0o700)
    os.mkfifo(fresh_cache / f"neighbors-{new_space(vectors).fingerprint[:24]}-k{K}.npz")
    assert_rebuilt(vectors, reference, fresh_cache, "not a regular file")


def test_symlink_planted_in_the_cache_folder(vectors, reference, fresh_cache, tmp_path):
    """A link to a file elsewhere: not read, not written through; it is replaced by a file."""
    fresh_cache.mkdir(mode=0o700)
    target = tmp_path / "precious.txt"
    target.write_text("not yours")
    link = fresh_cache / f"neighbors-{new_space(vectors).fingerprint[:24]}-k{K}.npz"
    link.symlink_to(target)
    assert_rebuilt(vectors, reference, fresh_cache, "not a regular file")
    assert target.read_text() == "not yours"
    assert not link.is_symlink() and link.is_file()


def test_symlink_to_a_valid_table_is_not_followed(vectors, reference, cached, tmp_path):
    path = cache_file(cached)
    moved = tmp_path / "elsewhere.npz"
    path.rename(moved)
    path.symlink_to(moved)
    assert_rebuilt(vectors, reference, cached, "not a regular file")


# ----------------------------------------------------------------------------- odd folders


def test_group_writable_folder_is_refused(vectors, reference, fresh_cache):
    fresh_cache.mkdir()
    fresh_cache.chmod(0o770)
    with pytest.warns(dd.CacheWarning, match="writable by group or others"):
        table = new_space(vectors).neighbors(K)
    np.testing.assert_array_equal(table.ids, reference.ids)
    assert list(fresh_cache.iterdir()) == []  # nothing written


def test_valid_file_in_a_world_writable_folder_is_not_read(vectors, reference, cached):
    cached.chmod(0o777)
    with pytest.warns(dd.CacheWarning, match="writable by group or others"):
        assert new_space(vectors).min_distance() == reference.min_distance


def test_folder_owned_by_another_user_is_refused(vectors, reference, cached):
    """Emulated by chown (the tests run as root); skipped where chown is not permitted."""
    try:
        os.chown(cached, 12345, 12345)
    except PermissionError:
        pytest.skip("chown needs root")
    with pytest.warns(dd.CacheWarning, match="owned by another user"):
        table = new_space(vectors).neighbors(K)
    np.testing.assert_array_equal(table.ids, reference.ids)


def test_file_owned_by_another_user_is_refused(vectors, reference, cached):
    try:
        os.chown(cache_file(cached), 12345, 12345)
    except PermissionError:
        pytest.skip("chown needs root")
    assert_rebuilt(vectors, reference, cached, "owned by another user")


def test_cache_folder_under_a_regular_file(vectors, reference, tmp_path, monkeypatch):
    """Unwritable folder, emulated honestly as root: mkdir raises NotADirectoryError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DENSITYDP_CACHE", str(blocker / "cache"))
    with pytest.warns(dd.CacheWarning, match="cache is not used"):
        table = new_space(vectors).neighbors(K)
    np.testing.assert_array_equal(table.ids, reference.ids)
    with pytest.warns(dd.CacheWarning, match="cache is not used"):
        assert new_space(vectors).max_distance() == reference.max_distance


def test_cache_folder_is_a_regular_file(vectors, reference, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DENSITYDP_CACHE", str(blocker))
    with pytest.warns(dd.CacheWarning, match="cache is not used"):
        table = new_space(vectors).neighbors(K)
    np.testing.assert_array_equal(table.ids, reference.ids)
    assert blocker.read_text() == "x"


def test_failing_save_warns_and_returns_the_table(vectors, reference, fresh_cache, monkeypatch):
    """A read-only folder, emulated by monkeypatching mkstemp (root could write anyway)."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(nb.tempfile, "mkstemp", refuse)
    with pytest.warns(dd.CacheWarning, match="could not save"):
        table = new_space(vectors).neighbors(K)
    np.testing.assert_array_equal(table.ids, reference.ids)
    assert list(fresh_cache.glob("*")) == []


def test_failing_write_leaves_no_partial_file(vectors, reference, fresh_cache, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nb.np, "savez", disk_full)
    with pytest.warns(dd.CacheWarning, match="could not save"):
        table = new_space(vectors).neighbors(K)
    np.testing.assert_array_equal(table.ids, reference.ids)
    assert list(fresh_cache.glob("*")) == []


# ----------------------------------------------------------------------------- harmless outputs


def test_mechanism_outputs_equal_the_uncached_ones(vectors, cached, no_sampling):
    """After a forged diameter is detected, the Gumbel is calibrated exactly as without cache."""
    path = cache_file(cached)
    meta, ids, distances = read_file(path)
    meta["max_distance"] *= 0.5
    write_file(path, meta, ids, distances)
    words = np.arange(0, 300, 7)
    clean = new_space(vectors)
    clean.neighbors(K, cache=False)
    expected = dd.TruncatedGumbel(clean, epsilon=500.0).sample(words, rng=4)
    with pytest.warns(dd.CacheWarning):
        forged = dd.TruncatedGumbel(new_space(vectors), epsilon=500.0)
    assert forged.scale == dd.TruncatedGumbel(clean, epsilon=500.0).scale
    np.testing.assert_array_equal(forged.sample(words, rng=4), expected)


def test_a_failed_save_names_the_cache_file_not_the_temporary(
    vectors, reference, fresh_cache, monkeypatch
):
    """The warning said "No space left on device: '.../x.npz...tmp'" (Issue 12 review)."""
    real_savez = nb.np.savez

    def disk_full(stream, **arrays):
        real_savez(stream, **arrays)
        raise OSError(28, "No space left on device", stream.name)

    monkeypatch.setattr(nb.np, "savez", disk_full)
    with pytest.warns(dd.CacheWarning) as caught:
        new_space(vectors).neighbors(K)
    message = str(caught[0].message)
    assert "No space left on device" in message and ".tmp" not in message
    assert f"could not save the neighbour cache {fresh_cache}" in message
    assert list(fresh_cache.glob("*")) == []


def test_the_cache_folder_and_its_missing_parents_are_created_private(
    vectors, tmp_path, monkeypatch
):
    """DENSITYDP_CACHE=/a/new/b created /a/new with mode 0755 (Issue 12 review)."""
    folder = tmp_path / "a" / "new" / "b"
    monkeypatch.setenv("DENSITYDP_CACHE", str(folder))
    new_space(vectors).neighbors(K)
    for created in (tmp_path / "a", tmp_path / "a" / "new", folder):
        assert stat.S_IMODE(created.stat().st_mode) == 0o700, created
    assert any(folder.iterdir())
