"""The one numba decorator module of the package.

Kernels are compiled with ``cache=True``: compiled machine code is reused across processes. The
cache lives only in a private folder (``platformdirs.user_cache_dir("densitydp")/numba-py3.X``,
0700, owned by the user, refused if group or others can write it) or in ``$NUMBA_CACHE_DIR`` when
the user sets it (under the same rule): numba *unpickles* its cache
files on load, so whoever can write the cache folder runs code in our process. numba's own
fallbacks (``__pycache__`` beside the sources, ``~/.cache/numba``) are never used. When no such
folder can be used (a read-only home, an unsafe folder) the kernels are compiled in memory
(``cache=False``) and a :class:`~densitydp.CacheWarning` says why; ``cache=True`` would raise
"no locator available" at import there. The decision is made once, at import, by
:mod:`densitydp._runtime`.

Parallel kernels (``@parallel_jit``) are wrapped so that they never hang or abort the process:

* numba's threading layer is ``tbb`` when it loads, else ``workqueue``, unless the user chose one
  (``NUMBA_THREADING_LAYER``); see :mod:`densitydp._runtime`;
* while the layer is (or may still become) ``workqueue``, which aborts when two threads launch
  parallel kernels at once, calls are serialised by a process-wide lock;
* in a process forked from one that ran GNU OpenMP kernels (``omp`` chosen by the user), which
  numba would kill on its first parallel kernel, the kernel's function runs through a serial
  compilation instead (same outputs: every task owns its generator).

``fastmath`` is never enabled: kernels handle ``-inf`` log-probabilities and rely on IEEE
semantics. ``nogil=True`` lets the kernels run beside BLAS threads and Python threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import numba

# already run by the package's __init__, before numba was imported: it set numba's threading
# layer and cache folder through their environment variables
from . import _runtime

__all__ = ["CACHE", "ParallelKernel", "function_jit", "jit", "parallel_jit"]

#: Whether kernels are cached on disk (decided once at import, see the module docstring).
CACHE: bool = _runtime.settings.cache_dir is not None


def jit[Function: Callable[..., Any]](function: Function) -> Function:
    """Compile a serial kernel (``@jit``); type checkers see the Python signature."""
    return cast(Function, numba.njit(cache=CACHE, nogil=True, fastmath=False)(function))


class ParallelKernel:
    """A ``parallel=True`` kernel, callable from Python like its dispatcher (see the module).

    Attributes not defined here (``py_func``, ``signatures`` ...) are the dispatcher's.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.dispatcher = numba.njit(cache=CACHE, nogil=True, fastmath=False, parallel=True)(
            function
        )
        self.__wrapped__ = function
        self.__name__ = function.__name__
        self.__qualname__ = function.__qualname__
        self.__doc__ = function.__doc__
        self.__module__ = function.__module__
        self._serial: Any = None
        self._serial_lock = threading.Lock()

    def serial(self) -> Any:
        """The same function compiled without ``parallel`` (in memory: numba's cache index
        does not tell a serial compilation from the parallel one of the same function)."""
        if self._serial is None:
            with self._serial_lock:
                if self._serial is None:
                    self._serial = numba.njit(cache=False, nogil=True, fastmath=False)(
                        self.__wrapped__
                    )
        return self._serial

    def __call__(self, *args: Any) -> Any:
        if _runtime.settings.serial:
            return self.serial()(*args)
        lock = _runtime.parallel_call_lock()
        if lock is None:
            return self.dispatcher(*args)
        with lock:
            return self.dispatcher(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["dispatcher"], name)

    def __repr__(self) -> str:
        return f"<parallel kernel {self.__module__}.{self.__qualname__}>"


def parallel_jit[Function: Callable[..., Any]](function: Function) -> Function:
    """Compile a kernel whose outer loop is a ``numba.prange`` over independent tasks.

    Every task writes only its own output slots and draws from its own generator, so results do
    not depend on the number of threads (nor on the serial fallback of forked children).
    Callable from Python only, not from other kernels.
    """
    return cast(Function, ParallelKernel(function))


def function_jit[Function: Callable[..., Any]](function: Function) -> Function:
    """Compile a kernel that takes compiled functions as arguments (the MCMC drivers).

    Not cached, the one exception to ``cache=True``: numba specialises such a kernel on each
    function it receives and cannot reuse that code in another process, and its cache index
    then holds keys naming functions of other processes, which raised ``ReferenceError`` when a
    later process compared them (seen in this test suite). Compiling in each process is what
    happens anyway.
    """
    return cast(Function, numba.njit(cache=False, nogil=True, fastmath=False)(function))
