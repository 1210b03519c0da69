"""The architecture as a test: a service imports only bastion_common and third-party packages."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ingress", "policy", "executor", "codemode", "audit", "oauth"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service(service):
    others = {f"bastion_{s}" for s in SERVICES if s != service} | {"bastion_cli"}
    for path in (ROOT / "services" / service).rglob("*.py"):
        bad = _imports(path) & others
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: cross NATS through libs/common instead"


def test_common_imports_no_service():
    forbidden = {f"bastion_{s}" for s in SERVICES} | {"bastion_cli"}
    for path in (ROOT / "libs" / "common").rglob("*.py"):
        assert not (_imports(path) & forbidden), path


def test_subject_strings_live_in_one_module():
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]:
        assert '"bastion.' not in path.read_text(), f"{path.relative_to(ROOT)}: use bastion_common.subjects"
