"""The package's lazy names: three lists in ``densitydp/__init__.py`` (the imports type
checkers see, ``_EXPORTS`` for run time, ``__all__``) must name the same things."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import densitydp as dd

INIT = Path(dd.__file__)


def _type_checking_imports() -> dict[str, str]:
    """Name -> submodule of the ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def test_the_three_name_lists_agree():
    assert _type_checking_imports() == dd._EXPORTS
    assert set(dd.__all__) == set(dd._EXPORTS) | {"__version__", "testing"}


def test_every_public_name_resolves_to_its_submodule_object():
    for name, module_name in dd._EXPORTS.items():
        module = importlib.import_module(f"densitydp.{module_name}")
        assert getattr(dd, name) is getattr(module, name), name
    import densitydp.audit.broken  # noqa: F401 - the submodule named like the function

    assert callable(dd.audit) and dd.audit.__name__ == "audit"
