"""Every test file says what it needs: a module-level `pytestmark` naming `unit`, `integration` or
`e2e` (pyproject.toml says what each means), so `-m unit` runs in seconds and nothing slow hides in
it. Read from the source (no import), so a file that cannot even be collected is still checked."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
KINDS = {"unit", "integration", "e2e"}


def _kinds(source: str) -> set[str]:
    """The kinds a module's `pytestmark = ...` names: `pytest.mark.<kind>`, alone or in a list."""
    found: set[str] = set()
    for node in ast.parse(source).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets) and node.value is not None:
            for part in ast.walk(node.value):
                if isinstance(part, ast.Attribute) and part.attr in KINDS and ast.unparse(part.value) == "pytest.mark":
                    found.add(part.attr)
    return found


@pytest.mark.parametrize(
    ("source", "kinds"),
    [
        ("import pytest\npytestmark = pytest.mark.unit\n", {"unit"}),
        ("pytestmark = [pytest.mark.e2e, pytest.mark.skipif(True, reason='x')]\n", {"e2e"}),
        ("pytestmark = pytest.mark.slow\n", set()),
        ("def test_x():\n    pytestmark = pytest.mark.unit\n", set()),  # not at module level
        ("@pytest.mark.unit\ndef test_x():\n    pass\n", set()),  # one test, not the file
    ],
)
def test_the_marker_is_read_from_the_module_level(source: str, kinds: set[str]) -> None:
    assert _kinds(source) == kinds


def test_every_test_file_declares_unit_integration_or_e2e() -> None:
    files = sorted(TESTS.rglob("test_*.py"))
    assert len(files) > 100, "the scan found no test files"
    unmarked = [str(path.relative_to(TESTS.parent)) for path in files if not _kinds(path.read_text())]
    assert not unmarked, "add `pytestmark = pytest.mark.unit` (or integration, e2e) to:\n" + "\n".join(unmarked)
