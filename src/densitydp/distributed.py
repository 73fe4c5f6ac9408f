"""Scale-out on Dask: corpora and audits on a cluster (extra ``dask``).

Nothing here schedules: the work is cut into independent tasks and handed to
`dask.distributed <https://distributed.dask.org>`_ (a ``LocalCluster`` on a laptop, the same code
on a cluster started with dask-jobqueue or dask-kubernetes). What makes the result independent of
the cluster:

* **Seeds by position.** Partition (or file) ``p`` of a job is perturbed with the ``p``-th child
  of the user's seed, ``numpy.random.default_rng(rng).spawn(n)[p]``, rebuilt on the worker from
  the parent's ``SeedSequence`` and ``p``. Every task is a pure function of its input, its index
  and the seed, so the output is byte-identical to the single-process run whatever the number
  of workers, the order in which partitions finish, or how often a task is retried after a
  worker died.
* **The mechanism travels once per worker.** With a client, the mechanism (its space: vectors
  and vocabulary) is shipped to every worker in a worker plugin and the tasks carry a small
  token; a worker deserialises it once and keeps it, with the neighbour rows it computes, for
  all its tasks (and the client's later jobs with the same mechanism). Without a client the
  job runs here (a dask DataFrame on dask's default local scheduler), with the same result.
* **Atomic outputs.** Files are written through a temporary file renamed into place
  (:func:`densitydp._io.atomic_write`); a worker killed mid-write leaves only that temporary
  file, which the job removes once every output is in place.

Assumptions, stated: a mechanism is deterministic given its seed (every mechanism of this
package is, and a foreign one must be for the byte-identity to hold); on a multi-machine
cluster the input and output paths of :func:`perturb_files` are on storage every worker sees
under the same names.
"""

from __future__ import annotations

import contextlib
import functools
import glob as globbing
import math
import os
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ._io import WriteError
from ._rng import RNGLike, as_generator, seed_entropy
from ._validation import check_int
from .embeddings import UnknownWordError
from .text import PerturbationReport, _check_mechanism, perturb_file, perturb_texts

if TYPE_CHECKING:
    import pandas as pd

    from .audit.report import AuditReport
    from .mechanisms.base import Mechanism

__all__ = [
    "PartitionSeeds",
    "audit",
    "check_scheduler",
    "connect",
    "perturb_dataframe",
    "perturb_files",
    "release",
]

#: Rows per partition when a pandas DataFrame is cut for the cluster.
PARTITION_ROWS = 10_000

#: The options of :func:`densitydp.perturb_texts` a DataFrame job passes on.
_TEXT_POLICY = frozenset({"unknown", "mask_token", "pattern", "batch_size"})
#: The options of :func:`densitydp.perturb_file` a file job passes on.
_FILE_POLICY = frozenset({"unknown", "mask_token", "pattern", "encoding", "batch_lines"})

_EXTRA = 'pip install "densitydp[dask]"'


# ----------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class PartitionSeeds:
    """The children of one parent generator, rebuilt anywhere from a few integers.

    ``PartitionSeeds.spawn(rng, n).child(p)`` is a generator in the same state as
    ``as_generator(rng).spawn(n)[p]`` (the parent is advanced by ``n`` spawns, as
    :meth:`numpy.random.Generator.spawn` does), so a task needs only ``p`` and this small
    object, not the list of ``n`` children.
    """

    entropy: Any
    spawn_key: tuple[int, ...]
    pool_size: int
    first: int
    n_children: int
    bit_generator: str

    @classmethod
    def spawn(cls, rng: RNGLike, n_children: int) -> PartitionSeeds:
        """Spawn ``n_children`` children of ``rng`` (advancing a Generator passed in)."""
        n_children = check_int(n_children, "n_children", minimum=0)
        parent = as_generator(rng)
        sequence = parent.bit_generator.seed_seq
        if not isinstance(sequence, np.random.SeedSequence):
            raise TypeError(
                "`rng` must be seeded by a numpy.random.SeedSequence to spawn partition seeds "
                "(a Generator from numpy.random.default_rng or an int seed)."
            )
        first = sequence.n_children_spawned
        parent.spawn(n_children)  # advance the parent exactly as spawning the children would
        return cls(
            entropy=sequence.entropy,
            spawn_key=tuple(sequence.spawn_key),
            pool_size=sequence.pool_size,
            first=first,
            n_children=n_children,
            bit_generator=type(parent.bit_generator).__name__,
        )

    def parent_seed(self) -> dict[str, Any]:
        """The parent's seed as :func:`densitydp._rng.seed_entropy` records it."""
        parent = np.random.SeedSequence(self.entropy, spawn_key=self.spawn_key)
        return seed_entropy(np.random.default_rng(parent))

    def child(self, index: int) -> np.random.Generator:
        """The generator of child ``index`` (``0 <= index < n_children``)."""
        index = check_int(index, "index")
        if not 0 <= index < self.n_children:
            raise IndexError(f"child {index} of {self.n_children}")
        sequence = np.random.SeedSequence(
            self.entropy, spawn_key=(*self.spawn_key, self.first + index), pool_size=self.pool_size
        )
        return np.random.Generator(getattr(np.random, self.bit_generator)(sequence))


# ----------------------------------------------------------------------------- clients


@contextlib.contextmanager
def connect(scheduler: Any) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler``, closed (with its cluster) on exit.

    Parameters
    ----------
    scheduler : str or distributed.Client
        ``"local:N"``: a new ``LocalCluster`` of ``N`` worker processes with one task thread
        each, and each worker's numba kernels on ``cores // N`` threads (``NUMBA_NUM_THREADS``);
        its logs are silenced below CRITICAL (a task's error is raised here, not logged with
        the text it names);
        ``"tcp://host:port"`` (or ``tls://``, ``ucx://``, ``inproc://``): the running
        scheduler at that address (``dask scheduler`` / dask-jobqueue / dask-kubernetes); a
        Client: used as it is, and not closed.

    On exit the mechanisms shipped to the client's workers are released (:func:`release`).
    In a script, start the cluster under ``if __name__ == "__main__":`` (its worker processes
    import the main module).

    Raises
    ------
    TypeError
        ``scheduler`` is not a str or a Client.
    ValueError
        ``scheduler`` is neither form, or ``N`` is not an int >= 1.
    ConnectionError
        No scheduler answers at the address within ``CONNECT_TIMEOUT`` seconds (10), or its
        scheme is unknown.
    ImportError
        dask.distributed is not installed (the extra ``dask``).
    """
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield _client(scheduler)
        return
    n_workers = check_scheduler(scheduler)
    if n_workers is not None:
        import logging

        threads = max(1, (os.cpu_count() or 1) // n_workers)
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,  # task errors reach the caller as exceptions
            env={"NUMBA_NUM_THREADS": str(threads)},
        )
        try:
            with distributed.Client(cluster) as client:
                try:
                    yield client
                finally:
                    release(client)
        finally:
            cluster.close()
        return
    client = _connected(distributed, scheduler)
    with client:
        try:
            yield client
        finally:
            release(client)


def _connected(distributed: Any, scheduler: str) -> Any:
    """A Client of the scheduler at ``scheduler``, or ConnectionError within about
    ``CONNECT_TIMEOUT`` seconds. The Client is made in a daemon thread joined with a deadline:
    distributed's own timeout does not cover a port that accepts and never answers (its
    handshake waits for ever)."""
    import threading

    outcome: dict[str, Any] = {}

    def make() -> None:
        try:
            outcome["client"] = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except BaseException as exc:  # refused, timed out, garbage answered (MemoryError)
            outcome["error"] = exc

    thread = threading.Thread(target=make, name="densitydp-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT + 2.0)
    if thread.is_alive():
        reason = "no answer as a Dask scheduler"
    elif "error" in outcome:
        error = outcome["error"]
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    else:
        return outcome["client"]
    raise ConnectionError(
        f"`scheduler` {scheduler!r}: cannot connect within {CONNECT_TIMEOUT:g} s ({reason})."
    )


#: Seconds :func:`connect` waits for a scheduler at an address.
CONNECT_TIMEOUT = 10.0


def release(client: Any = None) -> list[str]:
    """Remove from ``client``'s workers every mechanism this process shipped there.

    A mechanism stays on the workers (in a worker plugin the scheduler keeps) while it lives
    in this process; :func:`connect` releases its client's on exit. With a client of your
    own on a long-lived cluster, call this when done (or close the cluster). Returns the
    plugin names removed. A lazy result that was not computed yet cannot run afterwards.

    Parameters
    ----------
    client : distributed.Client, optional
        Default: the client of this process.
    """
    client = _client(client)
    if client is None:
        return []
    removed = []
    for key in [k for k, entry in _SHIPPED.items() if entry[2] is client]:
        removed.append(_SHIPPED[key][1].name)
        _unship(key)
    return removed


def check_scheduler(scheduler: Any) -> int | None:
    """Check a ``scheduler`` of :func:`connect` given as a str: the ``N`` of ``"local:N"``,
    None for an address. Raises the errors :func:`connect` documents."""
    if not isinstance(scheduler, str):
        raise TypeError(
            "`scheduler` must be 'local:N', a scheduler address such as 'tcp://host:8786', "
            f"or a distributed.Client; got {type(scheduler).__name__}."
        )
    if scheduler.startswith("local:"):
        count = scheduler[len("local:") :]
        if not (count.isascii() and count.isdigit()) or int(count) < 1:
            raise ValueError(f"`scheduler` 'local:N' needs an int N >= 1; got {scheduler!r}.")
        return int(count)
    scheme, _, rest = scheduler.partition("://")
    if not rest or scheme not in SCHEMES:
        raise ValueError(
            "`scheduler` must be 'local:N' or a scheduler address such as 'tcp://host:8786' "
            f"(schemes: {', '.join(SCHEMES)}); got {scheduler!r}."
        )
    return None


#: Address schemes of dask.distributed's comms.
SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(f"densitydp.distributed needs dask.distributed: {_EXTRA}") from None
    return distributed


def _client(client: Any) -> Any:
    """``client``, else the default client of this process (``distributed.default_client``),
    else None (run here)."""
    if client is not None:
        distributed = _distributed()
        if not isinstance(client, distributed.Client):
            raise TypeError(
                f"`client` must be a distributed.Client or None; got {type(client).__name__}."
            )
        if client.status != "running":
            raise ValueError(f"`client` must be connected; it is {client.status}.")
        return client
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:  # no client in this process
        return None


def _on_worker(carried: Any) -> Any:
    """In a task: the mechanism (``carried`` is the mechanism itself, or the token of one
    shipped by :func:`_shipped`), with numba's kernels given this worker's share of the cores,
    so that a worker running several tasks at once does not oversubscribe them (results never
    depend on the thread count)."""
    mechanism = carried
    if isinstance(carried, _Token):
        mechanism = _ON_WORKER.get(carried.name)
        if mechanism is None:
            raise RuntimeError(
                f"the mechanism {carried.label} is not on this worker: compute the job with the "
                "client it was started with, before release(client) or the end of its "
                "connect() block (a mechanism is shipped to that client's workers only)."
            )
    with contextlib.suppress(ImportError, ValueError):
        import numba
        from distributed import get_worker

        threads = get_worker().state.nthreads
        pool = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        cores = int(os.environ.get("NUMBA_NUM_THREADS") or pool)
        numba.set_num_threads(max(1, min(pool, cores // threads)))
    return mechanism


class _Token:
    """What a task carries instead of a shipped mechanism: its plugin's name. On the client
    it also holds the mechanism (never pickled), so that a lazy graph holding the token keeps
    the mechanism alive here, and with it the plugin on the workers."""

    __slots__ = ("keep", "label", "name")

    def __init__(self, name: str, label: str, keep: Any = None) -> None:
        self.name = name
        self.label = label
        self.keep = keep

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Token, (self.name, self.label))

    def __dask_tokenize__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<densitydp mechanism {self.label} shipped as {self.name}>"


#: Mechanisms shipped to this process (a worker) by their plugins, by plugin name.
_ON_WORKER: dict[str, Any] = {}


def _shipped(client: Any, mechanism: Any) -> _Token:
    """Ship ``mechanism`` to every worker of ``client``, once; return the token tasks carry.

    The mechanism travels in a worker plugin (``Client.register_plugin``): the client
    serialises it once, the scheduler keeps the bytes and hands them to every worker,
    including workers that join or restart later, which deserialise it once and keep it (with
    the neighbour rows they compute) until the plugin is removed. A scattered future would
    not do: dask's active memory manager drops the replicas it judges redundant, and a worker
    then fetches (and deserialises) the mechanism again. Later jobs of the same client with
    the same mechanism object reuse it. It stays on the workers while the mechanism lives
    here (a lazy graph holding the token keeps it alive) and is unregistered at the first
    shipment after the mechanism was garbage-collected while the client holds no future (a
    computed or persisted result in flight holds only the token), or by :func:`release`.
    """
    _forget_stale(client)
    key = (id(client), id(mechanism))
    found = _SHIPPED.get(key)
    if found is not None and found[0]() is mechanism:
        return _Token(found[1].name, found[1].label, mechanism)
    from ._dask_plugin import ShipMechanism

    token = _Token(f"densitydp-mechanism-{uuid.uuid4().hex}", type(mechanism).__name__)
    client.register_plugin(ShipMechanism(token.name, mechanism), name=token.name)
    reference: Callable[[], Any]
    try:
        reference = weakref.ref(mechanism)
    except TypeError:  # not weakly referable: never reused, forgotten at the next shipment
        reference = _dead
    _SHIPPED[key] = (reference, token, client)  # the token kept here holds no mechanism
    return _Token(token.name, token.label, mechanism)


def _dead() -> None:
    return None


#: Shipped mechanisms by (client, mechanism) identity: a weak reference, the token, the client.
_SHIPPED: dict[tuple[int, int], tuple[Any, _Token, Any]] = {}


def _forget_stale(client: Any) -> None:
    """Unregister the plugins of mechanisms garbage-collected here, and of closed clients.

    Not while a client holds futures (a computed or persisted result may still need a
    mechanism nobody here references any more: its tasks carry only the token)."""
    for key, (reference, _, owner) in list(_SHIPPED.items()):
        if owner.status == "running" and owner.futures:
            continue
        if owner.status != "running":
            _SHIPPED.pop(key, None)
        elif reference() is None:
            _unship(key)


def _unship(key: tuple[int, int]) -> None:
    _, token, client = _SHIPPED.pop(key)
    with contextlib.suppress(Exception):  # a worker that went away meanwhile
        client.unregister_worker_plugin(token.name)


# ----------------------------------------------------------------------------- data frames


def perturb_dataframe(
    frame: Any,
    column: str,
    mechanism: Mechanism,
    *,
    rng: RNGLike = None,
    client: Any = None,
    partition_rows: int | None = None,
    progress: bool | None = None,
    return_report: bool = False,
    **policy: Any,
) -> Any:
    """Perturb the documents of one column of a dask or pandas DataFrame, partition by
    partition, on a Dask cluster or here.

    Partition ``p`` (of ``n``) is perturbed as ``perturb_texts(texts, mechanism,
    rng=children[p], **policy)`` with ``children = numpy.random.default_rng(rng).spawn(n)`` and
    ``texts`` its non-missing values of ``column`` (missing values stay missing). For a dask
    frame, ``p`` and ``n`` are those of ``frame.partitions`` when this is called, fixed in the
    graph: selecting partitions of the result (``result.partitions[p]``) or dask's optimiser
    fusing them changes nothing. The result therefore depends on the data, the partitioning
    and the seed only: not on the number of workers, the order in which partitions finish, or
    retries.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame or pandas.DataFrame
        Documents, one per row. A pandas frame is cut into partitions of ``partition_rows``
        rows (positional), perturbed on the cluster (each partition travels in its task,
        through the scheduler, which keeps it until the task is done) and put back
        together; a dask frame keeps its partitions.
    column : str
        The column of text (str values; missing values allowed).
    mechanism : Mechanism
        Any densitydp mechanism, deterministic given its seed.
    rng : None, int or numpy.random.Generator
        The parent of the partitions' seeds (a Generator passed in is advanced by ``n``
        spawns).
    client : distributed.Client, optional
        The cluster; default: the client of this process if there is one, else the work runs
        here. The mechanism reaches every worker once.
    partition_rows : int, optional
        Rows per partition of a pandas frame (default 10,000); refused for a dask frame.
    progress : bool, optional
        Progress bar over partitions (pandas input; default: shown for more than one
        partition on a terminal).
    return_report : bool
        Also return the :class:`~densitydp.PerturbationReport` of all the partitions (pandas
        input only; its ``worst_text`` is a row position in ``frame``).
    **policy
        ``unknown``, ``mask_token``, ``pattern``, ``batch_size`` of
        :func:`densitydp.perturb_texts`.

    Returns
    -------
    dask.dataframe.DataFrame or pandas.DataFrame
        A new frame of the same type with ``column`` replaced (dtype kept); a dask frame is
        lazy (compute it or write it with ``to_parquet``). ``frame`` is not modified. Each
        partition (and a computed frame) records the job in ``attrs["densitydp"]``: the
        mechanism's repr, the column, the number of partitions and the policy — never the
        seed, which reproduces every draw and must stay with the data's owner (the report
        has it): ``attrs`` are written into files (``to_parquet``). A categorical column
        comes back with its categories' dtype.

    Raises
    ------
    TypeError
        ``frame`` is not a DataFrame, a value of ``column`` is not a str, an unknown option.
    KeyError
        ``column`` is not a column of ``frame``.
    ValueError
        ``return_report`` with a dask frame, ``partition_rows`` < 1.

    Examples
    --------
    >>> import pandas as pd, densitydp as dd
    >>> from densitydp.distributed import perturb_dataframe
    >>> space = dd.EmbeddingSpace(["the", "king", "queen"], [[0.0, 0.0], [4.0, 0.0], [4.0, 0.1]])
    >>> frame = pd.DataFrame({"text": ["the king", None, "The queen!"], "label": [1, 0, 1]})
    >>> perturb_dataframe(frame, "text", dd.ExponentialMechanism(space, 100.0), rng=0)
             text  label
    0    the king      1
    1         NaN      0
    2  The queen!      1
    """
    _check_policy(policy, _TEXT_POLICY, "perturb_texts", mechanism)
    import pandas as pd

    if isinstance(frame, pd.DataFrame):
        return _perturb_pandas(
            frame, column, mechanism, rng, client, partition_rows, progress, return_report, policy
        )
    if not _is_dask_frame(frame):
        raise TypeError(f"`frame` must be a dask or pandas DataFrame; got {type(frame).__name__}.")
    if partition_rows is not None:
        raise ValueError(
            "`partition_rows` applies to a pandas DataFrame; a dask DataFrame keeps its "
            "partitions (repartition it first)."
        )
    if return_report:
        raise ValueError(
            "`return_report` needs a pandas DataFrame: a dask DataFrame is perturbed lazily."
        )
    _check_column(frame, column)
    _check_text_dtype(frame._meta[column].dtype, column)
    import dask
    from dask.dataframe import from_delayed

    # each partition's index is fixed here, in the graph: dask's optimiser may fuse or select
    # partitions later (`partition_info` would then number them as it runs them)
    parts = frame.to_delayed(optimize_graph=False)
    seeds = PartitionSeeds.spawn(rng, len(parts))
    client = _client(client)
    job = uuid.uuid4().hex
    if client is not None:
        carried = _shipped(client, mechanism)
    else:
        carried = dask.delayed(mechanism, name=f"densitydp-mechanism-{job}")
    task = dask.delayed(_partition_task)
    outputs = [
        task(part, column, carried, seeds, index, policy, dask_key_name=f"densitydp-{job}-{index}")
        for index, part in enumerate(parts)
    ]
    meta = frame._meta.copy()
    meta[column] = meta[column].astype(_output_dtype(meta[column].dtype))
    return from_delayed(outputs, meta=meta, divisions=frame.divisions, verify_meta=False)


def _is_dask_frame(frame: Any) -> bool:
    try:
        from dask.dataframe import DataFrame
    except ImportError:
        return False
    return isinstance(frame, DataFrame)


def _partition_task(
    part: pd.DataFrame,
    column: str,
    mechanism: Mechanism,
    seeds: PartitionSeeds,
    index: int,
    policy: dict[str, Any],
) -> pd.DataFrame:
    """Partition ``index`` of a dask frame."""
    return _perturb_part(part, column, _on_worker(mechanism), seeds, index, policy, False)[0]


def _output_dtype(dtype: Any) -> Any:
    """The dtype of the perturbed column: the input's, except that a categorical column
    (whose categories the outputs leave) gives its categories' dtype."""
    import pandas as pd

    return dtype.categories.dtype if isinstance(dtype, pd.CategoricalDtype) else dtype


def _check_text_dtype(dtype: Any, column: str) -> None:
    """A dask frame's column must be able to hold text (its dtype is known from its meta)."""
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
        raise TypeError(f"`frame[{column!r}]` must hold text; its dtype is {dtype}.")


def _check_texts(values: pd.Series, column: str) -> None:
    """Every present value of ``column`` is a str (names the first row that is not)."""
    import pandas as pd

    if isinstance(values.dtype, pd.StringDtype):
        return
    present = values[values.notna()]
    for row, value in zip(present.index, present.to_numpy(), strict=True):
        if not isinstance(value, str):
            raise TypeError(
                f"`frame[{column!r}]` must hold str values (or missing ones); row {row!r} "
                f"holds {type(value).__name__} {value!r}."
            )


def _perturb_part(
    part: pd.DataFrame,
    column: str,
    mechanism: Mechanism,
    seeds: PartitionSeeds,
    index: int,
    policy: dict[str, Any],
    return_report: bool,
) -> tuple[pd.DataFrame, PerturbationReport | None]:
    """Partition ``index``: its present values of ``column`` through
    :func:`~densitydp.perturb_texts` with child ``index``; the frame records the job in
    ``attrs["densitydp"]`` (the same for every partition, so it survives concatenation)."""
    import pandas as pd

    rng = seeds.child(index)
    values = part[column]
    _check_texts(values, column)
    present = values.notna().to_numpy()
    texts = values[present]
    outputs: Any = perturb_texts(texts, mechanism, rng=rng, return_report=return_report, **policy)
    outputs, report = outputs if return_report else (outputs, None)
    if report is not None and report.worst_text >= 0:  # an index among the present values
        report.worst_text = int(np.flatnonzero(present)[report.worst_text])
    result = part.copy()
    replaced = values.astype(object).copy()
    replaced[present] = outputs
    result[column] = pd.Series(replaced, index=part.index, name=column).astype(
        _output_dtype(values.dtype)
    )
    # what was done, never the seed: attrs travel into files (to_parquet writes them), and
    # the seed reproduces every draw (it is in the report, for the data's owner)
    result.attrs["densitydp"] = {
        "mechanism": repr(mechanism),
        "column": column,
        "n_partitions": seeds.n_children,
        "policy": dict(policy),
    }
    return result, report


def _perturb_pandas(
    frame: pd.DataFrame,
    column: str,
    mechanism: Mechanism,
    rng: RNGLike,
    client: Any,
    partition_rows: int | None,
    progress: bool | None,
    return_report: bool,
    policy: dict[str, Any],
) -> Any:
    import pandas as pd

    _check_column(frame, column)
    _check_texts(frame[column], column)  # here, before anything is shipped
    rows = check_int(
        PARTITION_ROWS if partition_rows is None else partition_rows, "partition_rows", minimum=1
    )
    n_parts = max(1, math.ceil(len(frame) / rows))
    seeds = PartitionSeeds.spawn(rng, n_parts)
    parts = [frame.iloc[p * rows : (p + 1) * rows] for p in range(n_parts)]
    client = _client(client)
    show = progress if progress is not None else None if n_parts > 1 else False
    results = _run(
        client,
        _pandas_task,
        mechanism,
        [(part, column, seeds, p, policy, return_report) for p, part in enumerate(parts)],
        desc="partitions",
        progress=show,
    )
    frames = [result[0] for result in results]
    out = pd.concat(frames) if len(frames) > 1 else frames[0]
    if not return_report:
        return out
    report = _merged([result[1] for result in results], [p * rows for p in range(n_parts)], seeds)
    return out, report


def _pandas_task(mechanism: Mechanism, item: tuple[Any, ...]) -> Any:
    part, column, seeds, index, policy, return_report = item
    return _perturb_part(part, column, mechanism, seeds, index, policy, return_report)


# ----------------------------------------------------------------------------- files


def perturb_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    mechanism: Mechanism,
    out_dir: str | os.PathLike[str],
    *,
    rng: RNGLike = None,
    client: Any = None,
    progress: bool | None = None,
    return_report: bool = False,
    _tag: str | None = None,
    **policy: Any,
) -> Any:
    """Perturb many text files, one task per file, into ``out_dir`` (same file names).

    File ``i`` (in the order given; a glob's matches sorted) is perturbed exactly as
    ``perturb_file(path_i, out_dir / name_i, mechanism, rng=children[i], **policy)`` with
    ``children = numpy.random.default_rng(rng).spawn(n_files)``: byte-identical whatever the
    number of workers, the order of completion or retries. Each output is written atomically;
    a worker killed mid-file leaves only its temporary file, removed once every output is in
    place (the file is redone on another worker). If a file fails (e.g. ``unknown="error"``
    and an unknown word: the error names the file), the job stops at the first failure (here:
    in input order; on a cluster: the first to fail), the other tasks are cancelled, and the
    outputs completed before stay (complete files; no partial one).

    Parameters
    ----------
    paths : str, path or iterable of them
        A glob pattern (``"corpus/*.txt"``, ``**`` recursive), one path, or a list of paths.
        On a multi-machine cluster they must be readable by every worker under these names.
    mechanism : Mechanism
        Any densitydp mechanism, deterministic given its seed.
    out_dir : str or path
        Folder of the outputs (created if missing); must not be the folder of an input with
        the same name (inputs are never modified). Two inputs may not share a file name.
    rng, client, progress
        As in :func:`perturb_dataframe` (the progress bar counts files).
    return_report : bool
        Also return the :class:`~densitydp.PerturbationReport` of each file (a list, in the
        order of the outputs).
    **policy
        ``unknown``, ``mask_token``, ``pattern``, ``encoding``, ``batch_lines`` of
        :func:`densitydp.perturb_file`.

    Returns
    -------
    list of pathlib.Path
        The outputs, in the order of the inputs; with ``return_report`` a pair ``(paths,
        reports)``.

    Raises
    ------
    FileNotFoundError
        A glob matches nothing, or a path does not exist.
    ValueError
        Two inputs share a name, an output would replace its input, an empty list.
    """
    _check_policy(policy, _FILE_POLICY, "perturb_file", mechanism)
    sources = _sources(paths)
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"`out_dir` must be a folder's path; got {type(out_dir).__name__}.")
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"`out_dir` {os.fspath(out_dir)!r} is not a folder.")
    if not os.fspath(out_dir):
        raise ValueError("`out_dir` must name a folder; got ''.")
    targets = [folder / source.name for source in sources]
    _refuse_inputs_as_outputs(sources, targets)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(
            exc.errno or 0, f"`out_dir` {os.fspath(out_dir)!r} cannot be created: {exc.strerror}"
        ) from None
    seeds = PartitionSeeds.spawn(rng, len(sources))
    tag = _tag or uuid.uuid4().hex[:12]  # this job's temporary files (atomic_write)
    items = [
        (os.path.abspath(source), os.path.abspath(target), seeds, i, policy, tag)
        for i, (source, target) in enumerate(zip(sources, targets, strict=True))
    ]
    try:
        reports = _run(
            _client(client), _file_task, mechanism, items, desc="files", progress=progress
        )
    finally:  # also on a failure or an interruption: no partial output stays
        _remove_leftovers(targets, tag)
    return (targets, reports) if return_report else targets


def _file_task(mechanism: Mechanism, item: tuple[Any, ...]) -> PerturbationReport:
    source, target, seeds, index, policy, tag = item
    try:
        _, report = perturb_file(
            source,
            target,
            mechanism,
            rng=seeds.child(index),
            progress=False,
            return_report=True,
            _tag=tag,
            **policy,
        )
    except UnknownWordError as exc:
        raise UnknownWordError(f"{source}: {exc.args[0]}") from None
    except Exception as exc:
        exc.add_note(f"(while perturbing {source})")
        raise
    return report


def _refuse_inputs_as_outputs(sources: list[Path], targets: list[Path]) -> None:
    """No output may be (or lead through a symlink to) any input file: an output is written
    through a symlink, and inputs are never modified."""
    inputs = {os.path.realpath(source): source for source in sources}
    for target in targets:
        source = inputs.get(os.path.realpath(target))
        if source is not None:
            raise ValueError(
                f"the output {os.fspath(target)!r} is the input {os.fspath(source)!r} (or a "
                "symlink to it): it would be replaced (inputs are never modified)."
            )


def _sources(paths: Any) -> list[Path]:
    """The input files: a glob's sorted matches, one path, or a list; checked to exist and
    to have distinct names."""
    if isinstance(paths, (str, os.PathLike)):
        pattern = os.fspath(paths)
        if globbing.has_magic(pattern) and not os.path.exists(pattern):
            found = sorted(globbing.glob(pattern, recursive=True))
            if not found:
                raise FileNotFoundError(f"`paths` {pattern!r} matches no file.")
            sources = [Path(p) for p in found if os.path.isfile(p)]
        else:
            sources = [Path(pattern)]
    elif isinstance(paths, Iterable) and not isinstance(paths, (bytes, bytearray)):
        sources = [Path(os.fspath(p)) for p in paths]
    else:
        raise TypeError(
            "`paths` must be a glob pattern, a path or a list of paths; got "
            f"{type(paths).__name__}."
        )
    if not sources:
        raise ValueError("`paths` must name at least one file.")
    seen: dict[str, Path] = {}
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"`paths`: {os.fspath(source)!r} is not a file.")
        if source.name in seen:
            raise ValueError(
                f"`paths`: {os.fspath(seen[source.name])!r} and {os.fspath(source)!r} have the "
                "same name; their outputs in `out_dir` would collide."
            )
        seen[source.name] = source
    return sources


def _remove_leftovers(targets: list[Path] | list[str], tag: str) -> None:
    """Remove the temporary files of these outputs left by killed workers: every output is in
    place, so any temporary file of one of them belongs to a write that died (on any host)."""
    from ._io import temporaries_of

    for target in targets:
        for leftover in temporaries_of(target, tag):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


# ----------------------------------------------------------------------------- audits


def audit(mechanism: Any, *args: Any, client: Any = None, **options: Any) -> AuditReport:
    """:func:`densitydp.audit` with its sampling calls and exact losses run on a Dask cluster.

    The calls (groups of the pairs' words times batches of draws, each with its own child of
    the seed), the exact losses (one task per pair) and, with ``reference=`` a mechanism
    without an exact law, the reference's sampling calls are fanned out over the workers;
    each mechanism reaches every worker once. The statistics (intervals, goodness of fit,
    law tests) are computed here from the merged counts. The merged report is identical to
    ``densitydp.audit(mechanism, *args, **options)`` for the same seed (only its timing
    differs). Without a client (and no default client) it is that call.

    Parameters
    ----------
    mechanism, *args, **options
        As in :func:`densitydp.audit`.
    client : distributed.Client, optional
        The cluster; default: the client of this process, if any.
    """
    from .audit import audit as audit_here

    client = _client(client)
    if client is None:
        return audit_here(mechanism, *args, **options)
    mapper = functools.partial(_run, client, progress=False)  # map_calls on the cluster
    return audit_here(mechanism, *args, _map_calls=mapper, **options)


# ----------------------------------------------------------------------------- running


def _run(
    client: Any,
    function: Callable[[Any, Any], Any],
    mechanism: Any,
    items: list[Any],
    *,
    desc: str = "tasks",
    progress: bool | None = None,
) -> list[Any]:
    """``[function(mechanism, item) for item in items]``, here or on ``client``'s workers
    (the mechanism shipped once, see :func:`_shipped`). An item travels in its task, which
    the scheduler keeps until the task is done, so a task whose worker died is run again
    elsewhere (a scattered item would die with the only worker holding it). A failed task
    raises its exception here."""
    bar = tqdm(
        total=len(items),
        desc=desc,
        unit=desc.rstrip("s"),
        disable=None if progress is None else not progress,
    )
    with bar:
        if client is None:
            results = []
            for item in items:
                results.append(function(mechanism, item))
                bar.update()
            return results
        from distributed import as_completed

        carried = _shipped(client, mechanism)
        token = uuid.uuid4().hex
        futures = [
            client.submit(
                _task, function, carried, item, key=f"densitydp-{function.__name__}-{token}-{i}"
            )
            for i, item in enumerate(items)
        ]
        try:
            for future in as_completed(futures, loop=client.loop):
                if future.status == "error":
                    future.result()  # raises the task's exception; the rest are cancelled
                bar.update()
            return client.gather(futures)
        finally:
            client.cancel(futures)


def _task(function: Callable[[Any, Any], Any], mechanism: Any, item: Any) -> Any:
    return function(_on_worker(mechanism), item)


# ----------------------------------------------------------------------------- checks


def _check_policy(
    policy: dict[str, Any], allowed: frozenset[str], where: str, mechanism: Any
) -> None:
    """Refuse an option ``where`` does not take, and a bad value of one it takes, here and
    now (not in a task on a worker, nor when a lazy frame is computed)."""
    unknown = sorted(set(policy) - allowed)
    if unknown:
        raise TypeError(
            f"unexpected option(s) {', '.join(f'`{name}`' for name in unknown)}; the options of "
            f"{where} passed on are {', '.join(f'`{name}`' for name in sorted(allowed))}."
        )
    _check_mechanism(mechanism)
    text_options = {k: v for k, v in policy.items() if k in _TEXT_POLICY}
    perturb_texts([], mechanism, rng=0, **text_options)  # checks the codec's options
    if "batch_lines" in policy:
        check_int(policy["batch_lines"], "batch_lines", minimum=1)
    if "encoding" in policy:
        import codecs

        try:
            codecs.lookup(policy["encoding"])
        except (LookupError, TypeError):
            raise ValueError(
                f"`encoding` must name a text encoding Python knows; got {policy['encoding']!r}."
            ) from None


def _check_column(frame: Any, column: Any) -> None:
    if column not in frame.columns:
        raise KeyError(
            f"`column` {column!r} is not a column of `frame`; its columns are "
            f"{list(frame.columns)!r}."
        )
    if list(frame.columns).count(column) > 1:
        raise ValueError(f"`column` {column!r} names several columns of `frame`.")


def _merged(
    reports: list[PerturbationReport], offsets: list[int], seeds: PartitionSeeds
) -> PerturbationReport:
    """One report for a job's partitions: counts added, claims maximised (``worst_text``
    shifted by the partition's first row), the parent's seed."""
    first = reports[0]
    merged = PerturbationReport(
        mechanism=first.mechanism,
        guarantee=first.guarantee,
        unknown=first.unknown,
        mask_token=first.mask_token,
        seed=seeds.parent_seed(),
        complete=all(report.complete for report in reports),
    )
    for report, offset in zip(reports, offsets, strict=True):
        merged.n_texts += report.n_texts
        merged.n_tokens += report.n_tokens
        merged.n_perturbed += report.n_perturbed
        merged.n_changed += report.n_changed
        merged.n_unknown += report.n_unknown
        merged.one_word_epsilon = max(merged.one_word_epsilon, report.one_word_epsilon)
        merged.one_word_delta = max(merged.one_word_delta, report.one_word_delta)
        merged.all_words_delta = max(merged.all_words_delta, report.all_words_delta)
        if report.worst_text >= 0 and report.all_words_epsilon > merged.all_words_epsilon:
            merged.all_words_epsilon = report.all_words_epsilon
            merged.worst_text = offset + report.worst_text
    return merged
