"""Helpers the workers of tests/test_distributed.py import (a test module is not importable
by them): a mechanism that counts how often it is unpickled in a process."""

from __future__ import annotations

from typing import Any

import densitydp as dd

#: Times a CountingExponential was unpickled in this process.
LOADS = 0


class CountingExponential(dd.ExponentialMechanism):
    """The exponential mechanism, counting its deserialisations (``LOADS``)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        global LOADS
        LOADS += 1
        self.__dict__.update(state)


def loads() -> int:
    """``LOADS`` of the process this runs in (for ``Client.run``)."""
    return LOADS
