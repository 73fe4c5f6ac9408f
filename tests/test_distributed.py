"""densitydp.distributed on a real ``distributed.LocalCluster`` of 2 worker processes.

What must hold: every job gives byte for byte what the single-process run gives for the same
seed (partition / file ``p`` seeded by the ``p``-th spawned child), the mechanism reaches each
worker once, a worker killed mid-file leaves no partial output and the job still completes
with the same bytes, and bad input is refused naming the argument.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

import densitydp as dd

dask = pytest.importorskip("dask")

distributed = pytest.importorskip("distributed")
dask_frames = pytest.importorskip("dask.dataframe")

from densitydp import distributed as ddist  # noqa: E402
from densitydp.distributed import PartitionSeeds  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


@pytest.fixture(scope="module")
def space():
    return dd.synthetic_space(n_words=800, dim=8, n_clusters=6, rng=11)


@pytest.fixture(scope="module")
def documents(space):
    rng = np.random.default_rng(4)
    texts = []
    for i in range(230):
        words = space.words(rng.integers(0, len(space), rng.integers(1, 14)))
        texts.append(" ".join(words).capitalize() + (" Kowalski!" if i % 7 == 0 else "."))
    frame = pd.DataFrame({"text": texts, "label": np.arange(230) % 3})
    frame.loc[[5, 77, 150], "text"] = None
    return frame


def _by_hand(frame, column, mechanism, seed, sizes):
    """The single-process definition: partition p through perturb_texts with child p."""
    children = np.random.default_rng(seed).spawn(len(sizes))
    pieces, start = [], 0
    for size, child in zip(sizes, children, strict=True):
        part = frame.iloc[start : start + size].copy()
        present = part[column].notna()
        outputs = dd.perturb_texts(part.loc[present, column], mechanism, rng=child)
        part.loc[present, column] = outputs
        pieces.append(part)
        start += size
    return pd.concat(pieces)


# ----------------------------------------------------------------------------- seeds


@pytest.mark.parametrize(
    "make", [lambda: 0, lambda: 2**70, lambda: np.random.SeedSequence(9, spawn_key=(3,))]
)
def test_partition_seeds_are_the_spawned_children(make):
    seeds = PartitionSeeds.spawn(make(), 5)
    children = np.random.default_rng(make()).spawn(5)
    for p in range(5):
        np.testing.assert_array_equal(seeds.child(p).random(4), children[p].random(4))
    with pytest.raises(IndexError):
        seeds.child(5)


def test_partition_seeds_advance_a_generator_as_spawn_does():
    given, twin = np.random.default_rng(3), np.random.default_rng(3)
    given.spawn(2)
    twin.spawn(2)
    first = PartitionSeeds.spawn(given, 4)
    expected = twin.spawn(4)
    np.testing.assert_array_equal(first.child(3).random(3), expected[3].random(3))
    np.testing.assert_array_equal(given.spawn(1)[0].random(2), twin.spawn(1)[0].random(2))
    philox = np.random.Generator(np.random.Philox(np.random.SeedSequence(5)))
    twin = np.random.Generator(np.random.Philox(np.random.SeedSequence(5)))
    np.testing.assert_array_equal(
        PartitionSeeds.spawn(philox, 2).child(1).random(3), twin.spawn(2)[1].random(3)
    )


# ----------------------------------------------------------------------------- data frames


def test_pandas_frame_here_is_the_definition(space, documents):
    mechanism = dd.ExponentialMechanism(space, 8.0)
    before = documents.copy()
    out = ddist.perturb_dataframe(documents, "text", mechanism, rng=7, partition_rows=60)
    pd.testing.assert_frame_equal(documents, before)  # the input is not modified
    pd.testing.assert_frame_equal(out, _by_hand(documents, "text", mechanism, 7, [60, 60, 60, 50]))
    assert out["text"].isna().sum() == 3
    assert out.attrs["densitydp"] == {
        "mechanism": repr(mechanism),
        "column": "text",
        "n_partitions": 4,
        "policy": {},
    }  # never the seed: attrs are written into files


def test_the_seed_never_reaches_a_written_file(space, documents, tmp_path):
    pytest.importorskip("pyarrow")
    mechanism = dd.ExponentialMechanism(space, 8.0)
    seed = 987_654_321
    out = ddist.perturb_dataframe(documents, "text", mechanism, rng=seed)
    out.to_parquet(tmp_path / "private.parquet")
    assert str(seed).encode() not in (tmp_path / "private.parquet").read_bytes()
    lazy = dask_frames.from_pandas(documents, npartitions=3, sort=False)
    with _no_client():
        computed = ddist.perturb_dataframe(lazy, "text", mechanism, rng=seed).compute()
    computed.to_parquet(tmp_path / "lazy.parquet")  # (dask's own to_parquet warns on pandas 3.1)
    assert str(seed).encode() not in (tmp_path / "lazy.parquet").read_bytes()
    assert out["text"].dtype == documents["text"].dtype
    assert (out["text"] != documents["text"]).sum() > 50  # it did perturb


def test_pandas_frame_on_the_cluster_is_identical(client, space, documents):
    mechanism = dd.TruncatedExponential(space, 6.0)
    here, report_here = ddist.perturb_dataframe(
        documents, "text", mechanism, rng=3, partition_rows=40, return_report=True
    )
    there, report = ddist.perturb_dataframe(
        documents, "text", mechanism, rng=3, partition_rows=40, client=client,
        return_report=True, progress=False,
    )  # fmt: skip
    pd.testing.assert_frame_equal(there, here)
    assert report.to_dict() == report_here.to_dict()
    assert report.n_texts == 227 and report.seed == {"entropy": 3, "spawn_key": []}
    # the merged report's worst text is a row position of the frame
    worst = report.worst_text
    claims = dd.perturb_text(documents["text"].iloc[worst], mechanism, rng=0, return_report=True)
    assert claims[1].all_words_epsilon == pytest.approx(report.all_words_epsilon)


def test_dask_frame_on_the_cluster_is_identical(client, space, documents):
    mechanism = dd.ExponentialMechanism(space, 8.0)
    lazy = dask_frames.from_pandas(documents, npartitions=4, sort=False)
    sizes = [len(lazy.partitions[p].compute()) for p in range(lazy.npartitions)]
    result = ddist.perturb_dataframe(lazy, "text", mechanism, rng=21, unknown="drop")
    assert isinstance(result, dask_frames.DataFrame)
    there = result.compute()
    with _no_client():
        here = ddist.perturb_dataframe(lazy, "text", mechanism, rng=21, unknown="drop").compute(
            scheduler="sync"
        )
    pd.testing.assert_frame_equal(there, here)
    base = lazy.compute()  # dask's dtypes (strings as pyarrow strings)
    expected = _by_hand(base, "text", mechanism, 21, sizes)
    expected_drop = _by_hand_policy(base, mechanism, 21, sizes, unknown="drop")
    assert not there.equals(expected)  # the policy was passed on
    pd.testing.assert_frame_equal(there, expected_drop)


def _by_hand_policy(frame, mechanism, seed, sizes, **policy):
    children = np.random.default_rng(seed).spawn(len(sizes))
    pieces, start = [], 0
    for size, child in zip(sizes, children, strict=True):
        part = frame.iloc[start : start + size].copy()
        present = part["text"].notna()
        part.loc[present, "text"] = dd.perturb_texts(
            part.loc[present, "text"], mechanism, rng=child, **policy
        )
        pieces.append(part)
        start += size
    return pd.concat(pieces)


class _no_client:
    """Run a block with no default client (the in-process path)."""

    def __enter__(self):
        from distributed.client import _current_client

        self._token = _current_client.set(None)
        self._default = distributed.client._global_clients.copy()
        distributed.client._global_clients.clear()

    def __exit__(self, *exc):
        from distributed.client import _current_client

        _current_client.reset(self._token)
        distributed.client._global_clients.update(self._default)


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # dask's to_parquet, pandas 3.1
def test_selected_and_fused_partitions_keep_their_seeds(client, space, tmp_path):
    """Partition p is seeded by child p of the frame as given, whatever dask selects or fuses
    afterwards. The first review's case: 8 small parquet partitions read with a column
    projection, which dask's optimiser fused into 4 for a map_partitions result."""
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(1)
    texts = [" ".join(space.words(rng.integers(0, len(space), 8))) for _ in range(80)]
    frame = pd.DataFrame({"text": texts, "a": np.arange(80), "pad": ["x" * 50] * 80})
    dask_frames.from_pandas(frame, npartitions=8).to_parquet(tmp_path / "in")
    lazy = dask_frames.read_parquet(tmp_path / "in", columns=["text", "a"])
    sizes = [len(lazy.partitions[p].compute()) for p in range(lazy.npartitions)]
    assert len(sizes) == 8
    mechanism = dd.MultivariateLaplace(space, 9.0)
    expected = _by_hand(lazy.compute(), "text", mechanism, 3, sizes)
    result = ddist.perturb_dataframe(lazy, "text", mechanism, rng=3, client=client)
    pd.testing.assert_frame_equal(result.compute(), expected)
    start = sum(sizes[:5])
    pd.testing.assert_frame_equal(
        result.partitions[5].compute(), expected.iloc[start : start + sizes[5]]
    )
    pd.testing.assert_frame_equal(result[["text"]].compute(), expected[["text"]])
    pd.testing.assert_frame_equal(result[result["a"] > 70].compute(), expected[expected["a"] > 70])


def test_column_dtypes_and_values(space):
    mechanism = dd.ExponentialMechanism(space, 3.0)
    words = space.words(np.arange(6))
    categorical = pd.DataFrame({"text": pd.Categorical([*words, None])})
    out = ddist.perturb_dataframe(categorical, "text", mechanism, rng=2)
    expected = dd.perturb_texts(list(words), mechanism, rng=np.random.default_rng(2).spawn(1)[0])
    assert out["text"].tolist()[:6] == expected and out["text"].isna().tolist()[6]
    assert out["text"].dtype == categorical["text"].cat.categories.dtype
    mixed = pd.DataFrame({"body": [*words, 3.5]}, index=list("abcdefg"))
    with pytest.raises(
        TypeError, match=r"`frame\['body'\]` must hold str values.*row 'g' holds float 3.5"
    ):
        ddist.perturb_dataframe(mixed, "body", mechanism)


def test_mechanism_reaches_each_worker_once(client, space, documents, corpus, tmp_path):

    from distributed_helpers import CountingExponential, loads

    mechanism = CountingExponential(space, 8.0)
    before = client.run(loads)
    out = ddist.perturb_dataframe(
        documents, "text", mechanism, rng=1, partition_rows=20, client=client, progress=False
    )  # 12 partitions, 12 tasks
    after = client.run(loads)
    assert sorted(after) == sorted(before)
    assert all(after[w] - before[w] == 1 for w in after), (before, after)
    assert len(out) == len(documents)
    # later jobs with the same mechanism reuse the workers' copy (and their neighbour rows)
    lazy = dask_frames.from_pandas(documents, npartitions=9, sort=False)
    ddist.perturb_dataframe(lazy, "text", mechanism, rng=1, client=client).compute()
    ddist.perturb_files(corpus / "*.txt", mechanism, tmp_path, rng=1, client=client)
    ddist.audit(mechanism, n_pairs=3, n_samples=1_000, rng=1, client=client, progress=False)
    assert client.run(loads) == after
    assert names_on_workers(client, mechanism)


def names_on_workers(client, mechanism):
    """The plugin name of ``mechanism`` if every worker holds it, else None."""
    names = [t.name for k, (_, t, _) in ddist._SHIPPED.items() if k[1] == id(mechanism)]
    if len(names) != 1:
        return None
    on_workers = client.run(_shipped_names).values()
    return names[0] if all(names[0] in found for found in on_workers) else None


def test_a_collected_mechanism_leaves_the_workers(client, corpus, space, tmp_path):
    import gc

    mechanism = dd.ExponentialMechanism(space, 6.0)
    ddist.perturb_files(corpus / "part-0.txt", mechanism, tmp_path / "a", client=client)
    name = names_on_workers(client, mechanism)
    assert name is not None
    del mechanism
    gc.collect()
    # removed at the client's next shipment
    ddist.perturb_files(corpus / "part-0.txt", dd.ExponentialMechanism(space, 2.0),
                        tmp_path / "b", client=client)  # fmt: skip
    assert not any(entry[1].name == name for entry in ddist._SHIPPED.values())
    assert not any(name in found for found in client.run(_shipped_names).values())


def _shipped_names():
    from densitydp.distributed import _ON_WORKER

    return list(_ON_WORKER)


def test_a_lazy_frame_keeps_its_mechanism_on_the_workers(client, space, documents):
    """Two lazy frames with mechanisms nobody else holds, computed after both were built:
    the second shipment must not remove the first mechanism from the workers."""
    import gc

    lazy = dask_frames.from_pandas(documents, npartitions=3, sort=False)
    first = ddist.perturb_dataframe(lazy, "text", dd.ExponentialMechanism(space, 5.0), rng=1)
    gc.collect()
    second = ddist.perturb_dataframe(lazy, "text", dd.ExponentialMechanism(space, 9.0), rng=1)
    a, b = dask.compute(first, second)
    with _no_client():
        expected = ddist.perturb_dataframe(
            lazy, "text", dd.ExponentialMechanism(space, 5.0), rng=1
        ).compute(scheduler="sync")
    pd.testing.assert_frame_equal(a, expected)
    assert not a.equals(b)


def test_dataframe_refusals(space, documents):
    mechanism = dd.ExponentialMechanism(space, 8.0)
    lazy = dask_frames.from_pandas(documents, npartitions=2, sort=False)
    with pytest.raises(KeyError, match="`column` 'body'"):
        ddist.perturb_dataframe(documents, "body", mechanism)
    with pytest.raises(TypeError, match="`frame` must be a dask or pandas DataFrame"):
        ddist.perturb_dataframe(documents["text"], "text", mechanism)
    with pytest.raises(TypeError, match="`mechanism` must be a densitydp Mechanism"):
        ddist.perturb_dataframe(documents, "text", "laplace")
    with pytest.raises(TypeError, match="unexpected option.*`unknwon`"):
        ddist.perturb_dataframe(documents, "text", mechanism, unknwon="drop")
    with pytest.raises(ValueError, match="`partition_rows` must be"):
        ddist.perturb_dataframe(documents, "text", mechanism, partition_rows=0)
    with pytest.raises(ValueError, match="`partition_rows` applies to a pandas"):
        ddist.perturb_dataframe(lazy, "text", mechanism, partition_rows=10)
    with pytest.raises(ValueError, match="`return_report` needs a pandas"):
        ddist.perturb_dataframe(lazy, "text", mechanism, return_report=True)
    numbers = documents.assign(text=np.arange(len(documents)))
    with pytest.raises(TypeError, match="str"):
        ddist.perturb_dataframe(numbers, "text", mechanism)
    with pytest.raises(ValueError, match="`unknown`"):
        ddist.perturb_dataframe(documents, "text", mechanism, unknown="leak")
    with pytest.raises(ValueError, match="`unknown`"):  # now, not when computed
        ddist.perturb_dataframe(lazy, "text", mechanism, unknown="leak")
    with pytest.raises(ValueError, match="`batch_size`"):
        ddist.perturb_dataframe(lazy, "text", mechanism, batch_size=0)


def test_empty_frame(space):
    mechanism = dd.ExponentialMechanism(space, 8.0)
    empty = pd.DataFrame({"text": pd.Series([], dtype=object)})
    pd.testing.assert_frame_equal(ddist.perturb_dataframe(empty, "text", mechanism), empty)


# ----------------------------------------------------------------------------- files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, space):
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(8)
    for i in range(5):
        lines = [" ".join(space.words(rng.integers(0, len(space), 9))) for _ in range(40 + 30 * i)]
        (folder / f"part-{i}.txt").write_text("\n".join(lines) + "\nZebulon was here.\n")
    return folder


def _expected_files(corpus, mechanism, seed, out):
    sources = sorted(corpus.glob("*.txt"))
    children = np.random.default_rng(seed).spawn(len(sources))
    out.mkdir()
    for source, child in zip(sources, children, strict=True):
        dd.perturb_file(source, out / source.name, mechanism, rng=child, progress=False)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_files_on_the_cluster_are_the_single_process_bytes(client, corpus, space, tmp_path):
    mechanism = dd.MultivariateLaplace(space, 9.0)
    expected = _expected_files(corpus, mechanism, 5, tmp_path / "by-hand")
    with distributed.get_task_stream(client) as stream:
        paths, reports = ddist.perturb_files(
            str(corpus / "part-*.txt"), mechanism, tmp_path / "out", rng=5, client=client,
            progress=False, return_report=True,
        )  # fmt: skip
    assert sum("_file_task" in str(task["key"]) for task in stream.data) == 5
    assert [p.name for p in paths] == sorted(expected)
    assert {p.name: p.read_bytes() for p in paths} == expected
    assert [r.n_texts for r in reports] == [41 + 30 * i for i in range(5)]
    assert all(r.n_masked == 3 for r in reports)  # "Zebulon was here"
    with _no_client():
        ddist.perturb_files(sorted(corpus.glob("*.txt")), mechanism, tmp_path / "here", rng=5)
    assert {p.name: p.read_bytes() for p in (tmp_path / "here").iterdir()} == expected


def test_file_refusals(corpus, space, tmp_path):
    mechanism = dd.ExponentialMechanism(space, 8.0)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        ddist.perturb_files(str(tmp_path / "*.none"), mechanism, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        ddist.perturb_files([tmp_path / "missing.txt"], mechanism, tmp_path / "o")
    with pytest.raises(ValueError, match="at least one file"):
        ddist.perturb_files([], mechanism, tmp_path / "o")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "part-0.txt").write_text("the\n")
    with pytest.raises(ValueError, match="same name"):
        ddist.perturb_files([corpus / "part-0.txt", tmp_path / "b" / "part-0.txt"], mechanism,
                            tmp_path / "o")  # fmt: skip
    before = (corpus / "part-1.txt").read_bytes()
    with pytest.raises(ValueError, match="inputs are never modified"):
        ddist.perturb_files([corpus / "part-1.txt"], mechanism, corpus)
    assert (corpus / "part-1.txt").read_bytes() == before
    (tmp_path / "plain").write_text("")
    with pytest.raises(NotADirectoryError, match="`out_dir`"):
        ddist.perturb_files([corpus / "part-1.txt"], mechanism, tmp_path / "plain")
    with pytest.raises(TypeError, match="`batch_size`"):
        ddist.perturb_files([corpus / "part-1.txt"], mechanism, tmp_path / "o", batch_size=3)
    with pytest.raises(ValueError, match="`encoding`"):
        ddist.perturb_files([corpus / "part-1.txt"], mechanism, tmp_path / "o", encoding="utf-9")
    with pytest.raises(ValueError, match="`batch_lines`"):
        ddist.perturb_files([corpus / "part-1.txt"], mechanism, tmp_path / "o", batch_lines=0)
    with pytest.raises(ValueError, match="`mask_token`"):
        ddist.perturb_files([corpus / "part-1.txt"], mechanism, tmp_path / "o", mask_token="")
    assert not (tmp_path / "o").exists()


def _big_corpus(tmp_path, space, n_files, n_lines, seed):
    """Files of ``n_lines`` lines of 10 vocabulary words: about a second of work each."""
    corpus = tmp_path / "big"
    corpus.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n_files):
        lines = [" ".join(space.words(rng.integers(0, len(space), 10))) for _ in range(n_lines)]
        (corpus / f"big-{i}.txt").write_text("\n".join(lines) + "\n")
    return corpus


@pytest.mark.slow
def test_killed_worker_leaves_no_partial_file_and_same_bytes(tmp_path, space):
    """SIGKILL a worker while it writes a file: the job completes on the other worker (and
    the restarted one) with the single-process bytes, and no temporary file is left."""
    corpus = _big_corpus(tmp_path, space, n_files=4, n_lines=30_000, seed=2)
    mechanism = dd.ExponentialMechanism(space, 8.0)
    out = tmp_path / "out"
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    killed: list[int] = []
    with distributed.Client(cluster) as client:
        pids = set(client.run(os.getpid).values())

        def killer() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                for entry in out.glob(".*.densitydp-*.tmp") if out.exists() else []:
                    pid = int(entry.name.rsplit(".densitydp-", 1)[1].split("-")[0])
                    if pid in pids:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
                time.sleep(0.005)

        thread = threading.Thread(target=killer)
        thread.start()
        paths = ddist.perturb_files(corpus / "*.txt", mechanism, out, rng=13, client=client)
        thread.join()
    cluster.close()
    assert killed, "no worker was caught writing"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    expected = _expected_files(corpus, mechanism, 13, tmp_path / "by-hand")
    assert {p.name: p.read_bytes() for p in paths} == expected


@pytest.mark.slow
def test_killed_worker_mid_partition_gives_the_same_frame(space):
    """SIGKILL the worker computing a partition: the partition is recomputed elsewhere and the
    frame equals the single-process one."""
    rng = np.random.default_rng(6)
    texts = [" ".join(space.words(rng.integers(0, len(space), 12))) for _ in range(60_000)]
    frame = pd.DataFrame({"text": texts})
    mechanism = dd.ExponentialMechanism(space, 8.0)
    expected = ddist.perturb_dataframe(frame, "text", mechanism, rng=4, partition_rows=15_000)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    killed: list[str] = []
    with distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def killer() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [
                    worker
                    for worker, keys in client.processing().items()
                    if any("_pandas_task" in str(key) for key in keys)
                ]
                if busy:
                    time.sleep(0.2)  # well inside the task
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                    return
                time.sleep(0.01)

        thread = threading.Thread(target=killer)
        thread.start()
        there = ddist.perturb_dataframe(
            frame, "text", mechanism, rng=4, partition_rows=15_000, client=client, progress=False
        )
        thread.join()
    cluster.close()
    assert killed, "no worker was caught computing"
    pd.testing.assert_frame_equal(there, expected)


# ----------------------------------------------------------------------------- audits


@pytest.mark.parametrize("kind", ["exact", "sampled"])
def test_audit_on_the_cluster_is_the_single_process_report(client, space, kind, monkeypatch):
    if kind == "exact":
        mechanism = dd.TruncatedExponential(space, 4.0)
    else:
        mechanism = dd.MultivariateLaplace(space, 4.0)
    # one word per call, two calls (batches of draws) per word: 24 sampling tasks
    import importlib

    monkeypatch.setattr(
        importlib.import_module("densitydp.audit.sampling"), "TOKENS_PER_CALL", 30_000
    )
    options = {"n_pairs": 6, "n_samples": 40_000, "rng": 17, "progress": False}
    here = dd.audit(mechanism, **options)
    with distributed.get_task_stream(client) as stream:
        there = ddist.audit(mechanism, client=client, **options)
    ran = [task["key"] for task in stream.data]
    assert sum("count_call" in str(key) for key in ran) == 24  # on the workers, not here
    assert sum("_exact_loss" in str(key) for key in ran) == (6 if kind == "exact" else 0)
    pd.testing.assert_frame_equal(there.table, here.table)
    assert there.outcome == here.outcome
    assert there.seed == here.seed
    assert str(there.goodness_of_fit) == str(here.goodness_of_fit)


def test_audit_with_a_sampled_reference_on_the_cluster(client, space):
    mechanism = dd.MultivariateLaplace(space, 4.0)
    options = {"n_pairs": 3, "n_samples": 20_000, "rng": 5, "progress": False}
    options["reference"] = dd.MultivariateLaplace(space, 4.0, table_k=8)
    here = dd.audit(mechanism, **options)
    there = ddist.audit(mechanism, client=client, **options)
    pd.testing.assert_frame_equal(there.table, here.table)
    pd.testing.assert_frame_equal(there.law.table, here.law.table)
    assert there.outcome == here.outcome


# ----------------------------------------------------------------------------- connect


@pytest.mark.parametrize(
    ("scheduler", "error", "match"),
    [
        ("local:0", ValueError, "N >= 1"),
        ("local:two", ValueError, "N >= 1"),
        ("localhost:8786", ValueError, "scheduler address"),
        ("tcp://", ValueError, "scheduler address"),
        (8786, TypeError, "`scheduler` must be"),
    ],
)
def test_connect_refuses(scheduler, error, match):
    with pytest.raises(error, match=match), ddist.connect(scheduler):
        pass


def test_connect_local_cluster_gives_numba_its_share():
    with ddist.connect("local:2") as client:
        assert len(client.scheduler_info()["workers"]) == 2
        threads = client.run(lambda: os.environ.get("NUMBA_NUM_THREADS"))
        assert set(threads.values()) == {str(max(1, (os.cpu_count() or 1) // 2))}
        assert ddist._client(None) is client  # the default client while it is open


# ----------------------------------------------------------------------------- command line


@pytest.fixture
def space_file(tmp_path, space):
    return space.to_file(tmp_path / "space.txt")


def _cli(*arguments):
    from click.testing import CliRunner

    from densitydp.cli import main

    return CliRunner().invoke(main, [str(a) for a in arguments])


def test_cli_perturb_out_dir_on_a_local_cluster(corpus, space, space_file, tmp_path):
    inputs = sorted(corpus.glob("*.txt"))
    common = ["perturb", "-m", "laplace", "-e", 9, "--embeddings", space_file, "--seed", 5]
    here = _cli(*common, "--out-dir", tmp_path / "here", *inputs)
    assert here.exit_code == 0, here.output
    there = _cli(*common, "--out-dir", tmp_path / "there", "--scheduler", "local:2", *inputs)
    assert there.exit_code == 0, there.output
    assert "scheduler tcp://" in there.output and "2 worker(s)" in there.output
    expected = _expected_files(corpus, dd.MultivariateLaplace(space, 9.0), 5, tmp_path / "api")
    for folder in ("here", "there"):
        assert {p.name: p.read_bytes() for p in (tmp_path / folder).iterdir()} == expected
    assert there.output.count("-> ") == len(inputs)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "local:0"], "Invalid value for '--scheduler': 'local:N' needs an int"),
        (["--scheduler", "localhost"], "such as 'tcp://host:8786'"),
        (["--scheduler", "local:2"], "--scheduler needs --out-dir"),
        (["-o", "x.txt", "--out-dir", "o"], "either -o/--output or --out-dir"),
        (["--out-dir", "o", "-"], "--out-dir needs INPUT files"),
        (["SECOND"], "several INPUT files need --out-dir"),
    ],
)
def test_cli_perturb_refusals(corpus, space_file, tmp_path, extra, message):
    first = corpus / "part-0.txt"
    extra = [str(corpus / "part-1.txt") if e == "SECOND" else e for e in extra]
    result = _cli("perturb", "-m", "laplace", "-e", 9, "--embeddings", space_file, first, *extra)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_perturb_never_writes_over_an_input(corpus, space_file):
    before = (corpus / "part-2.txt").read_bytes()
    result = _cli("perturb", "-m", "laplace", "-e", 9, "--embeddings", space_file,
                  "--out-dir", corpus, corpus / "part-2.txt")  # fmt: skip
    assert result.exit_code == 2 and "inputs are never modified" in result.output
    assert (corpus / "part-2.txt").read_bytes() == before


def test_cli_audit_on_a_local_cluster_prints_the_same_report(space_file, tmp_path):
    common = ["audit", "-m", "tem", "-e", 4, "--embeddings", space_file, "--seed", 2,
              "--n-pairs", 4, "--samples", 20_000, "--no-progress"]  # fmt: skip
    here = _cli(*common, "--json", tmp_path / "here.json")
    there = _cli(*common, "--json", tmp_path / "there.json", "--scheduler", "local:2")
    assert here.exit_code == there.exit_code == 0, there.output
    lines = [line for line in there.output.splitlines() if not line.startswith("scheduler ")]
    assert [line for line in lines if "saved" not in line] == [
        line for line in here.output.splitlines() if "saved" not in line
    ]
    a = dd.AuditReport.from_json(tmp_path / "here.json")
    b = dd.AuditReport.from_json(tmp_path / "there.json")
    pd.testing.assert_frame_equal(a.table, b.table)


# ----------------------------------------------------------------------------- failures


def test_a_failing_file_is_named_and_stops_the_job(client, corpus, space, tmp_path):
    mechanism = dd.ExponentialMechanism(space, 8.0)
    folder = tmp_path / "in"
    folder.mkdir()
    lines = "\n".join(" ".join(space.words(np.arange(i, i + 9))) for i in range(300)) + "\n"
    inputs = [folder / "a.txt", folder / "bad.txt", folder / "c.txt"]
    for path in inputs:
        path.write_text(lines + ("Zebulon\n" if path.name == "bad.txt" else ""))
    for where in (client, None):
        out = tmp_path / ("there" if where is not None else "here")
        with (
            _no_client() if where is None else _nothing(),
            pytest.raises(dd.UnknownWordError, match=r"bad\.txt: unknown word"),
        ):
            ddist.perturb_files(inputs, mechanism, out, client=where, unknown="error")
        assert not (out / "bad.txt").exists()
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def test_release_removes_the_mechanism_from_the_workers(client, corpus, space, tmp_path):
    mechanism = dd.ExponentialMechanism(space, 7.0)
    ddist.perturb_files(corpus / "part-0.txt", mechanism, tmp_path, client=client)
    name = names_on_workers(client, mechanism)
    assert name is not None
    assert name in ddist.release(client)
    assert not any(name in found for found in client.run(_shipped_names).values())
    assert not any(k[1] == id(mechanism) for k in ddist._SHIPPED)


def test_a_closed_client_is_refused(space, corpus, tmp_path):
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    closed = distributed.Client(cluster)
    closed.close()
    cluster.close()
    with pytest.raises(ValueError, match="`client` must be connected"):
        ddist.perturb_files(corpus / "part-0.txt", dd.ExponentialMechanism(space, 7.0),
                            tmp_path, client=closed)  # fmt: skip


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ddist, "CONNECT_TIMEOUT", 1.0)
    with (
        pytest.raises(ConnectionError, match=r"`scheduler` 'tcp://127.0.0.1:1': cannot connect"),
        ddist.connect("tcp://127.0.0.1:1"),
    ):
        pass


@pytest.mark.slow
def test_cli_sigterm_during_a_cluster_job_leaves_no_temporary_file(space, space_file, tmp_path):
    import subprocess
    import sys

    corpus = _big_corpus(tmp_path, space, n_files=2, n_lines=60_000, seed=3)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "densitydp.cli", "perturb", "-m", "exponential", "-e", "8",
               "--embeddings", str(space_file), "--seed", "1", "--out-dir", str(out),
               "--scheduler", "local:2", *map(str, sorted(corpus.iterdir()))]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob(".*.densitydp-*.tmp")):
        time.sleep(0.01)
    assert list(out.glob(".*.densitydp-*.tmp")), "no file was being written"
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGTERM, errors.decode()[-2000:]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_cli_expands_a_quoted_pattern(corpus, space, space_file, tmp_path):
    common = ["perturb", "-m", "laplace", "-e", 9, "--embeddings", space_file, "--seed", 5]
    result = _cli(*common, "--out-dir", tmp_path / "out", str(corpus / "part-*.txt"))
    assert result.exit_code == 0, result.output
    expected = _expected_files(corpus, dd.MultivariateLaplace(space, 9.0), 5, tmp_path / "api")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == expected
    result = _cli(*common, "--out-dir", tmp_path / "o", str(corpus / "*.none"))
    assert result.exit_code == 2 and "matches no file" in result.output
    result = _cli(*common, "--out-dir", tmp_path / "o", str(corpus / "missing.txt"))
    assert result.exit_code == 2 and "does not exist" in result.output
    result = _cli(*common, str(corpus / "part-*.txt"))
    assert result.exit_code == 2 and "several INPUT files need --out-dir" in result.output


# ----------------------------------------------------------------------------- second review


def test_a_client_that_is_not_the_default(client, corpus, space, tmp_path, documents):
    mechanism = dd.MultivariateLaplace(space, 9.0)
    expected = _expected_files(corpus, mechanism, 5, tmp_path / "by-hand")
    other = distributed.Client(client.scheduler.address, set_as_default=False)
    try:
        with _no_client():
            paths = ddist.perturb_files(corpus / "*.txt", mechanism, tmp_path / "o", rng=5,
                                        client=other)  # fmt: skip
            frame = ddist.perturb_dataframe(documents, "text", mechanism, rng=5, client=other)
            report = ddist.audit(mechanism, n_pairs=2, n_samples=2_000, rng=1, client=other,
                                 progress=False)  # fmt: skip
    finally:
        other.close()
    assert {p.name: p.read_bytes() for p in paths} == expected
    pd.testing.assert_frame_equal(
        frame, ddist.perturb_dataframe(documents, "text", mechanism, rng=5)
    )
    assert report.table.shape[0] == 2


def test_a_persisted_result_keeps_its_mechanism(client, space, documents, corpus, tmp_path):
    import gc

    lazy = dask_frames.from_pandas(documents, npartitions=3, sort=False)
    future = client.persist(
        ddist.perturb_dataframe(lazy, "text", dd.MultivariateLaplace(space, 3.0), rng=3)
    )
    gc.collect()  # only the persisted collection's futures know the (token of the) mechanism
    ddist.perturb_files(corpus / "part-0.txt", dd.ExponentialMechanism(space, 2.0), tmp_path,
                        client=client)  # fmt: skip
    assert len(future.compute()) == len(documents)


def test_an_output_never_leads_to_an_input(corpus, space, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text("the king\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").symlink_to(folder / "b.txt")  # a stale link onto another input
    with pytest.raises(ValueError, match="is the input .*b.txt.*inputs are never modified"):
        ddist.perturb_files(folder / "*.txt", dd.ExponentialMechanism(space, 2.0), out)
    assert (folder / "b.txt").read_text() == "the king\n"


def test_a_file_name_with_pattern_characters_is_taken_literally(space, tmp_path):
    (tmp_path / "rev[1].txt").write_text("the king\n")
    (tmp_path / "rev1.txt").write_text("the queen\n")
    paths = ddist.perturb_files(tmp_path / "rev[1].txt", dd.ExponentialMechanism(space, 2.0),
                                tmp_path / "o")  # fmt: skip
    assert [p.name for p in paths] == ["rev[1].txt"]


def test_a_dask_column_that_cannot_hold_text_is_refused_at_the_call(space, documents):
    lazy = dask_frames.from_pandas(documents.assign(text=np.arange(len(documents))), npartitions=2)
    with pytest.raises(TypeError, match=r"`frame\['text'\]` must hold text; its dtype is int64"):
        ddist.perturb_dataframe(lazy, "text", dd.ExponentialMechanism(space, 2.0))


def test_a_port_that_never_answers_is_a_clear_error(monkeypatch):
    import socket

    monkeypatch.setattr(ddist, "CONNECT_TIMEOUT", 1.0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    started = time.monotonic()
    try:
        with (
            pytest.raises(ConnectionError, match=r"within 1 s \(no answer as a Dask scheduler\)"),
            ddist.connect(f"tcp://127.0.0.1:{port}"),
        ):
            pass
    finally:
        listener.close()
    assert time.monotonic() - started < 30
    with pytest.raises(ValueError, match="schemes: tcp"):
        ddist.check_scheduler("foo://x:1")


def test_cli_summarises_many_files(space, space_file, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(25):
        (folder / f"f{i:02d}.txt").write_text(" ".join(space.words(np.arange(i, i + 5))) + "\n")
    result = _cli("perturb", "-m", "laplace", "-e", 9, "--embeddings", space_file, "--seed", 1,
                  "--out-dir", tmp_path / "out", str(folder / "*.txt"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "25 files into" in result.output and "125 word tokens, 125 perturbed" in result.output
    assert "-> " not in result.output
    assert len(list((tmp_path / "out").iterdir())) == 25


def test_another_jobs_temporary_file_is_left_alone(space, tmp_path):
    (tmp_path / "a.txt").write_text("the king\n")
    out = tmp_path / "out"
    out.mkdir()
    # a live write of the same output by another job (another tag), and a leftover of ours
    theirs = out / f".a.txt.densitydp-{os.getpid()}-0therjob0000xyz.tmp"
    ours = out / f".a.txt.densitydp-{os.getpid()}-0urjob000000abc.tmp"
    theirs.write_text("half")
    ours.write_text("half")
    ddist.perturb_files(tmp_path / "a.txt", dd.ExponentialMechanism(space, 2.0), out,
                        _tag="0urjob000000")  # fmt: skip
    assert theirs.exists() and not ours.exists()
    assert (out / "a.txt").read_text().count("\n") == 1
    from densitydp._io import atomic_write

    with (
        pytest.raises(ValueError, match="`tag` must be letters and digits"),
        atomic_write(out / "b.txt", tag="../x"),
    ):
        pass


def test_cli_on_a_running_scheduler_leaves_nothing_behind(client, corpus, space, space_file,
                                                         tmp_path):  # fmt: skip
    """--scheduler tcp://...: the same bytes, and its mechanism is released from the
    long-lived cluster when the command ends (a scheduler must not pile up mechanisms)."""
    before = client.run(_shipped_names)
    result = _cli("perturb", "-m", "laplace", "-e", 9, "--embeddings", space_file, "--seed", 5,
                  "--out-dir", tmp_path / "out", "--scheduler", client.scheduler.address,
                  str(corpus / "*.txt"))  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = _expected_files(corpus, dd.MultivariateLaplace(space, 9.0), 5, tmp_path / "api")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == expected
    after = client.run(_shipped_names)  # nothing added (earlier tests' garbage may be gone)
    assert all(set(after[worker]) <= set(before[worker]) for worker in after)
