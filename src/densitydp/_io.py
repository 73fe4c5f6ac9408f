"""File helpers: outputs are written atomically, so a failure never leaves a partial file."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "wb", **open_options: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it to ``path`` only if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **open_options) as stream:
            yield stream
        # mkstemp creates the file 0600: give it the mode a plain open() would have (the
        # existing file's mode, or 0666 less the umask)
        os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save_figure(figure: Any, path: str | os.PathLike[str]) -> None:
    """Save a matplotlib figure atomically, in the format of the file's suffix (png default)."""
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    with atomic_write(path, "wb") as stream:
        figure.savefig(stream, format=suffix, bbox_inches="tight")
