"""The worker plugin that carries a mechanism to every worker of a Dask cluster, once (see
:func:`densitydp.distributed._shipped`). Its own module: it subclasses a class of the optional
``distributed``, and the workers must import it by name."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class ShipMechanism(WorkerPlugin):
    """Keep ``mechanism`` in the worker's ``densitydp.distributed._ON_WORKER[name]`` from the
    plugin's registration (or the worker's start) to its removal."""

    def __init__(self, name: str, mechanism: Any) -> None:
        self.name = name
        self.mechanism = mechanism

    def setup(self, worker: Any) -> None:
        from .distributed import _ON_WORKER

        _ON_WORKER[self.name] = self.mechanism

    def teardown(self, worker: Any) -> None:
        from .distributed import _ON_WORKER

        _ON_WORKER.pop(self.name, None)
