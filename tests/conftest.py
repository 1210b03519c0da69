"""Shared fixtures: real servers on free ports, fresh for each test that asks for one.

nats-server starts in ~50 ms and Valkey in ~100 ms, so isolation per test is cheaper than
reasoning about state shared between tests.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import httpx2
import pytest

from cli.stack import EmbeddedNats, EmbeddedValkey

pytest_plugins = [
    "tests.support.admin_api",  # `ingress` and `api`: the admin API in-process
    "tests.support.hang_report",  # what asyncio tasks wait on when a test nears its timeout
    "tests.support.nats_leaks",  # a module that leaves a NATS client open fails, not the session's end
    "tests.support.secured_bus",  # `creds` and `secured_nats`: the bus with `bastion up`'s permissions
]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

Server = TypeVar("Server", EmbeddedNats, EmbeddedValkey)


def _running(server: Server) -> Iterator[Server]:
    """A fixture's body for an embedded server: started for the test, stopped after it."""
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    yield from _running(EmbeddedNats(tmp_path / "nats"))


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    yield from _running(EmbeddedValkey(tmp_path / "valkey"))


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture
def redis_url(valkey_server: EmbeddedValkey) -> str:
    return valkey_server.url


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    """A plain HTTP client, for the raw requests a test sends to a gateway."""
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def tool_schemas_dir() -> Path:
    """The 16 real `tools/list` dumps the repository carries; missing data fails loudly, never as an empty list."""
    folder = DATA / "tool-schemas"
    found = sorted(folder.glob("*.json"))
    if len(found) != 16:
        pytest.fail(f"expected the 16 real tool schemas in {folder}, found {len(found)}: the test data is missing")
    return folder
