"""`bastion up`: the whole gateway on one machine, from one config file, with nothing installed.

Order of events: validate everything that can be validated (config, key secrets, the port, no other
stack in the data dir) before starting anything; then NATS and Valkey (embedded unless external URLs
are given), the config into KV, the four services under a `Supervisor`; the banner once ingress
answers /healthz. Shutdown runs in reverse: ingress first so no request is accepted that cannot be
finished, then the other services, then Valkey and NATS.

Service output goes to `<data_dir>/logs/<service>.log` (not the terminal): the banner stays
readable, and a crashed service's last line is quoted in the restart message.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx
import nats
import nats.errors
from rich.console import Console
from rich.markup import escape

from bastion_common.config import BastionConfig, ConfigError, load_config

from .apply import apply_config, key_records
from .stack import EmbeddedNats, EmbeddedValkey, free_port
from .stackfile import STACK_FILE, remove_stack, running_stack, write_stack
from .summary import grant_warnings, safe_url
from .supervisor import Backoff, ChildSpec, OrphanSweeper, StopSignals, Supervisor, set_child_subreaper

__all__ = ["SERVICES", "STOP_ORDER", "run_up", "service_specs"]

SERVICES = ("policy", "executor", "audit", "ingress")
STOP_ORDER = (("ingress",), ("executor", "policy", "audit"))
GRACE = 10.0
"""Seconds a service gets to finish in-flight work after SIGTERM before SIGKILL."""
HEALTH_WARN_AFTER = 30.0


@dataclass
class Endpoints:
    nats_url: str | None
    redis_url: str | None
    clickhouse_url: str
    host: str
    port: int
    data_dir: Path

    @property
    def local_host(self) -> str:
        """Where a client on this machine reaches a server bound to `host`."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"[{host}]" if ":" in host else host

    @property
    def mcp_url(self) -> str:
        return f"http://{self.local_host}:{self.port}/mcp"

    @property
    def health_url(self) -> str:
        return f"http://{self.local_host}:{self.port}/healthz"

    @property
    def admin_url(self) -> str:
        return f"http://{self.local_host}:{self.port}/admin/v1"


def resolve_endpoints(
    config: BastionConfig, host: str | None, port: int | None, data_dir: Path | None, environ: Mapping[str, str]
) -> Endpoints:
    """Flags beat the environment, which beats the config file."""
    root = Path(data_dir or config.stack.data_dir).expanduser().resolve()
    host = host or config.gateway.host
    port = config.gateway.port if port is None else port
    return Endpoints(
        nats_url=environ.get("BASTION_NATS_URL") or config.stack.nats_url,
        redis_url=environ.get("BASTION_REDIS_URL") or config.stack.redis_url,
        clickhouse_url=environ.get("BASTION_CLICKHOUSE_URL")
        or config.stack.clickhouse_url
        or f"chdb://{root / 'clickhouse'}",
        host=host,
        port=port or free_port(host or "127.0.0.1"),
        data_dir=root,
    )


def port_problem(host: str, port: int) -> str | None:
    """Why ingress could not listen on host:port, or None. Same SO_REUSEADDR semantics as uvicorn."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        reason = "it is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        return f"cannot listen on {host}:{port}: {reason}; pick another with --port or stop what uses it"
    return None


def service_specs(
    config: BastionConfig, ep: Endpoints, session_secret: str, environ: Mapping[str, str], admin_token: str = ""
) -> list[ChildSpec]:
    """One `python -m bastion_<svc>` per service, configured only through BASTION_* variables.

    The session secret and the admin token reach ingress alone."""
    python_dir = os.path.dirname(sys.executable)  # not resolved: a venv's bin/ is what we want on PATH
    base = dict(environ)
    base.pop("BASTION_SESSION_SECRET", None)
    base.pop("BASTION_ADMIN_TOKEN", None)
    base.update(
        PATH=python_dir + os.pathsep + base.get("PATH", os.defpath),
        PYTHONUNBUFFERED="1",
        BASTION_NATS_URL=ep.nats_url or "",
        BASTION_REDIS_URL=ep.redis_url or "",
        BASTION_CLICKHOUSE_URL=ep.clickhouse_url,
    )
    ingress = {
        "BASTION_HOST": ep.host,
        "BASTION_PORT": str(ep.port),
        "BASTION_MAX_BODY_BYTES": str(config.gateway.max_body_bytes),
        "BASTION_RESPONSE_MODE": config.gateway.response_mode,
        "BASTION_CALL_TIMEOUT": str(config.gateway.call_timeout),
        "BASTION_SESSION_SECRET": session_secret,
        "BASTION_ADMIN_TOKEN": admin_token,
    }
    return [
        ChildSpec(
            name=svc,
            argv=[sys.executable, "-m", f"bastion_{svc}"],
            env={**base, **(ingress if svc == "ingress" else {})},
            log_path=ep.data_dir / "logs" / f"{svc}.log",
        )
        for svc in SERVICES
    ]


async def _apply(nats_url: str, config: BastionConfig, limit: float = 30.0) -> None:
    async def quiet(_exc: Exception) -> None:
        return None

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                servers=[u.strip() for u in nats_url.split(",") if u.strip()],
                name="bastion-up",
                connect_timeout=3,
                max_reconnect_attempts=20,  # ~10 s for an external NATS that is still starting
                reconnect_time_wait=0.5,
                error_cb=quiet,
            ),
            limit,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise RuntimeError(f"cannot connect to NATS at {safe_url(nats_url)}: {exc or type(exc).__name__}") from exc
    try:
        await asyncio.wait_for(apply_config(nc, config), limit)
    finally:
        await nc.close()


@dataclass
class _Stack:
    config: BastionConfig
    config_path: Path
    ep: Endpoints
    out: Console
    err: Console
    stop: StopSignals
    nats: EmbeddedNats | None = None
    valkey: EmbeddedValkey | None = None
    supervisor: Supervisor | None = None
    sweeper: OrphanSweeper = field(default_factory=OrphanSweeper)
    wrote_stack_file: bool = False
    admin_token: str = field(default_factory=lambda: os.environ.get("BASTION_ADMIN_TOKEN") or secrets.token_urlsafe(32))
    """The admin API's token: BASTION_ADMIN_TOKEN if set, else new for every `up`; kept in stack.json (0600)."""
    started_at: float = field(default_factory=time.time)

    def infra_pids(self) -> set[int]:
        return {s.proc.pid for s in (self.nats, self.valkey) if s is not None and s.proc is not None}

    def known_pids(self) -> set[int]:
        return self.infra_pids() | (self.supervisor.pids() if self.supervisor else set())

    def start(self) -> bool:
        """Bring everything up; False if a stop was requested meanwhile."""
        ep = self.ep
        (ep.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if ep.nats_url is None:
            self.nats = EmbeddedNats(ep.data_dir / "nats").start()
            ep.nats_url = self.nats.url
        if self.stop.requested:
            return False
        if ep.redis_url is None:
            self.valkey = EmbeddedValkey(ep.data_dir / "valkey").start()
            ep.redis_url = self.valkey.url
        if self.stop.requested:
            return False
        asyncio.run(_apply(ep.nats_url, self.config))
        if self.stop.requested:
            return False
        specs = service_specs(self.config, ep, secrets.token_urlsafe(32), os.environ, self.admin_token)
        self.supervisor = Supervisor(specs, backoff=Backoff(), grace=GRACE, notify=self._event)
        self.supervisor.start()
        self._write_stack_file(ready=False)
        return True

    def _event(self, message: str) -> None:
        self.err.print(f"[yellow]bastion:[/] {escape(message)}")

    def _write_stack_file(self, ready: bool) -> None:
        ep = self.ep
        write_stack(
            ep.data_dir,
            {
                "nats_url": ep.nats_url,
                "redis_url": ep.redis_url,
                "clickhouse_url": ep.clickhouse_url,
                "mcp_url": ep.mcp_url,
                "admin_url": ep.admin_url,
                "admin_token": self.admin_token,
                "pid": os.getpid(),
                "data_dir": str(ep.data_dir),
                "logs_dir": str(ep.data_dir / "logs"),
                "config": str(self.config_path.resolve()),
                "started_at": self.started_at,
                "ready": ready,
            },
        )
        self.wrote_stack_file = True

    def _healthy(self, client: httpx.Client) -> bool:
        try:
            return client.get(self.ep.health_url).status_code == 200
        except httpx.HTTPError:
            return False

    def _infra_failure(self) -> str | None:
        for label, server in (("NATS", self.nats), ("Valkey", self.valkey)):
            if server is not None and server.proc is not None and (code := server.proc.poll()) is not None:
                where = server.data_dir
                return f"embedded {label} exited with code {code} (log in {where}); the stack cannot run without it"
        return None

    def watch(self) -> int:
        """Supervise until a stop signal (exit 0) or the loss of embedded NATS/Valkey (exit 1)."""
        assert self.supervisor is not None
        started, ready, warned, swept = time.monotonic(), False, False, 0.0
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while not self.stop.requested:
                self.supervisor.poll()
                if time.monotonic() - swept >= 1.0:
                    swept = time.monotonic()
                    self.sweeper.sweep(self.known_pids())
                if (failure := self._infra_failure()) is not None:
                    self.err.print(f"[red]error:[/] {escape(failure)}")
                    return 1
                if not ready:
                    if self._healthy(client):
                        ready = True
                        self._write_stack_file(ready=True)
                        self._banner()
                    elif not warned and time.monotonic() - started > HEALTH_WARN_AFTER:
                        warned = True
                        self._event(
                            f"ingress is not answering {self.ep.health_url} yet; "
                            f"see {self.ep.data_dir / 'logs' / 'ingress.log'}"
                        )
                time.sleep(0.25 if ready else 0.1)
        return 0

    def _banner(self) -> None:
        ep, config, out = self.ep, self.config, self.out
        keys = ", ".join(escape(k.name) for k in config.keys) or "[yellow]none: every request will be refused[/]"
        servers = ", ".join(f"{n} ({s.transport})" for n, s in config.mcp_servers.items()) or "none"

        def origin(url: str | None, embedded: object) -> str:
            return escape(safe_url(url or "")) + (" [dim](embedded)[/]" if embedded else " [dim](external)[/]")

        chdb = ep.clickhouse_url.startswith("chdb://")
        out.print()
        out.print(f"[bold green]Bastion is up[/] [dim]v{version('bastion-gateway')}[/]")
        out.print(f"  MCP URL     [bold]{ep.mcp_url}[/]")
        if ep.host in ("0.0.0.0", "::", ""):
            out.print(f"  listening   on all interfaces ({escape(ep.host or '*')}:{ep.port})")
        out.print(f"  keys        {keys}  [dim](send one as 'Authorization: Bearer <key>')[/]")
        out.print(f"  servers     {escape(servers)}")
        out.print(f"  admin API   {ep.admin_url}  [dim](token in the stack file; try `bastion keys list`)[/]")
        out.print(f"  NATS        {origin(ep.nats_url, self.nats)}")
        out.print(f"  Redis       {origin(ep.redis_url, self.valkey)}")
        clickhouse = escape(ep.clickhouse_url) + " [dim](embedded)[/]" if chdb else origin(ep.clickhouse_url, False)
        out.print(f"  ClickHouse  {clickhouse}")
        out.print(f"  logs        {escape(str(ep.data_dir / 'logs'))}/<service>.log")
        out.print(f"  stack file  {escape(str(ep.data_dir / STACK_FILE))}")
        for warning in grant_warnings(config):
            out.print(f"  [yellow]warning:[/] {escape(warning)}")
        out.print("[bold]Ctrl-C to stop[/]")

    def shutdown(self) -> None:
        """Ingress, then the other services, then stragglers, Valkey, NATS; nothing survives."""
        if self.supervisor is not None:
            why = f"{self.stop.received} received; " if self.stop.received else ""
            self.err.print(f"[dim]bastion: {why}stopping services…[/]")
            self.supervisor.stop(STOP_ORDER, force=lambda: self.stop.force)
        self.sweeper.finish(self.infra_pids(), timeout=0.0 if self.stop.force else 3.0)
        for server in (self.valkey, self.nats):
            if server is not None:
                server.stop()
        self.sweeper.finish(set(), timeout=1.0)
        if self.wrote_stack_file:
            remove_stack(self.ep.data_dir)


def run_up(
    config_path: Path,
    *,
    host: str | None = None,
    port: int | None = None,
    data_dir: Path | None = None,
    out: Console | None = None,
    err: Console | None = None,
) -> int:
    """Run the stack until Ctrl-C/SIGTERM; the exit code (2: bad config, 1: could not run)."""
    out = out or Console(soft_wrap=True)
    err = err or Console(stderr=True, soft_wrap=True)
    try:
        config = load_config(config_path)
        key_records(config)  # key_env variables set, no shared secrets: checked before anything starts
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    ep = resolve_endpoints(config, host, port, data_dir, os.environ)
    if (other := running_stack(ep.data_dir)) is not None:
        err.print(
            f"[red]error:[/] a stack is already running from {escape(str(ep.data_dir))} (pid {other.get('pid')}, "
            f"{escape(str(other.get('mcp_url')))}); stop it first or use another --data-dir",
            soft_wrap=True,
        )
        return 1
    if (problem := port_problem(ep.host, ep.port)) is not None:
        err.print(f"[red]error:[/] {escape(problem)}")
        return 1

    set_child_subreaper()
    with StopSignals() as stop:
        stack = _Stack(config, Path(config_path), ep, out, err, stop)
        try:
            err.print(f"[dim]bastion: starting from {escape(str(config_path))} (data in {escape(str(ep.data_dir))})[/]")
            try:
                started = stack.start()
            except Exception as exc:  # say why, then (finally) tear down whatever did start
                err.print(f"[red]error:[/] cannot start the stack: {escape(str(exc) or type(exc).__name__)}")
                return 1
            if not started:
                return 0
            err.print(f"[dim]bastion: services started; waiting for {escape(ep.health_url)}[/]")
            return stack.watch()
        finally:
            stack.shutdown()
