"""Shared fixtures: real servers on free ports, fresh for each test that asks for one.

nats-server starts in ~50 ms and Valkey in ~100 ms, so isolation per test is cheaper than
reasoning about state shared between tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import httpx2
import nats
import pytest
from nats.aio.client import Client as NATS
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.stack import EmbeddedNats, EmbeddedValkey
from libs.common.runtime import tracing
from libs.common.web.guarded_http import shared_tls

pytest_plugins = [
    "tests.support.admin_api",  # `ingress`, `api` and `admin_pages`: the admin API in-process
    "tests.support.cpu_report",  # BASTION_TEST_CPU_REPORT=<folder>: CPU per test, to find the costly files
    "tests.support.hang_report",  # what asyncio tasks wait on when a test nears its timeout
    "tests.support.nats_leaks",  # a module that leaves a NATS client open fails, not the session's end
    "tests.support.package_workers",  # a test package's files share one xdist worker: its package fixtures start once
    "tests.support.process_leaks",  # a test that leaves a chdb connection or a thread fails, and they end
    "tests.support.secured_bus",  # `creds` and `secured_nats`: the bus with `bastion up`'s permissions
]

# `./run test` exports BASTION_CLI=./run for the CLI's hints; a stack a test starts in its own tmp dir
# would then print `./run ...` hints that do not run there (cli/invocation.py names the CLI itself)
os.environ.pop("BASTION_CLI", None)

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
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    """A plain client of the test's NATS (a file or package needing another kind defines its own)."""
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    """A plain HTTP client, for the raw requests a test sends to a gateway."""
    async with httpx2.AsyncClient(timeout=30, verify=shared_tls()) as client:
        yield client


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def tool_schemas_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the 16 real `tools/list` dumps of the Code Mode set (tests/data/tool-schemas/code-mode-set.txt;
    the folder itself holds more, for search); missing data fails loudly, never as an empty list."""
    source = DATA / "tool-schemas"
    stems = [line.split("#", 1)[0].strip() for line in (source / "code-mode-set.txt").read_text().splitlines()]
    found = [source / f"{stem}.json" for stem in stems if stem]
    if len(found) != 16 or not all(path.is_file() for path in found):
        pytest.fail(f"expected the 16 real tool schemas of the Code Mode set in {source}: the test data is missing")
    folder = tmp_path_factory.mktemp("tool-schemas")
    for path in found:
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, every span kept in memory (the SDK's own exporter), off after it."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", processor=SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.reset()
