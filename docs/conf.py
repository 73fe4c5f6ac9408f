"""Sphinx configuration: Markdown pages (MyST through myst-nb), the tutorial notebooks (copied
from ../notebooks at build time, shown without executing them: the test suite executes them),
and the API reference from numpydoc docstrings. Build with ``make docs``; warnings are errors.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import densitydp

HERE = Path(__file__).resolve().parent

project = "densitydp"
author = "densitydp developers"
copyright = "2026, densitydp developers"  # noqa: A001
version = release = densitydp.__version__

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
]
# .rst first: autosummary writes its generated API pages with the first suffix
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"
html_theme = "alabaster"
html_title = "densitydp"
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
suppress_warnings = ["myst.header"]

# the notebooks live in ../notebooks (executed by the tests); show them here as they are stored
_notebooks = HERE / "notebooks"
_notebooks.mkdir(exist_ok=True)
for notebook in sorted((HERE.parent / "notebooks").glob("*.ipynb")):
    shutil.copyfile(notebook, _notebooks / notebook.name)
