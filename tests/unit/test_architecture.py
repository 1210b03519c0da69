"""The architecture as a test: import names are folder paths, and a service imports only libs.common
and third-party packages."""

import ast
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def _first_party(name: str) -> bool:
    return name.startswith(("libs.", "services.", "cli.", "bastion_")) or name == "cli"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, as its first two dotted parts (`services.policy`, `libs.common`)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(".".join(alias.name.split(".")[:2]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(".".join(node.module.split(".")[:2]))
    return found


def test_every_service_folder_is_found():
    assert {"ingress", "policy", "executor", "codemode", "audit", "oauth"} <= set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service(service):
    others = {f"services.{s}" for s in SERVICES if s != service} | {"cli", "cli.main"}
    for path in (ROOT / "services" / service).rglob("*.py"):
        bad = {name for name in _imports(path) if name in others or name.startswith("cli.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: cross NATS through libs/common instead"


def test_common_imports_no_service():
    for path in (ROOT / "libs" / "common").rglob("*.py"):
        bad = {name for name in _imports(path) if _first_party(name) and not name.startswith("libs.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_import_names_are_folder_paths():
    """No package-dir map: the packaging finds `libs`, `services` and `cli` where they stand, so an
    import names the folder to open and the type checker needs no links."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    assert "package-dir" not in setuptools
    assert setuptools["packages"]["find"]["include"] == ["libs*", "services*", "cli*"]
    for folder in ("libs", "libs/common", "services", "cli", *(f"services/{s}" for s in SERVICES)):
        assert (ROOT / folder / "__init__.py").exists(), folder
    first_party = set()
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("libs").rglob("*.py")]:
        first_party |= {n for n in _imports(path) if _first_party(n)}
    assert not {n for n in first_party if n.startswith("bastion_")}, "an import under an old package name"
    for name in first_party:
        assert (ROOT / name.replace(".", "/")).exists() or (ROOT / (name.replace(".", "/") + ".py")).exists(), name


def test_subject_strings_live_in_one_module():
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]:
        assert '"bastion.' not in path.read_text(), f"{path.relative_to(ROOT)}: use libs.common.contracts.subjects"


def _roles_connected_as(service: str) -> set[str]:
    """The NATS roles a service's code connects as (`role=permissions.<ROLE>` in its calls)."""
    found: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg != "role":
                        continue
                    if isinstance(keyword.value, ast.Attribute):  # role=permissions.INGRESS
                        found.add(keyword.value.attr)
                    elif isinstance(keyword.value, ast.Name) and keyword.value.id.isupper():  # role=ADMIN
                        found.add(keyword.value.id)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_connects_as_its_own_role_and_only_admin_holds_the_admin_role(service):
    """The admin role writes keys, servers and policy: the public ingress (or any other service) holding
    it would put those credentials on every internet-facing replica."""
    assert _roles_connected_as(service) == {service.upper()}, f"services/{service} connects as another role"


def test_ingress_has_no_admin_setting():
    from libs.common.settings import IngressSettings

    leaked = [name for name in IngressSettings.model_fields if "admin" in name or "analyst" in name]
    assert not leaked, f"IngressSettings.{leaked}: admin credentials belong to the admin service (AdminSettings)"
