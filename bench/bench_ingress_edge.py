"""CPU of ingress's `/mcp` edge per `tools/call`, the NATS hop replaced by a stub: the endpoint
(host check, key, body, JSON-RPC, era and session, dispatch, reply, audit event) driven as an ASGI
app in this process, nothing else on the clock.

    .venv/bin/python bench/bench_ingress_edge.py                       # this checkout
    .venv/bin/python bench/bench_ingress_edge.py --baseline main       # REF's ingress beside it, alternating
    .venv/bin/python bench/bench_ingress_edge.py --calls 20000 --rounds 7

Each round drives `--calls` requests of each era (a handshake-era session with `Mcp-Session-Id`,
and 2026-07-28 envelopes mirrored in headers), both accepting JSON and SSE as the SDK does, and
reads the process CPU time (`time.process_time`); the builds alternate round by round and the
medians close the run. A baseline is REF's `services/ingress` exported into a temporary folder and
imported under another package name, beside this checkout's (same `libs.common`).
This is a script, not a test: numbers are noisy; compare only the builds of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from libs.common.contracts.messages import CallOutcome, CatalogTool, KeyRecord, ServerCatalog  # noqa: E402

SECRET = "bk_bench_secret"
RESULT = b'{"content":[{"type":"text","text":"hello"}],"isError":false}'
MODERN = "2026-07-28"


class _StubPath:
    """The request path with NATS cut off: every call ran and returned `RESULT` at once."""

    def __init__(self) -> None:
        self.grants = None

    async def routed(self, call: Any) -> CallOutcome:
        return CallOutcome(id=call.id, raw_result=RESULT, execution="ran", upstream_ms=0.1, decided_by="executor")

    async def abandon(self, call_id: str) -> None:
        pass

    async def cancel(self, cancel: Any) -> None:
        pass


class _StubNats:
    def new_inbox(self) -> str:
        return "_INBOX.bench"


_MODULES = {
    "catalog": "catalog.aggregated",
    "keys": "auth.keys",
    "sessions": "sessions.session_ids",
    "streams": "sessions.streams",
    "hosts": "web.hosts",
    "field_limits": "field_limits",
    "session_state": "sessions.session_state",
    "handlers": "handlers",
    "service": "service",
    "mcp_edge": "mcp_edge",
    "routed_sender": "sending.routed_sender",
    "audit_events": "audit_events",
}
"""What the bench builds an endpoint of, by the module of ingress that holds it."""


def _load(package: str) -> dict[str, ModuleType]:
    return {name: importlib.import_module(f"{package}.{module}") for name, module in _MODULES.items()}


def build(package: str) -> Any:
    """The `/mcp` ASGI app of one build: one key, one tool, the stub request path."""
    m = _load(package)
    catalog = m["catalog"].Catalog()
    tool = CatalogTool(tool="echo", definition={"name": "echo", "inputSchema": {"type": "object"}})
    catalog.put("bench", ServerCatalog(server="bench", status="ready", tools=[tool]).model_dump_json().encode())
    keys = m["keys"].KeyDirectory()
    key_id = hashlib.sha256(SECRET.encode()).hexdigest()
    keys.put(key_id, KeyRecord(id=key_id, name="bench").model_dump_json().encode())
    sessions = m["sessions"].SessionCodec(b"bench-secret", 3600.0)
    streams = m["streams"].CallStreams(_StubNats(), sessions)  # type: ignore[arg-type]
    hosts = m["hosts"].HostGuard("127.0.0.1", [])
    state = m["session_state"].SessionState()
    emitted: list[Any] = []

    def emit(event: Any) -> None:
        if len(emitted) > 1000:
            emitted.clear()
        emitted.append(event)

    path = _StubPath()
    sender = m["routed_sender"].RoutedSender(path, 30.0, streams, state)
    audits = m["audit_events"].AuditRecorder()
    handlers = m["handlers"].Handlers(catalog, keys, path, sender, audits, state)
    return m["service"].mcp_endpoint(  # the pipeline, built by the service's composition root
        handlers,
        authenticator=keys,
        sessions=m["sessions"].LiveSessions(sessions, state),
        path=path,
        subscriptions=m["mcp_edge"].ListenSubscriptions(catalog, path, sender, audits),
        streams=streams,
        notifier=None,
        emit_audit=emit,
        hosts=hosts,
        fields=m["field_limits"].FieldLimits(),
        max_body_bytes=4 * 1024 * 1024,
    )


class _Client:
    """Pre-built ASGI messages of one era's `tools/call`; `send` keeps nothing but the status."""

    def __init__(self, app: Any, modern: bool) -> None:
        self.app = app
        self.modern = modern
        self.status = 0
        self.failed = b""
        self.headers: list[tuple[bytes, bytes]] = [
            (b"host", b"127.0.0.1:8420"),
            (b"authorization", f"Bearer {SECRET}".encode()),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
        ]

    async def start(self) -> None:
        if self.modern:
            self.headers += [
                (b"mcp-protocol-version", MODERN.encode()),
                (b"mcp-method", b"tools/call"),
                (b"mcp-name", b"bench__echo"),
            ]
            meta = (
                '"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
                '"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},'
                '"io.modelcontextprotocol/clientCapabilities":{}},'
            )
        else:
            init = (
                b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
                b'"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
            )
            session = await self._post(init, want_header=b"mcp-session-id")
            assert session, "initialize gave no session id"
            self.headers += [(b"mcp-session-id", session), (b"mcp-protocol-version", b"2025-06-18")]
            meta = ""
        self.body = (
            '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{' + meta + '"name":"bench__echo",'
            '"arguments":{"text":"hello"}}}'
        ).encode()
        self.scope = {
            "type": "http",
            "method": "POST",
            "path": "/mcp",
            "headers": [*self.headers, (b"content-length", str(len(self.body)).encode())],
        }
        self.message = {"type": "http.request", "body": self.body, "more_body": False}

    async def _post(self, body: bytes, want_header: bytes) -> bytes | None:
        found: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                found.extend(v for k, v in message["headers"] if k == want_header)

        scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": self.headers}
        await self.app(scope, receive, send)
        return found[0] if found else None

    async def receive(self) -> dict[str, Any]:
        return self.message

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif b'"error"' in message.get("body", b""):
            self.failed = message["body"]

    async def run(self, calls: int) -> float:
        """CPU µs per call over `calls` calls."""
        app, scope, receive, send = self.app, self.scope, self.receive, self.send
        gc.collect()
        begun = time.process_time()
        for _ in range(calls):
            await app(scope, receive, send)
        spent = time.process_time() - begun
        assert self.status == 200 and not self.failed, (self.status, self.failed)
        return spent / calls * 1e6


def _load_average() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def export(ref: str, into: Path) -> str:
    """REF's `services/ingress` as the package `baseline_ingress` under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "services/ingress"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "services" / "ingress").rename(into / "baseline_ingress")
    for module in (into / "baseline_ingress").rglob("*.py"):  # its modules import each other as itself
        text = module.read_text().replace("services.ingress", "baseline_ingress")
        # but the metrics stay this checkout's: one process registers each series once
        module.write_text(text.replace("baseline_ingress.metrics", "services.ingress.metrics"))
    sys.path.insert(0, str(into))
    return "baseline_ingress"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="a git ref whose ingress runs beside this checkout's")
    parser.add_argument("--calls", type=int, default=5000, help="calls per era per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    builds = {"this checkout": "services.ingress"}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            builds = {f"baseline {args.baseline}": export(args.baseline, Path(tmp)), **builds}
        clients: dict[tuple[str, str], _Client] = {}
        for name, package in builds.items():
            for era in ("2025-06-18", MODERN):
                client = clients[(name, era)] = _Client(build(package), modern=era == MODERN)
                await client.start()
                await client.run(min(500, args.calls))  # warm caches and the allocator
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in clients}
        print(f"load average at start: {_load_average()}")
        for round_no in range(args.rounds):
            for key, client in clients.items():
                samples[key].append(await client.run(args.calls))
            line = "  ".join(f"{n} {e}: {s[-1]:.1f}" for (n, e), s in samples.items())
            print(f"round {round_no + 1}: {line} (µs CPU per call)")
        print(f"load average at end: {_load_average()}")
        print("\nmedian CPU µs per tools/call (edge only, NATS stubbed):")
        for (name, era), values in samples.items():
            print(f"  {name:<24} {era}: {statistics.median(values):7.1f}  (min {min(values):.1f})")


if __name__ == "__main__":
    asyncio.run(main())
