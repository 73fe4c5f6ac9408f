"""The documentation builds with Sphinx without a single warning (``make docs`` does the same)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    pytest.importorskip("numpydoc")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    result = subprocess.run(
        [*command, "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("index", "api", "auditing", "density", "comparison", "mechanisms/gumbel"):
        assert (tmp_path / "html" / f"{page}.html").exists()
    assert (tmp_path / "html" / "api" / "generated" / "densitydp.audit.html").exists()
