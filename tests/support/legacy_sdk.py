"""Virtualenvs with old `mcp` 1.x releases, so bridging tests run REAL old servers and clients.

One venv per handshake-era protocol revision, holding the newest `mcp` release whose
`mcp.types.LATEST_PROTOCOL_VERSION` is that revision (checked in each release's wheel):

    2024-11-05  mcp 1.8.1   (1.9.0 moved to 2025-03-26; 1.8.0 was the first with streamable HTTP)
    2025-03-26  mcp 1.9.4   (1.10.0 moved to 2025-06-18)
    2025-06-18  mcp 1.23.0  (1.23.1 moved to 2025-11-25)
    2025-11-25  mcp 1.30.0  (the last 1.x; 2.x speaks 2026-07-28 too and is the repo's own SDK)

Every package of a venv is pinned, its dependencies' dependencies too, and installed with
`--no-deps`: a venv is the same on every machine and every day, and no new release of a package
nobody named can break an old SDK. The pins are releases of each SDK's period where it matters:
today's pydantic, for one, no longer has the private helper mcp <= 1.9 imports
(`pydantic._internal._typing_extra.eval_type_backport`).

Venvs live under `<repo>/.tools/legacy-mcp/<version>/` (git-ignored), are built on first use and
reused afterwards; a file lock makes concurrent test processes build each one exactly once. A
venv counts as built only once its marker file holds the exact requirement list, so an
interrupted build or a changed pin rebuilds it.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import run_json_client

__all__ = ["LEGACY_SDKS", "LegacySdk", "legacy_python", "run_legacy_client"]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "legacy-mcp"


@dataclass(frozen=True)
class LegacySdk:
    protocol_version: str
    mcp: str
    pins: tuple[str, ...]

    @property
    def requirements(self) -> tuple[str, ...]:
        return (f"mcp=={self.mcp}", *self.pins)

    @property
    def home(self) -> Path:
        return TOOLS / self.mcp

    @property
    def python(self) -> Path:
        return self.home / "bin" / "python"


def _moved_on(pins: tuple[str, ...], *newer: str) -> tuple[str, ...]:
    """`pins` with each of `newer` in place of the release of the same package, in the same order (the
    venv's marker holds the list as written): an SDK of the next months needs only what moved on."""
    by_name = {pin.partition("==")[0]: pin for pin in newer}
    unknown = by_name.keys() - {pin.partition("==")[0] for pin in pins}
    if unknown:
        raise ValueError(f"no pin to move on for {sorted(unknown)}")
    return tuple(by_name.get(pin.partition("==")[0], pin) for pin in pins)


_MCP_1_8_PINS = (
    "annotated-types==0.8.0",
    "anyio==4.9.0",
    "certifi==2026.10.19.post1",
    "click==8.5.1",
    "h11==0.16.0",
    "httpcore==1.0.9",
    "httpx==0.28.1",
    "httpx-sse==0.4.0",
    "idna==3.20",
    "pydantic==2.11.4",
    "pydantic-settings==2.9.1",
    "pydantic_core==2.33.2",
    "python-dotenv==1.2.4",
    "python-multipart==0.0.20",
    "sniffio==1.3.1",
    "sse-starlette==2.3.5",
    "starlette==0.46.2",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "uvicorn==0.34.2",
)
"""The dependencies of the SDKs from mcp 1.8 (spring 2025)."""

_MCP_1_23_PINS = (
    "annotated-types==0.8.0",
    "anyio==4.12.0",
    "attrs==26.1.0",
    "certifi==2026.10.19.post1",
    "cffi==2.1.1",
    "click==8.5.1",
    "cryptography==50.0.2",
    "h11==0.16.0",
    "httpcore==1.0.9",
    "httpx==0.28.1",
    "httpx-sse==0.4.3",
    "idna==3.20",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "pycparser==3.12",
    "pydantic==2.12.5",
    "pydantic-settings==2.12.0",
    "pydantic_core==2.41.5",
    "PyJWT==2.15.1",
    "python-dotenv==1.2.4",
    "python-multipart==0.0.20",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "sse-starlette==3.0.3",
    "starlette==0.50.0",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "uvicorn==0.38.0",
)
"""The dependencies of the SDKs from mcp 1.23 (autumn 2025), which also need cryptography, PyJWT and jsonschema."""

LEGACY_SDKS: dict[str, LegacySdk] = {
    sdk.protocol_version: sdk
    for sdk in (
        LegacySdk("2024-11-05", "1.8.1", _MCP_1_8_PINS),
        LegacySdk(
            "2025-03-26",
            "1.9.4",
            _moved_on(
                _MCP_1_8_PINS,
                "httpx-sse==0.4.1",
                "pydantic==2.11.7",
                "pydantic-settings==2.10.1",
                "sse-starlette==2.3.6",
                "starlette==0.47.1",
                "uvicorn==0.35.0",
            ),
        ),
        LegacySdk("2025-06-18", "1.23.0", _MCP_1_23_PINS),
        LegacySdk(
            "2025-11-25",
            "1.30.0",
            _moved_on(
                _MCP_1_23_PINS,
                "anyio==4.13.0",
                "pydantic==2.13.5",
                "pydantic-settings==2.13.1",
                "pydantic_core==2.46.5",
                "python-multipart==0.0.26",
                "sse-starlette==3.4.1",
                "starlette==1.0.0",
                "uvicorn==0.46.0",
            ),
        ),
    )
}


def legacy_python(protocol_version: str) -> Path:
    """The python of the venv for `protocol_version`, built first if needed (≈ 3 s of CPU, once)."""
    sdk = LEGACY_SDKS[protocol_version]
    marker = sdk.home / ".bastion-requirements"
    wanted = "\n".join(sdk.requirements) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return sdk.python
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / f"{sdk.mcp}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if marker.exists() and marker.read_text() == wanted:
            return sdk.python
        shutil.rmtree(sdk.home, ignore_errors=True)
        # the base interpreter, not this venv's: the legacy venv must not see the repo's packages.
        # Without a pip of its own (ensurepip costs ~3 s of CPU a venv): this venv's pip installs
        # into it (`--python`), and checks it
        subprocess.run([_base_python(), "-m", "venv", "--without-pip", str(sdk.home)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(sdk.python), "--disable-pip-version-check"]
        env = {**os.environ, "PIP_REQUIRE_VIRTUALENV": "0"}
        subprocess.run([*pip, "install", "--quiet", "--no-deps", *sdk.requirements], check=True, env=env)
        # with --no-deps nothing else notices a dependency the pins forgot
        subprocess.run([*pip, "check"], check=True, env=env)
        marker.write_text(wanted)
    return sdk.python


def _base_python() -> str:
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable


if __name__ == "__main__":  # build them all ahead of a test run: python -m tests.support.legacy_sdk
    for version in LEGACY_SDKS:
        print(version, legacy_python(version))


CLIENT_SCRIPT = Path(__file__).resolve().parent / "legacy_client.py"


async def run_legacy_client(protocol_version: str, url: str, key: str, plan: list[Any]) -> dict[str, Any]:
    """`legacy_client.py` in the venv for `protocol_version` against `url` with `key`: what it
    printed (protocolVersion, serverInfo, tools, calls); see that script for `plan`."""
    python = await asyncio.to_thread(legacy_python, protocol_version)
    argv = [str(python), str(CLIENT_SCRIPT), url, key, json.dumps(plan)]
    return await run_json_client(argv, f"legacy client {protocol_version}")
