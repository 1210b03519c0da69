"""Debian packages the tests need (Chromium for the dashboard, curl for the docs' shell examples):
installed on first use when missing, as root with apt-get, as CI runs; like Node 22 for the
conformance suite. Anywhere else the test fails saying what to install, never skips."""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["debian_binary"]


def debian_binary(name: str, package: str | None = None) -> str:
    """The path of `name` on PATH, installing Debian's `package` (default: `name`) if it is missing."""
    package = package or name
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"{name} is missing: install it with `apt-get install -y {package}` (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env, timeout=900)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"apt-get installed {package} but no `{name}` is on PATH")
    return found
