"""The one numba decorator of the package.

Every kernel is compiled with ``cache=True`` so that the compiled machine code is reused across
processes. numba writes its cache next to the module (``__pycache__``) or, when the environment
variable ``NUMBA_CACHE_DIR`` is set, under that directory; set it when the package directory is
read-only. ``fastmath`` is never enabled: kernels handle ``-inf`` log-probabilities and rely on
IEEE semantics. ``nogil=True`` lets the kernels run beside BLAS threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numba

__all__ = ["function_jit", "jit", "parallel_jit"]


def jit[Function: Callable[..., Any]](function: Function) -> Function:
    """Compile a serial kernel (``@jit``); type checkers see the Python signature."""
    return cast(Function, numba.njit(cache=True, nogil=True, fastmath=False)(function))


def parallel_jit[Function: Callable[..., Any]](function: Function) -> Function:
    """Compile a kernel whose outer loop is a ``numba.prange`` over independent tasks.

    Every task writes only its own output slots and draws from its own generator, so results do
    not depend on the number of threads.
    """
    return cast(
        Function, numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)(function)
    )


def function_jit[Function: Callable[..., Any]](function: Function) -> Function:
    """Compile a kernel that takes compiled functions as arguments (the MCMC drivers).

    Not cached, the one exception to ``cache=True``: numba specialises such a kernel on each
    function it receives and cannot reuse that code in another process, and its cache index
    then holds keys naming functions of other processes, which raised ``ReferenceError`` when a
    later process compared them (seen in this test suite). Compiling in each process is what
    happens anyway.
    """
    return cast(Function, numba.njit(cache=False, nogil=True, fastmath=False)(function))
