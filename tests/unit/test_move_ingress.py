"""tools/move_ingress.py, ingress grouped by concern: every module it names is where it says, and
ingress's imports stay absolute, so a later run of the move finds every old name (its rewrites and
the check that no file names an old module are in test_move_libs.py, beside the libs move's)."""

import ast

import pytest

from tools.move_ingress import INGRESS, MOVES, PACKAGES

pytestmark = pytest.mark.unit


def test_every_moved_ingress_module_is_where_the_mapping_says():
    for new in MOVES.values():
        assert (INGRESS / new.replace(".", "/")).with_suffix(".py").exists(), new
    for old in MOVES:
        assert not (INGRESS / f"{old}.py").exists(), f"services/ingress/{old}.py is still at the top level"
    for package in PACKAGES:
        assert (INGRESS / package / "__init__.py").exists(), package


def test_ingress_imports_are_absolute():
    """A relative import would dodge the move's rewrite (`from ..request_path import`): the move
    makes them absolute, and they stay so."""
    for path in INGRESS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        relative = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{path}:{relative}: a relative import (run tools/move_ingress.py)"
