"""The exact PCA cascade of Laplace decoding (densitydp.mechanisms._cascade) against its numpy
twin (tests/reference/cascade.py) and the exact search of EmbeddingSpace.nearest."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import densitydp as dd
from densitydp.mechanisms import _cascade
from reference import cascade as reference


def _noisy_points(space, scale, n, rng):
    generator = np.random.default_rng(rng)
    sources = generator.integers(0, len(space), size=n)
    noise = generator.standard_normal((n, space.dim)) * scale
    return space.vectors[sources].astype(np.float64) + noise, sources


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=1_500, dim=40, n_clusters=8, rng=11)


@pytest.mark.parametrize("noise", [0.05, 0.5, 3.0])
def test_kernel_matches_numpy_twin(space, noise):
    cascade = _cascade.build(space.vectors)
    points, sources = _noisy_points(space, noise, 300, rng=1)
    queries, slack, usable = _cascade.prepare(cascade, points)
    assert usable.all()
    no_seeds = np.zeros((len(points), 0), dtype=np.int64)
    best, status = _cascade.search(cascade, queries, slack, no_seeds)
    twin_best, twin_status = reference.search(
        queries, slack, reference.words_of(cascade), cascade.relative
    )
    np.testing.assert_array_equal(best, twin_best)
    np.testing.assert_array_equal(status, twin_status)
    # seeds change the work, never the result
    seeded = _cascade.search(cascade, queries, slack, cascade.units[sources][:, None])
    np.testing.assert_array_equal(seeded[0], best)
    np.testing.assert_array_equal(seeded[1], status)


def test_grouping_of_queries_into_tasks_changes_nothing(space):
    """Tasks of 1, 5 or QUERY_BLOCK queries (task_size picks by call size and thread count):
    each query keeps its own bound, so the outputs are the same."""
    cascade = _cascade.build(space.vectors)
    points, sources = _noisy_points(space, 0.5, 203, rng=4)
    queries, slack, _ = _cascade.prepare(cascade, points)
    seeds = cascade.units[sources][:, None]
    outputs = []
    for size in (1, 5, _cascade.QUERY_BLOCK):
        best = np.full(len(points), -9, dtype=np.int64)
        status = np.full(len(points), -9, dtype=np.int64)
        _cascade._search(
            queries,
            slack,
            cascade.blocks,
            cascade.boxes,
            len(cascade.representatives),
            seeds,
            cascade.relative,
            size,
            best,
            status,
        )
        outputs.append((best, status))
    for best, status in outputs[1:]:
        np.testing.assert_array_equal(best, outputs[0][0])
        np.testing.assert_array_equal(status, outputs[0][1])


@pytest.mark.parametrize(
    ("threads", "sizes"), [(1, [1, 16, 9, 16, 16]), (2, [1, 8, 9, 16, 16]), (4, [1, 4, 5, 16, 16])]
)
def test_task_size_gives_every_thread_work(monkeypatch, threads, sizes):
    monkeypatch.setattr(_cascade.numba, "get_num_threads", lambda: threads)
    assert [_cascade.task_size(n) for n in (1, 16, 17, 64, 1000)] == sizes


def test_axis_tree_order_is_a_permutation_in_leaves():
    points = np.random.default_rng(3).normal(size=(1_000, 6)) * [9.0, 3.0, 1.0, 1.0, 0.5, 0.1]
    order = _cascade.axis_tree_order(points, 64)
    np.testing.assert_array_equal(np.sort(order), np.arange(1_000))
    leaves = [points[order[i : i + 64]] for i in range(0, 1_000, 64)]
    # nearby points: each leaf spans far less of the first axis than the whole set
    spans = [np.ptp(leaf[:, 0]) for leaf in leaves]
    assert np.median(spans) < 0.25 * np.ptp(points[:, 0])


@pytest.mark.parametrize("scale", [1.0, 1e-30, 1e30])
def test_block_boxes_bound_every_first_stage_sum(scale):
    """The skip test of a block's box never exceeds the float32 first-stage sum of any of its
    words (summed as the kernel sums it), so a skipped block is one the first stage would have
    dropped whole."""
    space = dd.synthetic_space(n_words=3_000, dim=24, n_clusters=10, rng=8)
    cascade = _cascade.build(np.asarray(space.vectors, dtype=np.float64).astype(np.float32) * scale)
    points, _ = _noisy_points(space, 0.8, 60, rng=9)
    queries, _, _ = _cascade.prepare(cascade, points * scale)
    query32 = queries.astype(np.float32)[:, : _cascade.STEP]
    words = reference.words_of(cascade)[:, : _cascade.STEP]
    n_units = len(words)
    for b in range(cascade.blocks.shape[0]):
        units = np.arange(b * _cascade.BLOCK, min((b + 1) * _cascade.BLOCK, n_units))
        low, high = cascade.boxes[b]
        np.testing.assert_array_equal(low, words[units].min(axis=0))
        np.testing.assert_array_equal(high, words[units].max(axis=0))
        for q in query32:
            gap_sum = np.float32(0.0)
            first = np.zeros(len(units), dtype=np.float32)
            for t in range(_cascade.STEP):
                gap = max(low[t] - q[t], q[t] - high[t], np.float32(0.0))
                gap_sum += gap * gap
                diff = q[t] - words[units, t]
                first += diff * diff
            skip_value = gap_sum * _cascade._BOX_SHRINK - _cascade._BOX_FLOOR
            assert skip_value <= first.min()


@pytest.mark.parametrize("dim", [1, 3, 12, 40, 64])
def test_decided_ids_are_the_exact_nearest(dim):
    space = dd.synthetic_space(n_words=900, dim=dim, n_clusters=6, rng=dim)
    cascade = _cascade.build(space.vectors)
    points, sources = _noisy_points(space, 1.0, 400, rng=2)
    ids, decided = _cascade.nearest(cascade, points, sources[:, None])
    assert decided.mean() > 0.95
    np.testing.assert_array_equal(ids[decided], space.nearest(points[decided]))


@pytest.mark.parametrize("scale", [1e-30, 1e-10, 1.0, 1e10, 1e30])
def test_laplace_decoding_is_exact_at_every_scale(space, scale):
    scaled = dd.EmbeddingSpace(space.vocabulary, space.vectors.astype(np.float64) * scale)
    for epsilon in (2.0 / scale, 20.0 / scale):
        mechanism = dd.MultivariateLaplace(scaled, epsilon, table_k=8)
        word_ids = np.arange(0, len(scaled), 3)
        noise = mechanism.noise(len(word_ids), rng=5)
        points = scaled.vectors[word_ids].astype(np.float64) + noise
        out = mechanism.decode(word_ids, points, np.linalg.norm(noise, axis=1))
        np.testing.assert_array_equal(out, scaled.nearest(points))
        assert mechanism._cascade() is not None


def test_ties_and_duplicates_go_to_the_smallest_id():
    """A lattice with repeated points: midpoints tie exactly; duplicates tie everywhere."""
    grid = np.array(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij")).reshape(3, -1).T
    generator = np.random.default_rng(7)
    vectors = np.concatenate([grid, grid[generator.permutation(len(grid))[:20]]])
    vectors = vectors[generator.permutation(len(vectors))]
    space = dd.EmbeddingSpace([f"w{i}" for i in range(len(vectors))], vectors)
    cascade = _cascade.build(space.vectors)
    assert len(cascade.representatives) == len(grid)
    steps = np.eye(3)[generator.integers(0, 3, size=300)]
    corners = generator.integers(0, 3, size=(300, 3)).astype(np.float64)
    midpoints = corners + steps / 2.0  # equidistant from two adjacent lattice points
    near = vectors[generator.integers(0, len(vectors), size=200)] + generator.uniform(
        -0.3, 0.3, size=(200, 3)
    )
    points = np.concatenate([midpoints, near, vectors])
    ids, decided = _cascade.nearest(cascade, points)
    exact = space.nearest(points)
    np.testing.assert_array_equal(ids[decided], exact[decided])
    assert not decided[: len(midpoints)].any()  # exact ties: left to the exact search
    assert decided[len(midpoints) :].mean() > 0.9
    mechanism = dd.MultivariateLaplace(space, 5.0, table_k=4)
    word_ids = np.zeros(len(points), dtype=np.int64)
    out = mechanism.decode(word_ids, points, np.full(len(points), 100.0))
    np.testing.assert_array_equal(out, exact)


def test_far_points_and_tiny_spaces():
    space = dd.EmbeddingSpace(["a", "b"], [[0.0, 0.0], [1.0, 0.0]])
    cascade = _cascade.build(space.vectors)
    points = np.array([[1e19, 0.0], [-1e300, 3.0], [0.2, 0.0], [0.5, 7.0]])
    ids, decided = _cascade.nearest(cascade, points)
    assert decided.tolist() == [False, False, True, False]
    assert ids[2] == 0
    assert _cascade.build(np.ones((5, 3), dtype=np.float32)) is None
    mechanism = dd.MultivariateLaplace(space, 1.0, table_k=1)  # rows decide nothing
    out = mechanism.decode(np.zeros(4, dtype=np.int64), points, np.full(4, 1e30))
    np.testing.assert_array_equal(out, space.nearest(points))


def test_results_do_not_depend_on_the_thread_count(space):
    cascade = _cascade.build(space.vectors)
    points, sources = _noisy_points(space, 1.5, 700, rng=3)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _cascade.nearest(cascade, points, sources[:, None])
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _cascade.nearest(cascade, points, sources[:, None])
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.glove
def test_glove_slice_matches_the_exact_search(glove_top):
    space = glove_top.top(5_000)
    for epsilon in (10.0, 20.0):
        mechanism = dd.MultivariateLaplace(space, epsilon)
        word_ids = np.random.default_rng(4).integers(0, 2_000, size=600)
        noise = mechanism.noise(len(word_ids), rng=6)
        points = space.vectors[word_ids].astype(np.float64) + noise
        out = mechanism.decode(word_ids, points, np.linalg.norm(noise, axis=1))
        np.testing.assert_array_equal(out, space.nearest(points))
        ids, decided = _cascade.nearest(mechanism._cascade(), points)
        assert decided.mean() > 0.99
        np.testing.assert_array_equal(ids[decided], out[decided])


def test_pickled_mechanism_leaves_the_cascade_behind(space):
    import pickle

    mechanism = dd.MultivariateLaplace(space, 1.0, table_k=4)
    first = mechanism.sample(np.arange(50), rng=3)
    assert mechanism._cascade() is not None
    shipped = pickle.dumps(mechanism)
    assert len(shipped) < len(pickle.dumps(space)) + 10_000  # the cascade's words stay behind
    copy = pickle.loads(shipped)
    np.testing.assert_array_equal(copy.sample(np.arange(50), rng=3), first)
    # mechanisms on one space share its cascade
    assert dd.MultivariateLaplace(space, 7.0)._cascade() is mechanism._cascade()
    assert copy._cascade() is not mechanism._cascade()  # the copy has its own space
