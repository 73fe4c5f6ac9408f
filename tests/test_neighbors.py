from __future__ import annotations

import numba
import numpy as np
import pytest

import densitydp as dd
from densitydp import _kernels
from densitydp import neighbors as nb
from reference import neighbors as ref


@pytest.mark.parametrize(
    ("n_words", "dim", "k"), [(2, 3, 2), (50, 4, 50), (600, 8, 16), (777, 3, 40)]
)
def test_table_matches_brute_force(n_words, dim, k):
    space = dd.synthetic_space(n_words=n_words, dim=dim, n_clusters=min(3, n_words), rng=n_words)
    table = space.neighbors(k, cache=False)
    ids, distances, min_distance, max_distance = ref.table(space.vectors, k)
    assert table.ids.dtype == np.int32 and table.distances.dtype == np.float32
    assert table.ids.shape == (n_words, k)
    np.testing.assert_array_equal(table.ids, ids)
    np.testing.assert_allclose(table.distances, distances, rtol=1e-6)
    assert table.min_distance == pytest.approx(min_distance, rel=1e-12)
    assert table.max_distance == pytest.approx(max_distance, rel=1e-12)
    assert (table.ids[:, 0] == np.arange(n_words)).all()


def test_distances_are_euclidean_not_squared():
    space = dd.EmbeddingSpace(["o", "x", "far"], [[0, 0], [3, 4], [30, 40]])
    table = space.neighbors(3, cache=False)
    np.testing.assert_array_equal(table.distances[0], [0.0, 5.0, 50.0])
    assert space.min_distance() == 5.0
    assert space.max_distance() == 50.0


def test_ties_broken_by_id_and_duplicates_keep_self_first():
    # a lattice has exact ties; rows 0 and 5 share a vector (distance 0)
    grid = np.array([[x, y] for x in range(3) for y in range(3)], dtype=float)
    vectors = np.vstack([grid, grid[:1]])
    space = dd.EmbeddingSpace([f"w{i}" for i in range(len(vectors))], vectors)
    table = space.neighbors(len(vectors), cache=False)
    ids, _, min_distance, _ = ref.table(space.vectors, len(vectors))
    np.testing.assert_array_equal(table.ids, ids)
    assert table.ids[9, 0] == 9 and table.ids[9, 1] == 0  # itself, then its duplicate
    assert min_distance == 0.0 == space.min_distance()


def test_uncertifiable_rows_fall_back_to_an_exact_scan():
    # huge norms with tiny differences: the float32 screen cannot order these rows
    generator = np.random.default_rng(0)
    base = np.full(6, 3000.0)
    vectors = base + generator.integers(0, 40, size=(300, 6)) * 0.25
    space = dd.EmbeddingSpace([f"w{i}" for i in range(300)], vectors)
    table = space.neighbors(10, cache=False)
    ids, distances, _, max_distance = ref.table(space.vectors, 10)
    assert table.n_exact_fallback > 0
    np.testing.assert_array_equal(table.ids, ids)
    np.testing.assert_allclose(table.distances, distances, rtol=1e-6)
    assert table.max_distance == pytest.approx(max_distance, rel=1e-12)


@pytest.mark.parametrize("magnitude", [1e-30, 1e-25, 1e-15, 1e-5, 1.0, 1e5, 1e15, 1e19, 1e25, 1e30])
def test_exact_and_certified_at_every_scale(magnitude):
    """The float32 screen is scaled by a power of two: vectors of norm 1e-25 underflowed (every
    product subnormal: wrong rows certified) and 1e19 overflowed; now exact against float64
    brute force, and certified without the full-scan fallback, from 1e-30 to 1e30."""
    generator = np.random.default_rng(4)
    base = generator.standard_normal((400, 7))
    vectors = (base * magnitude).astype(np.float32)
    ids, distances, min_distance, max_distance = ref.table(vectors, 6)
    table = nb.build_table(vectors, 6, progress=False)
    np.testing.assert_array_equal(table.ids, ids)
    # float32 storage of float64 distances: half an ulp (2^-24), doubled for summation order
    np.testing.assert_allclose(table.distances, distances, rtol=2.0**-23)
    assert table.n_exact_fallback == 0
    assert table.min_distance == pytest.approx(min_distance, rel=1e-12)
    assert table.max_distance == pytest.approx(max_distance, rel=1e-12)
    points = base[:60] * magnitude + generator.standard_normal((60, 7)) * magnitude * 0.4
    truth = np.argmin(ref.squared_distances(points, vectors), axis=1)
    np.testing.assert_array_equal(nb.nearest_ids(points, vectors, progress=False), truth)


def test_exact_with_a_dynamic_range_beyond_float32():
    """Tiny vectors beside large ones (products far below the float32 normal range) and points
    whose products overflow float32: still exact (uncertifiable rows are scanned in float64)."""
    generator = np.random.default_rng(5)
    vectors = generator.standard_normal((300, 5))
    vectors[:100] *= 1e-30
    vectors[100:200] *= 1e-3
    vectors = vectors.astype(np.float32)
    ids, *_ = ref.table(vectors, 5)
    np.testing.assert_array_equal(nb.build_table(vectors, 5, progress=False).ids, ids)
    points = generator.standard_normal((40, 5)) * np.logspace(-35, 45, 40)[:, None]
    # far points: their float64 distances tie (the old reference summed them in the kernel's
    # order and agreed with its wrong id 0); the reference is exact rational arithmetic
    truth = [_exact_nearest(vectors, point) for point in points]
    np.testing.assert_array_equal(nb.nearest_ids(points, vectors, progress=False), truth)


def test_results_do_not_depend_on_thread_count(small_space):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = nb.build_table(small_space.vectors, 12)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = nb.build_table(small_space.vectors, 12)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.ids, two.ids)
    np.testing.assert_array_equal(one.distances, two.distances)
    assert (one.min_distance, one.max_distance) == (two.min_distance, two.max_distance)


def test_lazy_rows_equal_full_table_rows(small_space):
    words = [5, 3, 5, 590]
    lazy = small_space.neighbors(7, word_ids=words, cache=False)
    assert lazy.word_ids.tolist() == [3, 5, 590] and lazy.min_distance is None
    full = ref.table(small_space.vectors, 7)[0]
    np.testing.assert_array_equal(lazy.rows([590, 3])[0], full[[590, 3]])
    with pytest.raises(KeyError, match="no row"):
        lazy.rows([4])


def test_lazy_store_grows_by_small_calls_and_keeps_each_row_once(small_space):
    """A loop of small calls (what a loop of perturb_text does): the kept rows grow past the
    store's first capacity (256) and stay the full table's rows, each computed once."""
    space = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    full = ref.table(space.vectors, 6)
    generator = np.random.default_rng(5)
    for _ in range(120):
        words = generator.integers(0, len(space), 4)
        table = space.neighbors(6, word_ids=words, cache=False)
        np.testing.assert_array_equal(table.ids, full[0][table.word_ids])
        np.testing.assert_allclose(table.distances, full[1][table.word_ids], rtol=1e-6)
    kept = space._lazy.word_ids
    assert 256 < len(kept) == space._lazy.size <= 480
    np.testing.assert_array_equal(space._lazy.rows(kept)[0], full[0][kept])
    with pytest.raises(KeyError, match="no row"):
        space._lazy.rows(np.setdiff1d(np.arange(len(space)), kept)[:1])


def test_one_blas_thread_is_reentrant_and_restores_the_setting():
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():  # numpy's BLAS, which the searches use
        return {
            lib["filepath"]: lib["num_threads"]
            for lib in threadpool_info()
            if lib["user_api"] == "blas" and "numpy" in lib["filepath"]
        }

    before = blas_threads()
    with nb.one_blas_thread():
        assert set(blas_threads().values()) == {1}
        with nb.one_blas_thread():
            assert set(blas_threads().values()) == {1}
        assert set(blas_threads().values()) == {1}  # the outer block still holds the limit
    assert blas_threads() == before

    def work(_):
        with nb.one_blas_thread():  # other threads leave the setting alone
            return blas_threads()

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert all(seen == before for seen in pool.map(work, range(60)))
        with nb.one_blas_thread():  # the main thread's limit holds while threads come and go
            assert all(set(seen.values()) == {1} for seen in pool.map(work, range(60)))
    assert blas_threads() == before


def test_nearest_is_exact_on_noisy_points(small_space):
    generator = np.random.default_rng(1)
    points = small_space.vectors[generator.integers(0, 600, 400)] + generator.normal(
        scale=1.0, size=(400, small_space.dim)
    )
    expected = ref.knn(points, small_space.vectors, 1)[0][:, 0]
    np.testing.assert_array_equal(small_space.nearest(points), expected)
    assert small_space.nearest(small_space.vectors[7]).tolist() == [7]


def test_nearest_rejects_bad_points(small_space):
    with pytest.raises(ValueError, match=r"`points` must have shape \(n, 8\)"):
        small_space.nearest(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="`points` must be finite"):
        small_space.nearest(np.full((2, 8), np.nan))


def test_k_is_validated(small_space):
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 600\]; got 601"):
        small_space.neighbors(601)
    with pytest.raises(TypeError, match="`k` must be an int"):
        small_space.neighbors(2.0)


def test_table_is_read_only_and_kth_distance(small_space):
    table = small_space.neighbors(5, cache=False)
    with pytest.raises(ValueError, match="read-only"):
        table.ids[0, 0] = 1
    np.testing.assert_array_equal(table.kth_distance(), table.distances[:, 4])
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 4\]"):
        table.kth_distance(5)


# ----------------------------------------------------------------------------- kernel twins


def test_update_topk_kernel_matches_twin():
    generator = np.random.default_rng(2)
    products = generator.normal(size=(40, 300)).astype(np.float32)
    sqnorms = generator.uniform(0, 5, size=300)
    capacity = 17
    heap_scores = np.full((40, capacity), np.inf)
    heap_ids = np.full((40, capacity), -1, dtype=np.int64)
    largest = np.full(40, -np.inf)
    # two tiles, as the wrapper feeds them
    _kernels.update_topk(products[:, :120], 2.0, 0, sqnorms[:120], heap_scores, heap_ids, largest)
    _kernels.update_topk(products[:, 120:], 2.0, 120, sqnorms[120:], heap_scores, heap_ids, largest)
    kept, row_max = ref.update_topk(products, 2.0, 0, sqnorms, capacity)
    np.testing.assert_array_equal(np.sort(heap_scores, axis=1), kept)
    np.testing.assert_array_equal(largest, row_max)
    scores = sqnorms[heap_ids] - 2.0 * np.take_along_axis(products, heap_ids, 1).astype(float)
    np.testing.assert_array_equal(scores, heap_scores)  # ids match their scores


def test_screen_blocked_kernel_matches_twin():
    """The blocked screen of a few queries: products bitwise the twin's sequential float32 sums,
    then the heaps of update_topk over all the words (a last block of padding included)."""
    generator = np.random.default_rng(21)
    vectors = generator.normal(size=(1_000, 13)).astype(np.float32)  # 13 -> 20 padded coords
    vectors[700] = np.float32(3e38)  # products overflow: a candidate, largest +inf
    sqnorms = nb._sqnorms(vectors)
    queries32 = generator.normal(size=(3, 13)).astype(np.float32)
    blocks = nb.screen_blocks(vectors, width=64)
    assert blocks.shape == (16, 20, 64)
    padded = np.zeros((3, 20), dtype=np.float32)
    padded[:, :13] = queries32
    capacity = 11
    heap_scores = np.full((3, capacity), np.inf)
    heap_ids = np.full((3, capacity), -1, dtype=np.int64)
    largest = np.full(3, -np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        _kernels.screen_blocked(padded, blocks, 1_000, 2.0, sqnorms, heap_scores, heap_ids, largest)
        products = ref.blocked_products(queries32, vectors)
        kept, row_max = ref.update_topk(products, 2.0, 0, sqnorms, capacity)
    np.testing.assert_array_equal(np.sort(heap_scores, axis=1), kept)
    np.testing.assert_array_equal(largest, row_max)
    assert np.all(largest == np.inf) and np.all(np.isin(700, heap_ids))


def test_lazy_rows_of_a_few_words_use_the_blocked_screen_and_equal_the_table(small_space):
    space = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    full = ref.table(space.vectors, 9)[0]
    table = space.neighbors(9, word_ids=[3, 77, 512], cache=False)  # < 16 words: blocked
    assert "_screen_blocks" in space.__dict__
    np.testing.assert_array_equal(table.ids, full[[3, 77, 512]])


def test_refine_and_exact_rows_kernels_match_twin():
    generator = np.random.default_rng(3)
    vectors = generator.normal(size=(200, 5)).astype(np.float32)
    queries = generator.normal(size=(30, 5))
    candidates = np.stack([generator.permutation(200)[:25] for _ in range(30)]).astype(np.int64)
    self_ids = np.where(np.arange(30) % 2 == 0, candidates[:, 3], -1)
    ids, sq = np.empty((30, 9), np.int64), np.empty((30, 9))
    _kernels.refine_rows(
        queries,
        (queries**2).sum(1),
        vectors,
        np.zeros((30, 25)),
        candidates,
        self_ids,
        np.zeros(30),
        9,
        ids,
        sq,
        np.empty(30, np.bool_),
    )
    expected_ids, expected_sq = ref.refine_rows(queries, vectors, candidates, self_ids, 9)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(sq, expected_sq, rtol=1e-12)

    out_max = np.empty(30)
    _kernels.exact_rows(queries, vectors, self_ids, 9, ids, sq, out_max)
    expected_ids, expected_d, expected_max = ref.knn(queries, vectors, 9, self_ids)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(np.sqrt(sq), expected_d, rtol=1e-12)
    np.testing.assert_allclose(out_max, expected_max, rtol=1e-12)


# ----------------------------------------------------------------------------- cache


def test_cache_roundtrip_and_wider_tables_are_sliced(small_space, fresh_cache):
    first = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    wide = first.neighbors(20)
    files = list(fresh_cache.glob("neighbors-*-k20.npz"))
    assert len(files) == 1
    second = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    narrow = second.neighbors(6)  # sliced from the cached k=20 table
    assert list(fresh_cache.glob("*.npz")) == files
    np.testing.assert_array_equal(narrow.ids, wide.ids[:, :6])
    third = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    assert third.min_distance() == wide.min_distance  # read from the cache metadata
    assert third._table is None


def test_corrupt_cache_is_detected_and_rebuilt(small_space, fresh_cache):
    dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors).neighbors(8)
    (path,) = fresh_cache.glob("*.npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside the arrays
    path.write_bytes(bytes(data))
    space = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    with pytest.warns(dd.CacheWarning, match="corrupt neighbour cache"):
        table = space.neighbors(8)
    np.testing.assert_array_equal(table.ids, ref.table(small_space.vectors, 8)[0])
    assert len(list(fresh_cache.glob("*.npz"))) == 1  # rebuilt
    path.write_bytes(b"not a zip file")
    with pytest.warns(dd.CacheWarning):
        dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors).neighbors(8)


def test_cache_is_keyed_by_the_vectors(small_space, fresh_cache):
    space = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    space.neighbors(4)
    moved = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors + 1e-3)
    moved.neighbors(4)
    assert len(list(fresh_cache.glob("*.npz"))) == 2
    assert space.fingerprint != moved.fingerprint


@pytest.mark.glove
@pytest.mark.slow
def test_glove_top_20000_table_matches_numpy_reference(glove_top):
    table = glove_top.neighbors(64, cache=False, progress=False)
    ids, distances = ref.blocked_table(glove_top.vectors, 64)
    np.testing.assert_array_equal(table.ids, ids)
    np.testing.assert_allclose(table.distances, distances, rtol=1e-6)
    assert table.min_distance == pytest.approx(float(distances[:, 1].min()), rel=1e-12)


def test_narrow_is_the_exact_narrower_table(small_space):
    wide = small_space.neighbors(30, cache=False)
    narrow = wide.narrow(9)
    np.testing.assert_array_equal(narrow.ids, ref.table(small_space.vectors, 9)[0])
    assert narrow.min_distance == wide.min_distance and wide.narrow(30) is wide
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 30\]; got 31"):
        wide.narrow(31)


def test_lazy_rows_are_kept_and_widened(small_space):
    space = dd.EmbeddingSpace(small_space.vocabulary, small_space.vectors)
    full = ref.table(space.vectors, 12)[0]
    first = space.neighbors(5, word_ids=[4, 9], cache=False)
    assert space._lazy.word_ids.tolist() == [4, 9]
    more = space.neighbors(5, word_ids=[9, 1], cache=False)  # only word 1 is computed
    assert space._lazy.word_ids.tolist() == [1, 4, 9]
    wider = space.neighbors(12, word_ids=[4], cache=False)  # widens every kept row
    assert space._lazy.width == 12 and space._lazy.word_ids.tolist() == [1, 4, 9]
    np.testing.assert_array_equal(first.ids, full[[4, 9], :5])
    np.testing.assert_array_equal(more.ids, full[[1, 9], :5])
    np.testing.assert_array_equal(wider.ids, full[[4]])
    with pytest.raises(ValueError, match="only partial tables"):
        wider.merge(space.neighbors(12, cache=False))


# ---- Issue 12 (review): nearest() for points far outside the space -------------------------


def _exact_nearest(vectors, query):
    """Reference: the exact squared distances in rational arithmetic, ties by smallest id."""
    from fractions import Fraction

    point = [Fraction(float(value)) for value in query]
    distances = [
        sum((Fraction(float(a)) - b) ** 2 for a, b in zip(row, point, strict=True))
        for row in vectors
    ]
    return distances.index(min(distances))


@pytest.mark.parametrize(
    "magnitude", [1e6, 1e10, 1e15, 1e19, 1e25, 1e50, 1e100, 1e154, 1e155, 1e200, 1e300, 1.7e308]
)
def test_nearest_is_exact_far_outside_the_space(magnitude):
    """sp.nearest([[1e19, 0, 0, 0]]) gave id 0 (every float64 distance tied at 1e38; beyond
    1.3e154 they overflowed); the exact answer is 239 (found by a review)."""
    space = dd.synthetic_space(n_words=300, dim=4, n_clusters=3, rng=0)
    rng = np.random.default_rng(int(np.log10(magnitude)))
    directions = rng.normal(size=(12, 4))
    directions /= np.abs(directions).max(axis=1, keepdims=True)
    points = np.vstack([directions * magnitude, magnitude * np.eye(4), -magnitude * np.eye(4)])
    expected = [_exact_nearest(space.vectors, point) for point in points]
    np.testing.assert_array_equal(space.nearest(points), expected)


def test_nearest_far_away_breaks_near_ties_exactly():
    """Far along an axis, words with the same coordinate there differ only by their norm, a
    term 1e-30 of the score: compared exactly, the smaller norm wins; duplicates: smallest id."""
    vectors = np.array(
        [[1.0, 0.5, 0.0], [2.0, 0.5, 0.0], [2.0, 0.25, 0.0], [2.0, 0.25, 0.0], [-3.0, 0, 0]],
        dtype=np.float32,
    )
    space = dd.EmbeddingSpace([f"w{i}" for i in range(5)], vectors)
    for magnitude in (1e10, 1e30, 1e300):
        assert space.nearest(np.array([magnitude, 0.0, 0.0])).tolist() == [2]
        assert space.nearest(np.array([-magnitude, 0.0, 0.0])).tolist() == [4]
    assert space.nearest(np.array([1e30, 1e14, 0.0])).tolist() == [1]  # the 2nd axis decides
    points = np.array([[1e30, 0.0, 0.0], [2.0, 0.25, 0.0], [1e20, -1e20, 0.0]])
    expected = [_exact_nearest(vectors, point) for point in points]
    np.testing.assert_array_equal(space.nearest(points), expected)


def test_nearest_of_tiny_spaces_and_far_points():
    """Vectors of norm 1e-25 and points from 1e-20 to 1e300: exact at every scale."""
    base = dd.synthetic_space(n_words=80, dim=3, n_clusters=2, rng=1)
    vectors = (base.vectors.astype(np.float64) * 1e-25).astype(np.float32)
    space = dd.EmbeddingSpace(list(base.vocabulary), vectors)
    rng = np.random.default_rng(3)
    for magnitude in (1e-26, 1e-20, 1e-10, 1.0, 1e30, 1e300):
        points = rng.normal(size=(6, 3)) * magnitude
        expected = [_exact_nearest(vectors, point) for point in points]
        np.testing.assert_array_equal(space.nearest(points), expected)
