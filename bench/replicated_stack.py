"""Bastion scaled out on one machine, for the failover and session benchmarks: a 3-server NATS cluster
(`cli.nats_cluster`) with every store replicated on 3 servers, Valkey, and N replicas of each service
as its own process, built exactly as `bastion up` builds one (`cli.layout.service_specs`: each its own
NKey, secrets and settings) and kept running by `bastion up`'s own supervisor, which restarts a killed
replica (a killed nats-server or Valkey after `infra_down` seconds, on the same ports and data).

Replicas differ by `BASTION_INSTANCE` (`<service>-<n>`), ingress replicas by port (each its own
audit journal slot), and log to `<workdir>/data/logs/<service>-<n>.log`. Two audit replicas share the
one embedded ClickHouse store: the second stands by and takes it over (`services.audit.ownership`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
from nats.aio.client import Client as NATS

from cli.credentials import StackCredentials, make_credentials
from cli.layout import Endpoints, service_specs
from cli.nats_cluster import EmbeddedNatsCluster, cluster_replicas
from cli.ports import free_port
from cli.stack import EmbeddedNats, EmbeddedValkey, nats_monitoring_url
from cli.supervisor import Backoff, ChildSpec, Supervisor
from cli.up import INFRA_BACKOFF, apply_to
from libs.common.analytics.queries import ExportPage, ExportRows
from libs.common.bus.nats import credentials
from libs.common.bus.permissions import ADMIN
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditVerdict, AuditVerify
from libs.common.runtime.tasks import cancel_and_wait
from libs.common.settings.config_file import parse_config

__all__ = ["ReplicatedStack", "jsonrpc_answer", "ledger_config", "p99", "parse_stack_args", "run_in"]

T = TypeVar("T")

SERVICES = ("audit", "policy", "executor", "codemode", "oauth", "ingress")
"""Start order: the store's owner first, ingress last (it serves once the rest can answer)."""

LEDGER_SERVER = Path(__file__).resolve().parent.parent / "tests" / "support" / "ledger_server.py"

LOOPBACK_EGRESS = '{"allow_private_hosts": ["127.0.0.1", "localhost"]}'
"""`BASTION_EGRESS` for the executor: the benchmark's upstreams run on this machine (loopback is
refused otherwise); an environment variable, which an older commit's executor ignores."""


@dataclass
class ReplicatedStack:
    workdir: Path
    config: dict[str, Any]
    """A `bastion.yaml` as a dict (`mcpServers`, `keys`, `gateway`)."""
    replicas: Mapping[str, int] = field(default_factory=dict)
    """Replicas per service (default 2; oauth 1)."""
    nats_servers: int = 3
    nats_down: float = 10.0
    """Seconds a killed nats-server stays down before the supervisor restarts it (same ports, same store)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """BASTION_* settings for every service."""
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Further settings per service (`{"ingress": {"BASTION_MAX_CONNECTIONS": "4000"}}`)."""
    through: Mapping[str, Callable[[str], str]] = field(default_factory=dict)
    """Replica (`ingress-1`) -> what makes the NATS URL list it connects to from the cluster's (a proxy's)."""
    cluster: EmbeddedNatsCluster | None = None
    valkey: EmbeddedValkey | None = None
    supervisor: Supervisor | None = None
    creds: StackCredentials | None = None
    ingress_ports: list[int] = field(default_factory=list)
    _polling: asyncio.Task[None] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def nats_url(self) -> str:
        assert self.cluster is not None
        return self.cluster.url

    @property
    def urls(self) -> list[str]:
        """Each ingress replica's `/mcp`."""
        return [f"http://127.0.0.1:{port}/mcp" for port in self.ingress_ports]

    def count(self, service: str) -> int:
        return self.replicas.get(service, 1 if service == "oauth" else 2)

    async def start(self, ready_tools: int = 1, within: float = 240.0) -> ReplicatedStack:
        """Start everything; return once every ingress replica lists `ready_tools` tools."""
        os.umask(0o077)
        data = self.data_dir
        (data / "logs").mkdir(parents=True, exist_ok=True)
        self.creds = creds = make_credentials(data, {}, new_nkeys=True)
        self.cluster = EmbeddedNatsCluster(
            data / "nats-cluster", self.nats_servers, authorization=creds.authorization, monitor=True
        ).start()
        self.valkey = EmbeddedValkey(data / "valkey", password=creds.valkey_password).start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BASTION_")},
            "BASTION_NATS_REPLICAS": str(cluster_replicas(self.nats_servers)),
            "BASTION_LOG_LEVEL": "WARNING",
            "BASTION_EGRESS": LOOPBACK_EGRESS,
            **self.env,
        }
        config = parse_config(self.config)
        with _environment(env):  # the admin's buckets are declared with the stack's replica count
            await apply_to(self.nats_url, config, creds)
        self.ingress_ports = [free_port() for _ in range(self.count("ingress"))]
        ep = Endpoints(
            nats_url=self.nats_url,
            redis_url=self.valkey.url,
            clickhouse_url=f"chdb://{data / 'clickhouse'}",
            host="127.0.0.1",
            port=self.ingress_ports[0],
            data_dir=data,
        )
        one = {spec.name: spec for spec in service_specs(config, ep, secrets.token_urlsafe(32), env, creds)}
        specs = [self._replica(one[svc], n) for svc in SERVICES for n in range(1, self.count(svc) + 1)]
        down = Backoff(initial=self.nats_down, maximum=self.nats_down, reset_after=0.0)
        infra = [
            ChildSpec(
                name, server.command(), log_path=server.log_path, backoff=INFRA_BACKOFF if name == "valkey" else down
            )
            for name, server in self.embedded().items()
        ]
        self.supervisor = Supervisor(infra + specs, grace=10.0, notify=lambda msg: print(f"  [stack] {msg}"))
        for name, server in self.embedded().items():
            assert server.proc is not None
            self.supervisor.adopt(name, server.proc)
        self.supervisor.start()
        self._polling = asyncio.create_task(self._poll())
        await self._ready(ready_tools, within)
        return self

    def _replica(self, spec: ChildSpec, n: int) -> ChildSpec:
        svc = spec.name
        own = {"BASTION_INSTANCE": f"{svc}-{n}", **self.service_env.get(svc, {})}
        if svc == "ingress":
            own["BASTION_PORT"] = str(self.ingress_ports[n - 1])
        if (route := self.through.get(f"{svc}-{n}")) is not None:
            own["BASTION_NATS_URL"] = route(self.nats_url)
        return dataclasses.replace(
            spec,
            name=f"{svc}-{n}",
            env={**(spec.env or {}), **own},
            log_path=self.data_dir / "logs" / f"{svc}-{n}.log",
        )

    def embedded(self) -> dict[str, EmbeddedNats | EmbeddedValkey]:
        assert self.cluster is not None and self.valkey is not None
        return {**{f"nats{i}": m for i, m in enumerate(self.cluster.members, 1)}, "valkey": self.valkey}

    async def _poll(self) -> None:
        """The supervisor, polled on this (the main) thread: children die with the thread that forked them."""
        assert self.supervisor is not None
        while True:
            self.supervisor.poll()
            await asyncio.sleep(0.05)

    async def _ready(self, tools: int, within: float) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            for url in self.urls:
                while True:
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        health = await http.get(url.replace("/mcp", "/healthz"))
                        if health.status_code == 200 and health.json().get("tools", 0) >= tools:
                            break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{url} did not list {tools} tool(s) within {within:g}s; see {self.data_dir}")
                    await asyncio.sleep(0.2)

    def pid(self, name: str) -> int | None:
        """The process of child `name` (`ingress-1`, `nats2`, `valkey`), if running."""
        assert self.supervisor is not None
        proc = self.supervisor.children[name].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill(self, name: str) -> float:
        """SIGKILL child `name` (the supervisor restarts it); the monotonic time it was killed."""
        pid = self.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()

    def starts(self, name: str) -> int:
        """How often child `name` was started (a restart after a kill counts one more)."""
        assert self.supervisor is not None
        return self.supervisor.children[name].starts

    def children(self, prefix: str) -> list[str]:
        assert self.supervisor is not None
        return [name for name in self.supervisor.children if name.startswith(prefix)]

    def log(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _monitoring(self) -> list[str]:
        """The HTTP monitoring addresses of the cluster's members that serve one."""
        assert self.cluster is not None
        return [url for member in self.cluster.members if (url := nats_monitoring_url(member.data_dir))]

    def stream_leader(self, stream: str) -> str | None:
        """The server (`n1`...) leading `stream`, as the cluster's members report it (`/jsz`)."""
        for detail in stream_details(self._monitoring(), stream):
            leader = (detail.get("cluster") or {}).get("leader")
            if leader:
                return str(leader)
        return None

    def consumer_backlog(self, stream: str, durable: str) -> tuple[int, int] | None:
        """`consumer_backlog` as the cluster's members report it."""
        return consumer_backlog(self._monitoring(), stream, durable)

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[NATS]:
        """The bus as the admin role (what `bastion audit` uses)."""
        assert self.creds is not None
        nc = await nats.connect(
            self.nats_url.split(","), max_reconnect_attempts=-1, **credentials(ADMIN, self.creds.seed_file(ADMIN))
        )
        try:
            yield nc
        finally:
            await nc.close()

    async def audit_rows(self, since: float) -> list[AuditEvent]:
        """Every audit event stored since `since` (Unix time), through the audit service's export."""
        rows: list[AuditEvent] = []
        page = ExportPage(since=since, until=time.time() + 60)
        async with self.admin() as nc:
            while True:
                reply = await nc.request(subjects.AUDIT_EXPORT, page.model_dump_json().encode(), timeout=60)
                answer = ExportRows.model_validate_json(reply.data)
                if answer.error:
                    raise RuntimeError(f"audit export: {answer.error}")
                rows += answer.rows
                if len(answer.rows) < page.limit:
                    return rows
                last = answer.rows[-1]
                page = page.model_copy(update={"after_ts": last.ts, "after_id": last.event_id})

    async def verify(self) -> AuditVerdict:
        """`bastion audit verify`: the hash chains and checkpoints of every stored event."""
        async with self.admin() as nc:
            reply = await nc.request(subjects.AUDIT_VERIFY, AuditVerify().model_dump_json().encode(), timeout=120)
        return AuditVerdict.model_validate_json(reply.data)

    async def stop(self) -> None:
        await cancel_and_wait(self._polling)
        if self.supervisor is not None:
            order = [("ingress-",), ("codemode-",), ("executor-", "policy-", "oauth-", "audit-")]
            groups = [[n for n in self.supervisor.children if n.startswith(prefixes)] for prefixes in order]
            self.supervisor.stop(groups, keep=self.embedded())
            self.supervisor.stop([["valkey"], [n for n in self.embedded() if n != "valkey"]])
        for server in (self.valkey, self.cluster):
            if server is not None:
                server.stop()


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_stack_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`argv` read by `parser`, with the options every benchmark on this stack takes besides its own."""
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--workdir", help="keep the stack's files here (default: a temporary folder)")
    return parser.parse_args(argv)


def run_in(workdir: str | None, prefix: str, bench: Callable[[Path], Coroutine[Any, Any, T]]) -> T:
    """Run `bench` on `workdir` (kept, for its logs), or on a temporary folder removed afterwards."""
    if workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        return asyncio.run(bench(Path(workdir)))
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return asyncio.run(bench(Path(tmp)))


def ledger_config(ledger: Path, keys: list[dict[str, Any]]) -> dict[str, Any]:
    """A `bastion.yaml` (as a dict) serving the ledger server, which appends each call to `ledger`, to `keys`."""
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.touch()  # a sandbox names existing paths only: the server may then write this one file
    return {
        "mcpServers": {
            "ledger": {
                "command": sys.executable,
                "args": [str(LEDGER_SERVER)],
                "env": {"LEDGER_FILE": str(ledger)},
                "sandbox": {"write": [str(ledger)]},  # its sandbox lets it write the ledger, nothing else
            }
        },
        "keys": keys,
    }


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def jsonrpc_answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a `/mcp` answer, JSON or one SSE event; an error object if neither."""
    text = response.text
    if text.startswith(("event:", "data: ")) or "\ndata: " in text:
        text = next((line[6:] for line in text.splitlines() if line.startswith("data: ")), "{}")
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        return {"error": {"code": None, "message": text[:200]}}
    return answer if isinstance(answer, dict) else {"error": {"code": None, "message": str(answer)[:200]}}


def stream_details(monitoring: list[str], stream: str, **params: int) -> Iterator[dict[str, Any]]:
    """`stream`'s details as each nats-server at `monitoring` (HTTP addresses) that answers reports them (`/jsz`)."""
    for url in monitoring:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            jsz = httpx.get(f"{url}/jsz", params={"accounts": 1, "streams": 1, **params}, timeout=2).json()
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        yield detail


def consumer_backlog(monitoring: list[str], stream: str, durable: str) -> tuple[int, int] | None:
    """The messages of `stream` its consumer `durable` has not been handed yet, and those handed and not
    acked: the most any server reports (a follower's view can lag its leader's); None when none reports it."""
    found = [
        (int(consumer.get("num_pending") or 0), int(consumer.get("num_ack_pending") or 0))
        for detail in stream_details(monitoring, stream, consumers=1)
        for consumer in detail.get("consumer_detail") or []
        if consumer.get("name") == durable
    ]
    return (max(new for new, _ in found), max(unacked for _, unacked in found)) if found else None
