"""The test pet store (`rest_api.py`) and its three documents, and `openapi` sessions to it without the
gateway: what the session-level tests of the OpenAPI server kind share."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import Caller, CallOutcome, ToolCall
from services.executor.upstreams.interface import CallContext
from services.executor.upstreams.mcp.http_client import http_client
from services.executor.upstreams.openapi.connector import OpenApiConnector, OpenApiSession
from tests.support.egress import LOOPBACK_RULES
from tests.support.processes import serving_process

__all__ = ["DOCUMENTS", "VERSIONS", "call", "document_for", "pet_store", "session"]

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ROOT / "tests" / "data" / "openapi"
VERSIONS = ("3.1", "3.0", "2.0")
"""3.1: the document the app serves itself (read from its URL); 3.0 and 2.0: written by hand (files)."""


@contextlib.contextmanager
def pet_store() -> Iterator[str]:
    """The pet store on a free port; yields its base URL."""
    with serving_process([sys.executable, "-m", "tests.support.rest_api"], "the test pet store", cwd=ROOT) as url:
        yield url


def document_for(version: str, base: str) -> str:
    if version == "3.1":
        return f"{base}/openapi.json"
    return str(DOCUMENTS / f"petstore-{version}.yaml")


def _client(headers: dict[str, str], timeout: httpx2.Timeout, auth: httpx2.Auth | None) -> httpx2.AsyncClient:
    return http_client(LOOPBACK_RULES, headers, timeout, auth, None, 1024 * 1024)


@contextlib.asynccontextmanager
async def session(version: str, base: str, **section: Any) -> AsyncIterator[OpenApiSession]:
    """An open session to the pet store through the `version` document, `section` added to its `openapi`."""
    raw = {"openapi": {"document": document_for(version, base), "base_url": base, **section.pop("openapi", {})}}
    config = ServerConfig.model_validate({**raw, **section})
    connector = OpenApiConnector(
        "pets",
        config,
        connect_timeout=10.0,
        make_client=_client,
        egress=LOOPBACK_RULES,
        oauth=None,
        on_list_changed=lambda: None,
    )
    async with connector.open() as opened:
        yield opened


async def call(opened: OpenApiSession, tool: str, arguments: dict[str, Any] | None = None) -> CallOutcome:
    request = ToolCall(
        caller=Caller(key_id="test", key_name="test"),
        server="pets",
        tool=tool,
        name=f"pets__{tool}",
        arguments=arguments or {},
        timeout=10.0,
    )
    loop = asyncio.get_running_loop()
    return await opened.call_tool(request, CallContext(deadline=loop.time() + 10.0, budget=10.0))
