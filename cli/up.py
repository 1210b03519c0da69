"""`bastion up`: the whole gateway on one machine, from one config file, with nothing installed.

Order of events: validate everything that can be validated (config, key secrets, the port, no other
stack in the data dir) before starting anything; then NATS and Valkey (embedded unless external URLs
are given), the config into KV, the services under a `Supervisor` (ingress and the executor as one
process with `stack.colocate`, `cli.colocated`); the banner once ingress and the admin service
answer /healthz and ingress lists every configured server's tools, prompts and resources or reports
it unavailable (one still starting after `SERVERS_WAIT` is marked so). Whatever dies is restarted: a
service after its backoff, embedded NATS and Valkey at once on the same port with the same data
(JetStream on disk, Valkey's append-only file), while every service reconnects on its own. Shutdown
runs in reverse: ingress first so no request is accepted that cannot be finished, then the other
services, then Valkey and NATS.

Service output goes to `<data_dir>/logs/<service>.log` (not the terminal): the banner stays
readable, and a crashed service's last line is quoted in the restart message.

The bus is zero-trust (`libs.common.bus.permissions`): with the embedded NATS every service gets its
own NKey (`cli/credentials.py`) and only its role's subjects, Valkey takes only policy's password,
and upstream secrets are sealed in KV. Everything under the data dir is private (umask 077).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import nats
import nats.errors
from rich.console import Console
from rich.markup import escape

from libs.common.bus.permissions import ADMIN
from libs.common.cedar.cedar_policies import check_config_policies
from libs.common.contracts.config import BastionConfig, ConfigError
from libs.common.runtime.package_version import bastion_version
from libs.common.runtime.sealing import Sealer
from libs.common.settings import unguarded_bind_problem
from libs.common.settings.config_file import load_config

from .admin_owner import local_owner_token
from .apply import apply_config, key_records
from .bytecode import compile_packages
from .credentials import CredentialsRefused, StackCredentials, connect_as_admin, make_credentials
from .invocation import cli_command, data_dir_flag
from .layout import METRICS_SERVICES, Endpoints, resolve_endpoints, service_specs
from .nats_cluster import EmbeddedNatsCluster, cluster_replicas
from .ports import HeldPorts, hold_addresses, hold_ports
from .replicas import MAX_INGRESS_REPLICAS, ingress_names
from .stack import PRIVATE_UMASK, EmbeddedNats, EmbeddedValkey, private_dir
from .stackfile import STACK_FILE, remove_stack, running_stack, write_stack
from .summary import banner_servers, grant_warnings, safe_url, server_warnings
from .supervisor import Backoff, ChildSpec, OrphanSweeper, StopSignals, Supervisor, set_child_subreaper

__all__ = ["INFRA", "STOP_ORDER", "apply_to", "bind_problem", "port_problem", "run_up"]

INFRA = ("nats", "valkey")
STOP_ORDER = (("ingress", "admin"), ("codemode",), ("executor", "policy", "audit", "oauth"))
"""Services only: the embedded servers stop after the services' orphans are swept."""
INFRA_BACKOFF = Backoff(initial=0.2, maximum=5.0, reset_after=30.0)
"""Every service waits on NATS and Valkey, so they come back at once (same port, same data)."""
GRACE = 10.0
"""Seconds a service gets to finish in-flight work after SIGTERM before SIGKILL."""
HEALTH_WARN_AFTER = 30.0
SERVERS_WAIT = 60.0
"""Seconds the banner waits, once ingress and the admin service answer, for every configured server to be
listed whole or reported unavailable; one still starting after that is marked so in the banner."""


def port_problem(host: str, port: int, flag: str = "--port") -> str | None:
    """Why a service could not listen on host:port, or None. Same SO_REUSEADDR semantics as uvicorn."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        reason = "it is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        return f"cannot listen on {host}:{port}: {reason}; pick another with {flag} or stop what uses it"
    return None


def bind_problem(host: str, environ: Mapping[str, str]) -> str | None:
    """Why ingress would refuse to start on `host` with this environment.

    (A non-loopback address needs BASTION_ALLOWED_HOSTS or BASTION_ALLOW_ANY_HOST), said before anything
    starts."""
    allowed = environ.get("BASTION_ALLOWED_HOSTS", "").strip() not in ("", "[]")
    any_host = environ.get("BASTION_ALLOW_ANY_HOST", "").strip().lower() in ("1", "true", "yes", "on")
    return unguarded_bind_problem(host, ["set"] if allowed else [], any_host)


async def apply_to(
    nats_url: str, config: BastionConfig, creds: StackCredentials | None = None, limit: float = 30.0
) -> str:
    """Write `config` into the stack's KV as the admin role (`creds`: the stack's), sealing secrets.

    Make the local owner's API token (returned) for the CLI."""
    seed = creds.seed_file(ADMIN) if creds else ""
    try:  # 20 attempts: ~10 s for an external NATS that is still starting
        nc = await asyncio.wait_for(connect_as_admin(nats_url, seed, "bastion-up", attempts=20), limit)
    except CredentialsRefused:
        raise
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise RuntimeError(f"cannot connect to NATS at {safe_url(nats_url)}: {exc or type(exc).__name__}") from exc
    sealer = Sealer(creds.secrets_key if creds else os.environ.get("BASTION_SECRETS_KEY", ""))
    try:
        await asyncio.wait_for(apply_config(nc, config, sealer), limit)
        return await asyncio.wait_for(local_owner_token(nc), limit)
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
    nats_cluster: int = 1
    """Embedded nats-servers: 1, or a cluster of 3 or more (`--nats-cluster`, `stack.nats_cluster`)."""
    ingress_replicas: int = 1
    """Ingress processes on the gateway's one port (`--ingress-replicas`, `cli.replicas`)."""
    nats: EmbeddedNats | EmbeddedNatsCluster | None = None
    valkey: EmbeddedValkey | None = None
    supervisor: Supervisor | None = None
    sweeper: OrphanSweeper = field(default_factory=OrphanSweeper)
    wrote_stack_file: bool = False
    creds: StackCredentials | None = None
    """Made at start: NKeys (new for the embedded NATS, from BASTION_NATS_CREDENTIALS_DIR for an
    external one), Valkey's password, the secrets and signing keys."""
    admin_token: str = ""
    """The API token of `local-cli`, the stack's owner (`cli.admin_owner`): new for every `up`; kept in
    stack.json (0600) for the `bastion` CLI."""
    started_at: float = field(default_factory=time.time)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    """Each service's own `/metrics` port (chosen free at start; a restarted service keeps it)."""
    held: list[HeldPorts] = field(default_factory=list)
    """The gateway's, the admin API's and the metrics ports, held from the check or the pick until the
    stack stops (`cli.ports`): no other process is handed one while its service starts, or restarts."""

    def embedded(self) -> dict[str, EmbeddedNats | EmbeddedValkey]:
        """The embedded servers by child name: `nats` (`nats1`... for a cluster's members), `valkey`."""
        members = self.nats.members if isinstance(self.nats, EmbeddedNatsCluster) else [self.nats]
        named = {f"nats{i}" if len(members) > 1 else "nats": m for i, m in enumerate(members, 1) if m is not None}
        return {**named, **({"valkey": self.valkey} if self.valkey is not None else {})}

    def infra_pids(self) -> set[int]:
        """The embedded servers' pids: before the supervisor has adopted them, then from it."""
        if self.supervisor is None:
            return {s.proc.pid for s in self.embedded().values() if s.proc is not None}
        return self.supervisor.pids(self.embedded())

    def known_pids(self) -> set[int]:
        return self.infra_pids() | (self.supervisor.pids() if self.supervisor else set())

    def start(self) -> bool:
        """Bring everything up; False if a stop was requested meanwhile."""
        ep = self.ep
        private_dir(ep.data_dir)
        private_dir(ep.data_dir / "logs")
        self.creds = make_credentials(ep.data_dir, os.environ, new_nkeys=ep.nats_url is None)
        if ep.nats_url is None:
            monitor = os.environ.get("BASTION_NATS_MONITOR") == "1"
            threads = self.config.stack.nats_threads
            if self.nats_cluster > 1:  # every store replicated on the members: one may be lost
                os.environ.setdefault("BASTION_NATS_REPLICAS", str(cluster_replicas(self.nats_cluster)))
                self.nats = EmbeddedNatsCluster(
                    ep.data_dir / "nats-cluster",
                    self.nats_cluster,
                    authorization=self.creds.authorization,
                    monitor=monitor,
                    threads=threads,
                ).start()
                self.held.append(self.nats.held)  # its members are restarted on the same ports
            else:
                self.nats = EmbeddedNats(
                    ep.data_dir / "nats", authorization=self.creds.authorization, monitor=monitor, threads=threads
                )
                self.nats.start()
            ep.nats_url = self.nats.url
        if self.stop.requested:
            return False
        if ep.redis_url is None:
            self.valkey = EmbeddedValkey(ep.data_dir / "valkey", password=self.creds.valkey_password).start()
            ep.redis_url = self.valkey.url
        if self.stop.requested:
            return False
        self.admin_token = asyncio.run(apply_to(ep.nats_url, self.config, self.creds))
        if self.stop.requested:
            return False
        measured = [*METRICS_SERVICES, *ingress_names(self.ingress_replicas)[1:]]
        metrics = hold_ports(len(measured), taken={ep.port, ep.admin_port})
        self.held.append(metrics)
        self.metrics_ports = dict(zip(measured, metrics.ports, strict=True))
        if self.config.stack.colocate:  # one process: its services share one registry and one port
            self.metrics_ports["executor"] = self.metrics_ports["ingress"]
        specs = service_specs(
            self.config,
            ep,
            self.creds.session_secret,  # one for every replica, and the same after a restart
            os.environ,
            self.creds,
            self.metrics_ports,
            colocate=self.config.stack.colocate,
            ingress_replicas=self.ingress_replicas,
        )
        servers = self.embedded()
        infra = [
            ChildSpec(
                name,
                server.command(),
                env=server.environment() if isinstance(server, EmbeddedNats) else None,  # a restart's too
                log_path=server.log_path,
                backoff=INFRA_BACKOFF,
            )
            for name, server in servers.items()
        ]
        self.supervisor = Supervisor(infra + specs, backoff=Backoff(), grace=GRACE, notify=self._event)
        for name, server in servers.items():
            assert server.proc is not None
            self.supervisor.adopt(name, server.proc)  # restarts reuse its port and data dir
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
                "admin_nkey_seed_file": (self.creds.seed_file(ADMIN) or None) if self.creds else None,
                "secrets_key": self.creds.secrets_key if self.creds else None,
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
        """Ingress and the admin service both answer (the CLI's commands need the latter)."""
        try:
            return all(client.get(url).status_code == 200 for url in (self.ep.health_url, self.ep.admin_health_url))
        except httpx.HTTPError:
            return False

    def watch(self) -> int:
        """Supervise until a stop signal (exit 0); a child that dies, NATS and Valkey included, is restarted."""
        assert self.supervisor is not None
        started, ready, warned, swept = time.monotonic(), False, False, 0.0
        healthy_since: float | None = None
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while not self.stop.requested:
                self.supervisor.poll()
                if time.monotonic() - swept >= 1.0:
                    swept = time.monotonic()
                    self.sweeper.sweep(self.known_pids())
                if not ready:
                    if self._healthy(client):
                        healthy_since = healthy_since or time.monotonic()
                        down, starting = self._servers(client)
                        if not starting or time.monotonic() - healthy_since >= SERVERS_WAIT:
                            ready = True
                            self._write_stack_file(ready=True)
                            self._banner(down, starting)
                    elif not warned and time.monotonic() - started > HEALTH_WARN_AFTER:
                        warned = True
                        logs = self.ep.data_dir / "logs"
                        self._event(
                            f"ingress or the admin service is not answering {self.ep.health_url} or "
                            f"{self.ep.admin_health_url} yet; see {logs / 'ingress.log'} and {logs / 'admin.log'}"
                        )
                time.sleep(0.25 if ready else 0.1)
        return 0

    def _servers(self, client: httpx.Client) -> tuple[list[str], list[str]]:
        """(unavailable, still starting).

        The configured servers ingress reports unavailable, and those it reports neither unavailable nor
        ready (whose tools, prompts and resources it serves)."""
        try:
            body = client.get(self.ep.health_url).json()
        except (httpx.HTTPError, ValueError):
            body = {}
        down, ready = (_names(body, key) for key in ("unavailable", "ready"))
        enabled = [name for name, server in self.config.mcp_servers.items() if not server.disabled]
        return down, [name for name in enabled if name not in {*down, *ready}]

    def _banner(self, down: list[str], starting: list[str]) -> None:
        ep, config, out = self.ep, self.config, self.out
        keys = ", ".join(escape(k.name) for k in config.keys) or "[yellow]none: every request will be refused[/]"
        servers = banner_servers(config, down, starting)

        def origin(url: str | None, embedded: object) -> str:
            return escape(safe_url(url or "")) + (" [dim](embedded)[/]" if embedded else " [dim](external)[/]")

        chdb = ep.clickhouse_url.startswith("chdb://")
        cli = escape(cli_command())  # hints that run as printed: `./run keys list` when started by ./run
        at = escape(data_dir_flag(ep.data_dir))
        out.print()
        out.print(f"[bold green]Bastion is up[/] [dim]v{bastion_version()}[/]")
        out.print(f"  MCP URL     [bold]{ep.mcp_url}[/]")
        if ep.host in ("0.0.0.0", "::", ""):
            out.print(f"  listening   on all interfaces ({escape(ep.host or '*')}:{ep.port})")
        out.print(f"  keys        {keys}  [dim](send one as 'Authorization: Bearer <key>')[/]")
        out.print(
            f"  OAuth       or log in without a key, once `{cli} users create <id> --password{at}` made a user "
            "[dim](docs/oauth.md)[/]"
        )
        out.print(f"  servers     {servers}")
        if self.ingress_replicas > 1:
            out.print(
                f"  ingress     {self.ingress_replicas} replicas on port {ep.port}, sessions shared "
                "[dim](--ingress-replicas: the kernel spreads connections among them)[/]"
            )
        out.print(f"  web page    {ep.web_url}")
        out.print(f"  admin       {ep.admin_base_url}  [dim](the admin service: API, docs, dashboard)[/]")
        out.print(f"  admin API   {ep.admin_url}  [dim](token in the stack file; try `{cli} keys list{at}`)[/]")
        out.print(f"  API docs    {ep.docs_url}")
        out.print(f"  console     {ep.console_url}  [dim](the web console: servers, keys, traffic, playground)[/]")
        out.print(f"  dashboard   {ep.dashboard_url}  [dim](`{cli} analytics query{at}` for SQL)[/]")
        first = True
        for svc, port in self.metrics_ports.items():
            label = "metrics" if first else ""
            out.print(f"  {label:<12}http://127.0.0.1:{port}/metrics  [dim]({svc})[/]")
            first = False
        out.print(f"  NATS        {origin(ep.nats_url, self.nats)}")
        if isinstance(self.nats, EmbeddedNatsCluster):
            out.print(
                f"              a {len(self.nats.members)}-server cluster, "
                f"{os.environ.get('BASTION_NATS_REPLICAS')} replicas of every stream [dim](--nats-cluster)[/]"
            )
        out.print(f"  Redis       {origin(ep.redis_url, self.valkey)}")
        clickhouse = escape(ep.clickhouse_url) + " [dim](embedded)[/]" if chdb else origin(ep.clickhouse_url, False)
        out.print(f"  ClickHouse  {clickhouse}")
        if config.stack.colocate:
            out.print("  services    ingress and executor in one process [dim](stack.colocate)[/], the others apart")
        out.print(f"  logs        {escape(str(ep.data_dir / 'logs'))}/<service>.log")
        out.print(f"  stack file  {escape(str(ep.data_dir / STACK_FILE))}")
        for warning in [*server_warnings(config), *grant_warnings(config)]:
            out.print(f"  [yellow]warning:[/] {escape(warning)}")
        out.print("[bold]Ctrl-C to stop[/]")

    def shutdown(self) -> None:
        """Ingress, then the other services, then stragglers, Valkey, NATS; nothing survives."""
        if self.supervisor is not None:
            why = f"{self.stop.received} received; " if self.stop.received else ""
            self.err.print(f"[dim]bastion: {why}stopping services…[/]")
            replicas = tuple(ingress_names(self.ingress_replicas))  # first, with admin: no request taken then dropped
            order = ((*replicas, *STOP_ORDER[0][1:]), *STOP_ORDER[1:])
            self.supervisor.stop(order, force=lambda: self.stop.force, keep=self.embedded())
        self.sweeper.finish(self.infra_pids(), timeout=0.0 if self.stop.force else 3.0)
        servers = self.embedded()
        if self.supervisor is not None:
            self.supervisor.stop([("valkey",), [n for n in servers if n != "valkey"]], force=lambda: self.stop.force)
        for server in servers.values():  # not adopted yet if the start was cut short
            server.stop()
        self.sweeper.finish(set(), timeout=1.0)
        if self.wrote_stack_file:
            remove_stack(self.ep.data_dir)
        for held in self.held:
            held.release()


def _names(body: object, key: str) -> list[str]:
    """The server names `/healthz` lists under `key` (none when it lists none, or is not JSON)."""
    found = body.get(key) if isinstance(body, dict) else None
    return [name for name in found if isinstance(name, str)] if isinstance(found, list) else []


def run_up(
    config_path: Path,
    *,
    host: str | None = None,
    port: int | None = None,
    data_dir: Path | None = None,
    admin_port: int | None = None,
    nats_cluster: int | None = None,
    ingress_replicas: int = 1,
    out: Console | None = None,
    err: Console | None = None,
) -> int:
    """Run the stack until Ctrl-C/SIGTERM; the exit code (2: bad config, 1: could not run).

    `nats_cluster` (3 or more) overrides `stack.nats_cluster`; `ingress_replicas` ingress processes share
    the gateway's port."""
    out = out or Console(soft_wrap=True)
    err = err or Console(stderr=True, soft_wrap=True)
    try:
        config = load_config(config_path)
        check_config_policies(config.policies, str(config_path))
        key_records(config)  # key_env variables set, no shared secrets: checked before anything starts
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    ep = resolve_endpoints(config, host, port, data_dir, os.environ, admin_port)
    if (other := running_stack(ep.data_dir)) is not None:
        err.print(
            f"[red]error:[/] a stack is already running from {escape(str(ep.data_dir))} (pid {other.get('pid')}, "
            f"{escape(str(other.get('mcp_url')))}); stop it first or use another --data-dir",
            soft_wrap=True,
        )
        return 1
    if (problem := bind_problem(ep.host, os.environ)) is not None:
        err.print(f"[red]error:[/] {escape(problem)}")
        return 1
    for bind, number, flag in ((ep.host, ep.port, "--port"), (ep.admin_host, ep.admin_port, "--admin-port")):
        if (problem := port_problem(bind, number, flag)) is not None:
            err.print(f"[red]error:[/] {escape(problem)}")
            return 1
    cluster = config.stack.nats_cluster if nats_cluster is None else nats_cluster
    if cluster == 2:
        err.print("[red]error:[/] --nats-cluster: a cluster needs 3 or more servers to survive losing one")
        return 2
    if not 1 <= ingress_replicas <= MAX_INGRESS_REPLICAS:
        err.print(f"[red]error:[/] --ingress-replicas: 1 to {MAX_INGRESS_REPLICAS}")
        return 2

    set_child_subreaper()
    compile_packages()  # before the umask: bytecode files take their source's mode, as Python writes them
    os.umask(PRIVATE_UMASK)  # logs, stores, the ClickHouse files: everything the stack writes is private
    checked = hold_addresses([(ep.host, ep.port), (ep.admin_host, ep.admin_port)])
    with StopSignals() as stop:
        stack = _Stack(
            config, Path(config_path), ep, out, err, stop, nats_cluster=cluster, ingress_replicas=ingress_replicas
        )
        stack.held.append(checked)
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
