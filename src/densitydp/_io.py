"""File helpers: outputs are written atomically, so a failure never leaves a partial file.

:func:`atomic_write` writes a regular file through a temporary file beside it, renamed into
place only when the block succeeds. The temporary file is named
``.<name>.densitydp-<pid>-<random>.tmp``; it is removed on any exception and on SIGTERM, SIGHUP
and SIGINT while the block runs (the signal then takes its usual course), and a leftover of a
process that no longer exists (killed with SIGKILL, or a power cut) is removed by the next
:func:`atomic_write` into the same folder. A symlink is written through (its target is
replaced, the link stays); a FIFO, a character device (``/dev/null``, a terminal) or another
non-regular file is opened and written directly, never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

#: The signals whose default action would leave a temporary file behind.
CLEANUP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name)
)
_TEMPORARY = re.compile(r"\A\..*\.densitydp-(\d+)-[A-Za-z0-9_]+\.tmp\Z", re.DOTALL)


class WriteError(OSError):
    """Writing an output failed; the message names the user's path (never a temporary file)."""


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "wb", *, tag: str = "", **open_options: Any
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it is replaced only if the block succeeds.

    A regular (or not yet existing) file is written to a temporary file beside it and renamed
    into place at the end; on any exception, and on SIGTERM / SIGHUP / SIGINT, the temporary
    file is removed and ``path`` is left as it was. A symlink is written through to its target.
    A FIFO or a device is opened directly (it cannot be replaced, and must not be). An
    ``OSError`` of the write (a full disk, a permission) is raised as :class:`WriteError`
    naming ``path``. ``tag`` (letters and digits) marks the temporary file's name as one
    job's (:func:`temporaries_of`).
    """
    if tag and not (tag.isascii() and tag.isalnum()):
        raise ValueError(f"`tag` must be letters and digits; got {tag!r}.")
    given = os.fspath(path)
    target = Path(os.path.realpath(given))  # a symlink is written through
    try:
        mode_bits = os.stat(target).st_mode
    except FileNotFoundError:
        mode_bits = None
    except OSError as exc:
        raise _named(exc, given) from None
    if mode_bits is not None and not stat.S_ISREG(mode_bits):
        if stat.S_ISDIR(mode_bits):
            raise _named(IsADirectoryError(errno.EISDIR, "is a folder"), given)
        try:  # a FIFO, a character device: written directly
            stream = open(target, mode, **open_options)  # noqa: SIM115
        except OSError as exc:
            raise _named(exc, given) from None
        try:
            with stream:
                try:
                    yield stream
                except OSError as exc:
                    raise _named(exc, given) if _of_the_write(exc, str(target)) else exc from None
        except OSError as exc:  # flushing on close
            raise _named(exc, given) if _of_the_write(exc, str(target)) else exc from None
        return
    folder = target.parent
    remove_stale_temporaries(folder)
    try:
        handle, temporary = tempfile.mkstemp(
            dir=folder,
            prefix=f".{target.name[:160]}.densitydp-{os.getpid()}-{tag}",
            suffix=".tmp",
        )
    except OSError as exc:
        raise _named(exc, given) from None
    try:
        with _removed_on_signals(temporary):
            try:
                with os.fdopen(handle, mode, **open_options) as stream:
                    yield stream
                # mkstemp creates the file 0600: give it the mode a plain open() would have
                # (the existing file's mode, or 0666 less the umask)
                os.chmod(temporary, _file_mode(target))
                os.replace(temporary, target)
            except OSError as exc:
                raise _named(exc, given) if _of_the_write(exc, temporary) else exc from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


#: errno values that only a write raises (a full disk, a quota, a file too large, a read-only
#: file system, a closed pipe): reported as a failure to write the output.
_WRITE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EPIPE", "EACCES", "EPERM")
    if hasattr(errno, name)
)


def _of_the_write(exc: OSError, written: str) -> bool:
    """Whether ``exc`` (raised inside the ``with`` block or when closing) comes from writing
    the output: it names the file written, or it has no file name and a write's errno."""
    if isinstance(exc, WriteError):
        return False
    if exc.filename is not None:
        return os.fspath(exc.filename) == written
    return exc.errno in _WRITE_ERRNOS


def _named(exc: OSError, path: str) -> WriteError:
    """``exc`` as a :class:`WriteError` whose message names ``path``, not a temporary file."""
    if isinstance(exc, WriteError):
        return exc
    reason = exc.strerror or str(exc) or type(exc).__name__
    error = WriteError(exc.errno or 0, f"cannot write {path!r}: {reason}")
    error.filename = path
    return error


@contextlib.contextmanager
def _removed_on_signals(temporary: str) -> Iterator[None]:
    """While the block runs, SIGTERM / SIGHUP / SIGINT remove ``temporary`` first, then take
    their course (the previous Python handler runs; a default action is re-raised, so the
    process ends as killed by that signal: exit status 128 + n in a shell). Ignored signals
    stay ignored; outside the main thread nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        before = previous.get(signum, signal.SIG_DFL)
        if callable(before):  # e.g. Python's SIGINT handler: its KeyboardInterrupt unwinds
            before(signum, frame)  # the block, which removes the temporary file
            return
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        _restore(previous)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for signum in CLEANUP_SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN or current is None:
            continue  # nohup: an ignored signal stays ignored
        previous[signum] = current
        signal.signal(signum, handler)
    try:
        yield
    finally:
        _restore(previous)


def _restore(previous: dict[int, Any]) -> None:
    for signum, before in list(previous.items()):
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signum, before)
    previous.clear()


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files of :func:`atomic_write` in ``folder`` whose process no longer
    exists (a run killed with SIGKILL); return their names. Only regular files of this user
    named ``.<name>.densitydp-<pid>-<random>.tmp`` are touched."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or _alive(pid):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def temporaries_of(path: str | os.PathLike[str], tag: str = "") -> list[str]:
    """The temporary files of :func:`atomic_write` for ``path`` in its folder, of any process
    (regular files of this user only), those written with ``tag`` only when one is given:
    once ``path`` is known to be complete, they are leftovers of killed writers, wherever
    those ran (e.g. workers of a cluster on shared storage, whose process ids mean nothing
    here); a tag keeps another job's live temporary file out."""
    target = Path(os.path.realpath(os.fspath(path)))
    prefix = f".{target.name[:160]}.densitydp-"
    found: list[str] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith(prefix) or _TEMPORARY.match(entry.name) is None:
            continue
        rest = entry.name[len(prefix) :]
        if not re.fullmatch(rf"\d+-{re.escape(tag)}[A-Za-z0-9_]+\.tmp", rest):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
            found.append(entry.path)
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process (or an unknown answer): keep the file
    return True


def _file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def figure_format(path: str | os.PathLike[str], what: str | None = None) -> str:
    """The format a figure saved to ``path`` is written in: its suffix (``png`` when it has
    none), if matplotlib writes it; otherwise a ValueError naming ``what`` (default: the path)
    and the formats matplotlib writes. Cheap: checked before the work that makes the figure."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix not in supported:
        named = what if what is not None else repr(os.fspath(path))
        raise ValueError(
            f"{named}: a figure cannot be saved as {suffix!r}; give a file name ending in one "
            f"of {', '.join('.' + name for name in sorted(supported))}."
        )
    return suffix


def save_figure(figure: Any, path: str | os.PathLike[str]) -> None:
    """Save a matplotlib figure atomically, in the format of the file's suffix (png default;
    an unsupported suffix is refused before anything is written)."""
    suffix = figure_format(path)
    with atomic_write(path, "wb") as stream:
        figure.savefig(stream, format=suffix, bbox_inches="tight")


def axes_and_figure(ax: Any, n_axes: int = 1, **figure_options: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` for a plot on ``n_axes`` panels: the given matplotlib ``ax`` (one
    Axes, or a sequence of ``n_axes`` of them) and its figure, or a new figure
    (``figure_options`` go to :func:`matplotlib.pyplot.subplots`). ``axes`` is one Axes when
    ``n_axes`` is 1, else a list.

    Raises
    ------
    TypeError
        ``ax`` is not a matplotlib Axes (or not ``n_axes`` of them).
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.axes import Axes

    if ax is None:
        figure, axes = plt.subplots(1, n_axes, **figure_options)
        return figure, (axes if n_axes == 1 else list(axes))
    given = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(given) != n_axes or not all(isinstance(a, Axes) for a in given):
        what = "a matplotlib Axes" if n_axes == 1 else f"{n_axes} matplotlib Axes"
        raise TypeError(f"`ax` must be {what}; got {type(ax).__name__}.")
    return given[0].figure, (given[0] if n_axes == 1 else given)
