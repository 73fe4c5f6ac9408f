"""How densitydp runs numba: the threading layer, forks, threads and the compile cache.

Imported first by the package (before numba, where it can be), it decides three things once per
process; :mod:`densitydp._jit` applies them to every kernel. ``docs/development.md`` ("Runtime:
threads, processes, caches") has the reasoning and the measurements.

Threading layer
    numba runs ``prange`` loops on one of three layers; none is both fork- and thread-safe
    everywhere except TBB. GNU OpenMP (``omp``, numba's usual pick on Linux) is thread-safe but
    not fork-safe: a process forked after a parallel kernel ran is killed by numba on its first
    parallel kernel ("fork() called from a process already using GNU OpenMP"), so a fork
    ``multiprocessing.Pool`` waits forever. ``workqueue`` is fork-safe but aborts the process
    when two threads launch parallel kernels at once. ``tbb`` is both, but a pip-installed
    ``tbb`` puts ``libtbb`` in ``<prefix>/lib``, where the loader does not look, so numba skips it
    in a virtual environment. Hence:

    * ``NUMBA_THREADING_LAYER`` (or ``numba.config.THREADING_LAYER``) set by the user wins;
    * otherwise ``tbb`` if it loads (we load ``libtbb`` from the ``tbb`` wheel first, which makes
      numba's own loader find it; the wheel is a dependency where it exists), else
      ``workqueue``. The choice is written to ``NUMBA_THREADING_LAYER`` so that it also holds
      after numba re-reads its environment and in child processes.

Threads
    Calls into parallel kernels are serialised by a process-wide lock while the layer in use is
    (or may become, before the first launch) ``workqueue``; with ``tbb`` or ``omp`` threads call
    the kernels concurrently. Results never depend on it: tasks own their generators.

Forks
    ``os.register_at_fork`` renews the lock in the child (a fork while another thread held it
    would otherwise deadlock the child). A child forked from a process that ran GNU OpenMP
    kernels runs every parallel kernel through a serial compilation of the same function
    (compiled in memory on first use in that child): same outputs, no OpenMP. ``tbb`` and
    ``workqueue`` children keep their parallel kernels.

Compile cache
    numba unpickles its cache files on load, so whoever can write the cache folder runs code in
    every process that loads it. Kernels are cached only in a private folder:
    ``platformdirs.user_cache_dir("densitydp")/numba-py<major>.<minor>-<digest of the package's
    sources>`` (numba checks a cached kernel against its own file only), created 0700 (its
    parent too), used only if it is a directory owned by the current user that neither group nor
    others can write (the same holds for its parent, which could otherwise swap it), and
    writable; it is then given to numba as ``NUMBA_CACHE_DIR``. A folder that fails these checks
    is refused with a :class:`~densitydp.CacheWarning` naming it and the reason, and the
    kernels are compiled in memory (``cache=False``: slower start, same results). So is a home
    that cannot be written (read-only installs): ``cache=True`` would raise "no locator
    available" at import. ``NUMBA_CACHE_DIR`` set by the user (or ``numba.config.CACHE_DIR``
    set before the import) is used under the same rule: a directory owned by the current user
    that neither group nor others can write; otherwise our kernels are compiled in memory with
    a :class:`~densitydp.CacheWarning` (the variable is left as it is for other packages).
    numba's fallback locations
    (``__pycache__`` beside the sources, ``~/.cache/numba``) are never used for our kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib
import os
import stat
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

__all__ = ["CACHE_ENV", "LAYER_ENV", "default_cache_dir", "settings"]

LAYER_ENV = "NUMBA_THREADING_LAYER"
CACHE_ENV = "NUMBA_CACHE_DIR"
#: Oldest TBB that numba accepts (TBB_INTERFACE_VERSION 12060, TBB 2021 update 6).
_TBB_INTERFACE_MIN = 12060
_TBB_LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}


@dataclass
class Settings:
    """What this process decided (read by :mod:`densitydp._jit` and the tests)."""

    #: The layer requested from numba ("tbb", "workqueue", or the user's value).
    threading_layer: str = "default"
    #: Where the layer came from: "user" (environment / numba.config) or "densitydp".
    layer_source: str = "densitydp"
    #: Whether libtbb could be loaded (a numba-compatible version).
    tbb_available: bool = False
    #: The numba cache folder in use, or None (kernels compiled in memory).
    cache_dir: Path | None = None
    #: Where the cache folder came from: "user" (NUMBA_CACHE_DIR) or "densitydp".
    cache_source: str = "densitydp"
    #: Why the cache is not used (None when it is).
    cache_refused: str | None = None
    #: Serialises calls into parallel kernels while the layer may be workqueue.
    lock: Any = field(default_factory=threading.RLock)
    #: True once the loaded layer is known not to need the lock.
    lock_free: bool = False
    #: True in a child forked from a process that ran GNU OpenMP kernels.
    serial: bool = False
    pending_warnings: list[str] = field(default_factory=list)


settings = Settings()


def default_cache_dir() -> Path:
    """The private numba cache folder of densitydp for this Python version and these sources.

    The name carries a digest of the package's source files: numba checks a cached function
    against its own file only, so a kernel that calls a kernel of another module kept the old
    callee compiled in after that module changed (an edited or partly upgraded install ran
    stale machine code). Other sources, other folder: every kernel compiles afresh.
    """
    version = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    return Path(platformdirs.user_cache_dir("densitydp")) / f"numba-{version}-{source_digest()}"


def source_digest(root: Path | None = None) -> str:
    """16 hex digits of a BLAKE2 digest of every ``.py`` file under ``root`` (default: this
    package; relative path and bytes, in sorted order); about 2 ms."""
    root = Path(__file__).resolve().parent if root is None else root
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# compile cache


def _unsafe(folder: Path) -> str | None:
    """Why ``folder`` must not hold code we load (None if it is private to us)."""
    info = folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"is owned by another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _check_writable(folder: Path) -> None:
    # numba's own test (caching._CacheLocator.ensure_cache_path)
    tempfile.TemporaryFile(dir=folder).close()


def _private_cache_dir() -> tuple[Path | None, str | None]:
    """The private folder, created if needed, or None and the reason it cannot be used."""
    folder = default_cache_dir()
    try:
        for path in (folder.parent, folder):
            with contextlib.suppress(FileExistsError):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.mkdir(mode=0o700)
            reason = _unsafe(path)
            if reason is not None:
                where = "" if path == folder else f" (its parent {path})"
                return None, f"numba cache folder {folder}{where} {reason}"
        _check_writable(folder)
    except OSError as exc:
        return None, f"numba cache folder {folder} cannot be used ({exc})"
    return folder.resolve(), None


def _configure_cache() -> None:
    configured = os.environ.get(CACHE_ENV)
    numba = sys.modules.get("numba")
    if not configured and numba is not None and numba.config.CACHE_DIR:
        configured = str(numba.config.CACHE_DIR)  # set in code before densitydp was imported
    if configured and Path(configured) != default_cache_dir().resolve():
        # the user's folder: the same rule as ours (numba unpickles what it finds there)
        settings.cache_source = "user"
        folder = Path(configured)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            reason = _unsafe(folder)
            if reason is None:
                _check_writable(folder)
        except OSError as exc:
            settings.cache_refused = f"NUMBA_CACHE_DIR {folder} cannot be used ({exc})"
        else:
            if reason is None:
                settings.cache_dir = folder
            else:
                settings.cache_refused = f"NUMBA_CACHE_DIR {folder} {reason}"
    else:
        # ours (possibly inherited from a parent process): checked every time
        settings.cache_dir, settings.cache_refused = _private_cache_dir()
    if settings.cache_dir is not None:
        os.environ[CACHE_ENV] = str(settings.cache_dir)
    else:
        # never let numba fall back to __pycache__ or a refused folder for our kernels
        if settings.cache_source == "densitydp":
            os.environ.pop(CACHE_ENV, None)
        settings.pending_warnings.append(
            f"{settings.cache_refused}; densitydp's numba kernels are compiled in memory "
            "(not cached). Set NUMBA_CACHE_DIR to a folder only you can write to cache them."
        )


# ---------------------------------------------------------------------------------------------
# threading layer


def _load_tbb() -> bool:
    """Load a numba-compatible libtbb (the ``tbb`` wheel's first, then the system's)."""
    name = _TBB_LIBRARY.get(sys.platform)
    if name is None:
        return False
    candidates: list[str] = []
    with contextlib.suppress(Exception):
        from importlib import metadata

        for file in metadata.distribution("tbb").files or ():
            if file.name == name:
                candidates.append(str(file.locate()))
    candidates.append(name)
    for candidate in candidates:
        try:
            library = ctypes.CDLL(candidate, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            version = int(library.TBB_runtime_interface_version())
        except (OSError, AttributeError):
            continue
        return version >= _TBB_INTERFACE_MIN
    return False


def _configure_threading_layer() -> None:
    user_layer = os.environ.get(LAYER_ENV, "").strip().lower()
    numba = sys.modules.get("numba")
    if not user_layer and numba is not None:
        configured = str(numba.config.THREADING_LAYER).lower()
        if configured != "default":
            user_layer = configured
    # also a user's "tbb", "safe" or "default" needs libtbb loaded to be found in a venv
    if user_layer in ("", "tbb", "safe", "threadsafe", "forksafe", "default"):
        settings.tbb_available = _load_tbb()
    if settings.tbb_available:
        try:
            importlib.import_module("numba.np.ufunc.tbbpool")
        except ImportError:
            settings.tbb_available = False
    if user_layer:
        settings.threading_layer, settings.layer_source = user_layer, "user"
        return
    settings.threading_layer = "tbb" if settings.tbb_available else "workqueue"
    os.environ[LAYER_ENV] = settings.threading_layer
    import numba as numba_module

    numba_module.config.THREADING_LAYER = settings.threading_layer  # type: ignore[attr-defined]


def _apply_cache_to_numba() -> None:
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.config.CACHE_DIR = os.environ.get(CACHE_ENV, "")


# ---------------------------------------------------------------------------------------------
# threads and forks


def parallel_call_lock() -> Any:
    """The lock to hold while calling a parallel kernel, or None when none is needed."""
    if settings.lock_free:
        return None
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel launched yet: the first launch picks the layer
        return settings.lock
    settings.lock_free = layer != "workqueue"
    return None if settings.lock_free else settings.lock


def _gnu_openmp_launched() -> bool:
    numba = sys.modules.get("numba")
    if numba is None:
        return False
    try:
        if numba.threading_layer() != "omp":
            return False
        from numba.np.ufunc import omppool  # type: ignore[attr-defined]
    except (ValueError, ImportError):
        return False
    return getattr(omppool, "openmp_vendor", "") == "GNU"


def _after_fork_in_child() -> None:
    settings.lock = threading.RLock()
    if _gnu_openmp_launched():
        settings.serial = True


def emit_warnings() -> None:
    """Issue the warnings decided at import (called once the package's classes exist)."""
    if not settings.pending_warnings:
        return
    from .neighbors import CacheWarning

    messages, settings.pending_warnings = settings.pending_warnings, []
    for message in messages:
        warnings.warn(message, CacheWarning, stacklevel=3)


def _configure() -> None:
    _configure_cache()
    _configure_threading_layer()
    _apply_cache_to_numba()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


_configure()
