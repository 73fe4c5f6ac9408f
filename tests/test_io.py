"""Atomic writes: nothing partial on failure, and the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from densitydp._io import atomic_write


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def fail() -> None:
        with atomic_write(path, "w") as stream:
            stream.write("new")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail()
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_gives_plain_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        with atomic_write(fresh, "w") as stream:
            stream.write("x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's 0600
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        with atomic_write(kept, "w") as stream:
            stream.write("new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "new"
    finally:
        os.umask(umask)


def test_figure_format_is_checked_before_anything_is_written(tmp_path):
    """An unsupported --plot suffix failed only after the work (Issue 12 review)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from densitydp._io import figure_format, save_figure

    assert figure_format("a.PDF") == "pdf" and figure_format("a") == "png"
    assert figure_format(tmp_path / "b.svg") == "svg"
    with pytest.raises(ValueError, match=r"'x\.bmpx': a figure cannot be saved as 'bmpx'"):
        figure_format("x.bmpx")
    figure = plt.figure()
    try:
        with pytest.raises(ValueError, match="cannot be saved as 'xyz'"):
            save_figure(figure, tmp_path / "out.xyz")
        assert list(tmp_path.iterdir()) == []
    finally:
        plt.close(figure)
