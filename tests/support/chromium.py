"""Debian's Chromium, headless, for the dashboard test (installed on first use: `debian.debian_binary`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.debian import debian_binary

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
    return debian_binary("chromium")


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
