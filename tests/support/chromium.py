"""Debian's Chromium, headless, for the dashboard test: installed on first use when missing (as root,
as CI runs), like Node 22 for the conformance suite."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["chromium", "dump_dom", "screenshot"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The chromium binary; installs the Debian package if it is missing and we may (root, apt-get)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError("chromium is missing: install it with `apt-get install -y chromium` (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900)
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("apt-get installed chromium but no `chromium` is on PATH")
    return found


async def _run(url: str, profile: Path, *extra: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        chromium(),
        *FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",  # lets the page's fetches and rendering finish before the dump
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {stderr.decode(errors='replace')[-2000:]}")
    return stdout.decode()


async def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (a fresh profile each call)."""
    return await _run(url, profile, "--dump-dom")


async def screenshot(url: str, profile: Path, target: Path, width: int = 1400, height: int = 1700) -> Path:
    await _run(url, profile, f"--screenshot={target}", f"--window-size={width},{height}")
    return target
