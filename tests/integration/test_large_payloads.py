"""Results and arguments larger than one NATS message.

The NATS server here keeps its default 1 MiB max payload, as a production one may, and is secured
with the permissions `bastion up` renders: every service connects as its own role, so each store
operation is one its role's permissions allow (the ingress role once could not read the object
store, and every answer between one message and 32 MiB was lost after a 5 s timeout). A result too
large for one message travels through the object store up to `BASTION_MAX_RESULT_BYTES` (32 MiB by
default); a larger one fails at once with `result_too_large` naming both sizes, never as a timeout.
Arguments too large for one message travel the same way in the other direction. Both layouts: each
service on its own connection, and ingress and the executor co-located (one in-process lane).

One gateway per layout serves that layout's tests: each test that reads audit rows calls on a key of
its own and reads that key's rows alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from nats.aio.client import Client as NATS

from cli.credentials import StackCredentials, make_credentials
from cli.stack import EmbeddedNats, EmbeddedValkey
from libs.common.bus.blobs import MESSAGE_ROOM
from libs.common.bus.nats import connect
from libs.common.bus.permissions import ADMIN, EXECUTOR
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows
from libs.common.settings import CodeModeSettings
from tests.support.gateway import (
    ADMIN_KEY,
    READS_EXAMPLES,
    SERVERS,
    Gateway,
    default_config,
    running_gateway,
    stdio_server,
)

pytestmark = pytest.mark.integration

LARGE_SERVER = Path(__file__).resolve().parent.parent / "support" / "large_server.py"
CODER_KEY = "bk_test_large_code_mode_000000"
RESULTS_KEYS = {"large": "bk_test_large_results_http_000", "large_stdio": "bk_test_large_results_stdio_00"}
"""The key each server's results test calls on, named `results-<server>`: its audit rows are its own."""
HUGE_KEY = "bk_test_large_huge_name_000000"
CALL_TIMEOUT = 120.0
"""The gateway's own limit: an answer that waited for it would be -32061 / -32071, not -32065."""


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


MIB = 1024 * 1024
INLINE = MIB - MESSAGE_ROOM
"""The largest result that travels in the reply itself on a 1 MiB bus (its JSON, not its text)."""
SIZES = (INLINE - 4096, INLINE + 4096, 2 * MIB, 5 * MIB, 20 * MIB, 31 * MIB)
"""Text sizes of the results asked for: the envelope around the text is well under 4 KiB."""


@dataclass
class Bus:
    """What a gateway here runs on: a 1 MiB NATS secured with `creds`, and a Valkey."""

    creds: StackCredentials
    nats: EmbeddedNats
    redis_url: str
    lane: bool = False
    """Ingress and the executor co-located on one in-process lane."""


@contextlib.contextmanager
def small_bus(folder: Path, lane: bool = False) -> Iterator[Bus]:
    creds = make_credentials(folder / "data", {})
    nats = EmbeddedNats(folder / "nats", max_payload_mb=1, authorization=creds.authorization).start()
    valkey = EmbeddedValkey(folder / "valkey").start()
    try:
        yield Bus(creds, nats, valkey.url, lane)
    finally:
        valkey.stop()
        nats.stop()
    violations = [line for line in nats.log_path.read_text().splitlines() if "Violation" in line]
    assert violations == [], "the bus refused a service something it does"


@pytest.fixture(scope="module", params=[False, True], ids=["separate", "colocated"])
def bus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    with small_bus(tmp_path_factory.mktemp("large"), lane=request.param) as found:
        yield found


@pytest.fixture
def creds(bus: Bus) -> StackCredentials:
    return bus.creds


@pytest.fixture(scope="module")
async def large_upstream() -> AsyncIterator[str]:
    """The large server over streamable HTTP on a free port: its URL once it is READY."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(LARGE_SERVER), "--http", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("READY "), f"the large server did not start: {line!r}"
        yield line.split()[1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _config(servers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The default keys with these servers alone: no test here calls notes."""
    config = default_config()
    config["mcpServers"] = servers
    return config


@pytest.fixture(scope="module")
async def gateway(bus: Bus, large_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    config = _config(
        {
            "echo": stdio_server(SERVERS / "echo_server.py"),
            "large": {"url": large_upstream},
            "large_stdio": {"command": sys.executable, "args": [str(LARGE_SERVER)], "sandbox": READS_EXAMPLES},
        }
    )
    config["keys"] += [
        *({"name": f"results-{server}", "key": key, "tools": ["*"]} for server, key in RESULTS_KEYS.items()),
        {"name": "huge", "key": HUGE_KEY, "tools": ["*"]},
    ]
    # ingress refuses names over 256 characters before any handler (test_ingress_hardening); the cap is
    # lifted here so a huge name reaches the audit publisher, which must cope on its own (defence in depth)
    async with running_gateway(
        bus.nats.url,
        bus.redis_url,
        tmp_path_factory.mktemp("gateway"),
        config,
        creds=bus.creds,
        lane=bus.lane,
        call_timeout=CALL_TIMEOUT,
        max_name_chars=4_000_000,
    ) as gw:
        await gw.wait_for_servers("large", "large_stdio")
        yield gw


@pytest.fixture
async def code_gateway(large_upstream: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway of its own, for the one test that is not run in both layouts. Its test comes first
    in the file: the embedded audit store is one per process, so while a layout's gateway runs this
    one's audit cannot open its own store (the test reads no audit rows, and passes either way)."""
    config = _config({"large": {"url": large_upstream}})
    config["keys"].append({"name": "coder", "key": CODER_KEY, "tools": ["large/*"], "code_mode": True})
    with small_bus(tmp_path) as own:
        async with running_gateway(
            own.nats.url,
            own.redis_url,
            tmp_path,
            config,
            creds=own.creds,
            codemode=CodeModeSettings(sandbox_workers=1),
        ) as gw:
            await gw.wait_for_servers("large")
            yield gw


async def _admin(nats_url: str, creds: StackCredentials) -> NATS:
    return await connect(nats_url, "test-admin", role=ADMIN, nkey_seed_file=creds.seed_file(ADMIN))


async def _audit_rows(nats_url: str, creds: StackCredentials, key_name: str, at_least: int, limit: int = 50) -> list:
    nc = await _admin(nats_url, creds)
    try:
        deadline = time.monotonic() + 60
        while True:
            reply = await nc.request(
                subjects.AUDIT_QUERY, AuditQuery(limit=limit, key_name=key_name).model_dump_json().encode(), timeout=10
            )
            rows = AuditRows.model_validate_json(reply.data).rows
            if len(rows) >= at_least:
                return rows
            assert time.monotonic() < deadline, f"{len(rows)} audit rows, expected {at_least}"
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def test_a_code_mode_script_gets_a_result_larger_than_one_message(code_gateway: Gateway) -> None:
    """The codemode service takes a large result from the object store as ingress does: a script's
    tool call returns 5 MB whole over a bus whose messages carry 1 MiB."""
    code = "text = large.blob(megabytes=5)\nresult = {'size': len(text), 'xs': text.count('x')}\n"
    async with code_gateway.client(CODER_KEY) as client:
        answer = await client.call_tool("execute_code", {"code": code})
    assert not answer.is_error, _text(answer)
    assert _text(answer) == 'result: {"size":5000000,"xs":5000000}'


@pytest.mark.parametrize("server", ["large", "large_stdio"], ids=["http", "stdio"])
async def test_results_across_the_range_arrive_whole_and_over_32_mib_fail_at_once(
    gateway: Gateway, creds: StackCredentials, server: str
) -> None:
    async with gateway.client(RESULTS_KEYS[server]) as client:
        for size in SIZES:
            started = time.monotonic()
            text = _text(await client.call_tool(f"{server}__blob", {"megabytes": (size + 0.5) / 1_000_000}))
            print(f"\n{server} {size:,} bytes: {time.monotonic() - started:.2f}s")
            assert len(text) == size and text.count("x") == size, size
        started = time.monotonic()
        with pytest.raises(MCPError) as too_large:
            await client.call_tool(f"{server}__blob", {"megabytes": 33 * MIB / 1_000_000})
        print(f"{server} 33 MiB result refused after {time.monotonic() - started:.2f}s")
        error = too_large.value.error
        assert error.code == -32065 and error.data["kind"] == "result_too_large", error
        # its size as far as it was read: an HTTP answer's whole JSON, a stdio line's up to the cutoff
        named = re.search(r"is (?:more than )?([\d,]+) bytes", error.message)
        assert named and int(named.group(1).replace(",", "")) > 32 * MIB, error.message
        assert f"{32 * MIB:,}" in error.message
        assert "BASTION_MAX_RESULT_BYTES" in error.message and "did run" in error.message
        # the gateway still serves, and what travelled through the store was cleaned up behind it
        assert _text(await client.call_tool("echo__echo", {"text": "still here"})) == "still here"
    rows = await _audit_rows(gateway.nats_url, creds, f"results-{server}", len(SIZES) + 2)
    blobs = sorted((row.status, row.error_kind, row.execution) for row in rows if row.server == server)
    assert blobs == [("error", "result_too_large", "ran")] + [("ok", None, "ran")] * len(SIZES)
    nc = await connect(gateway.nats_url, "test-store", role=EXECUTOR, nkey_seed_file=creds.seed_file(EXECUTOR))
    try:
        # none left: the first page of subjects holds one if any is left
        info = await nc.jetstream().stream_info(
            subjects.obj_stream(subjects.OBJ_BLOBS), subjects_filter=">"
        )  # one page is enough
        chunks = {s: n for s, n in (info.state.subjects or {}).items() if ".C." in s}
        assert chunks == {}, "every object was taken (read and deleted) by its receiver"
    finally:
        await nc.close()


async def test_arguments_larger_than_one_message_reach_the_upstream(gateway: Gateway) -> None:
    text = "y" * 2_000_000  # a 2 MB body: within the 4 MiB body limit, beyond the 1 MiB message
    async with gateway.client(ADMIN_KEY) as client:
        assert _text(await client.call_tool("large__length", {"text": text})) == "2000000"


async def test_a_huge_tool_name_does_not_stop_the_audit_of_the_calls_behind_it(
    gateway: Gateway, creds: StackCredentials
) -> None:
    """End to end: a key sends a ~3.8 MB tool name (its audit event, with the error quoting
    the name, is far over the 1 MiB message), then 100 ordinary calls: all 101 are audited."""
    name = "n" * 3_800_000
    # a handshake-era client: a 2026-07-28 one also sends the name as an `Mcp-Name` header, which the
    # HTTP edge refuses (431) long before any handler
    async with gateway.client(HUGE_KEY, mode="legacy") as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool(name, {})
        assert unknown.value.error.code == -32602
        for i in range(100):
            assert _text(await client.call_tool("echo__add", {"a": i, "b": 1})) == str(i + 1)
    rows = await _audit_rows(gateway.nats_url, creds, "huge", 101, limit=200)
    assert len(rows) == 101
    (huge,) = [row for row in rows if row.status == "error"]
    assert huge.name == name[:1024] and huge.truncated["name"] == 3_800_000 and "error" in huge.truncated
    assert huge.execution == "not_run"
    assert sorted({row.name for row in rows if row.status == "ok"}) == ["echo__add"]
