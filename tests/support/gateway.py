"""The whole gateway in the test's event loop: every service started from its composition root
against real NATS, real Valkey and the real ClickHouse engine, with real upstream MCP servers.

In-process services make failures easy to read; `tests/e2e` covers the same path with
`bastion up` and one process per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import SecretStr

from cli.apply import apply_config
from cli.credentials import StackCredentials
from cli.ports import free_port
from cli.stack import EmbeddedNats, EmbeddedValkey
from libs.common.bus import local_lane
from libs.common.bus.local_lane import LocalLane
from libs.common.bus.nats import connect
from libs.common.bus.permissions import ADMIN, AUDIT, CODEMODE, EXECUTOR, INGRESS, OAUTH, POLICY
from libs.common.contracts.config import BastionConfig
from libs.common.runtime.sealing import Sealer, new_key
from libs.common.settings import (
    AdminSettings,
    AuditSettings,
    CodeModeSettings,
    ExecutorSettings,
    IngressSettings,
    OAuthSettings,
    PolicySettings,
)
from libs.common.settings.config_file import parse_config
from libs.common.web.guarded_http import shared_tls
from services.admin.service import AdminService
from services.audit.service import AuditService
from services.codemode.service import CodeModeService
from services.executor.service import ExecutorService
from services.ingress.service import IngressService
from services.oauth.service import OAuthService
from services.policy.service import PolicyService
from tests.support.admin_api import BOOTSTRAP, first_owner
from tests.support.egress import LOOPBACK_UPSTREAMS
from tests.support.polling import poll_until

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ROOT / "examples" / "servers"
READS_EXAMPLES = {"read": [str(SERVERS)]}
"""The `sandbox` of a test server that imports the example servers' `_runner` from beside its own
folder (docs/stdio-sandbox.md: a server reads its own script's folder, not the whole checkout)."""

ADMIN_KEY = "bk_test_admin_key_000000000000"
READONLY_KEY = "bk_test_readonly_key_00000000"
NOTHING_KEY = "bk_test_no_grants_key_0000000"

ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}", "Accept": "application/json, text/event-stream"}
"""What a raw HTTP client sends to `/mcp` as the admin key (the SDK client sets its own)."""


def legacy_initialize(
    request_id: int = 1, client: str = "t", capabilities: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A handshake-era (2025-06-18) `initialize` request, as a raw HTTP client posts it."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": capabilities or {},
            "clientInfo": {"name": client, "version": "1"},
        },
    }


def stdio_server(script: Path, **more: Any) -> dict[str, Any]:
    """The config entry of a stdio server that this python runs from `script`; `more` are further fields."""
    return {"command": sys.executable, "args": [str(script)], **more}


def default_config(extra_servers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "mcpServers": {
            "echo": stdio_server(SERVERS / "echo_server.py"),
            "notes": stdio_server(SERVERS / "notes_server.py"),
            **(extra_servers or {}),
        },
        "keys": [
            {"name": "admin", "key": ADMIN_KEY, "tools": ["*"]},
            {"name": "readonly", "key": READONLY_KEY, "tools": ["notes/list_notes", "echo/echo"]},
            {"name": "nothing", "key": NOTHING_KEY, "tools": []},
        ],
    }


def echo_only_config() -> dict[str, Any]:
    """The default config without `notes`, for a module none of whose tests calls it: its process would
    only cost a start."""
    config = default_config()
    del config["mcpServers"]["notes"]
    return config


def echoers_config(**sections: Any) -> dict[str, Any]:
    """A config serving the echo example, whose `echo` and `add` the group `echoers` may call: the
    OAuth tests' users are given it; `sections` are the rest (`users`, `teams`, ...)."""
    return {
        "mcpServers": {"echo": stdio_server(SERVERS / "echo_server.py")},
        "groups": [{"id": "echoers", "tools": ["echo/echo", "echo/add"]}],
        **sections,
    }


def _executor_egress(config: BastionConfig, options: dict[str, Any] | None) -> dict[str, Any]:
    """`options` with the executor's (and the admin service's) `egress`: the config's section, else the
    suite's loopback hosts."""
    egress = config.egress if "egress" in config.model_fields_set else LOOPBACK_UPSTREAMS
    return {"egress": egress, **(options or {})}


@contextlib.asynccontextmanager
async def example_server_over_http(*args: str, port: int = 0) -> AsyncIterator[str]:
    """`examples/servers/echo_server.py` serving on `port` (0: a free one; `--http` or `--sse`);
    yields its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVERS / "echo_server.py"), *args, "--port", str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@dataclass
class Gateway:
    url: str
    nats_url: str
    config: BastionConfig
    ingress: IngressService
    services: list[Any] = field(default_factory=list)
    admin: AdminService | None = None
    """The admin service, when the gateway was started with `admin=True`."""
    admin_token: str = ""
    """Its first owner's API token (made with the bootstrap token)."""

    @property
    def admin_api(self) -> str:
        """The admin API's root (`http://127.0.0.1:<admin port>/admin/v1`)."""
        assert self.admin is not None, "start the gateway with admin=True to get the admin service"
        return f"{self.admin.url}/admin/v1"

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @contextlib.asynccontextmanager
    async def client(
        self, key: str | None = ADMIN_KEY, mode: str = "auto", headers: dict[str, str] | None = None, **kw: Any
    ) -> AsyncIterator[Client]:
        """The official client on `key`; its HTTP connections close with it (the SDK leaves a
        client it was handed open)."""
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        async with httpx2.AsyncClient(headers=headers, timeout=30, verify=shared_tls()) as http:
            async with Client(streamable_http_client(self.url, http_client=http), mode=mode, **kw) as client:
                yield client

    async def tool_names(self, key: str | None, headers: dict[str, str] | None = None) -> set[str]:
        """The names `tools/list` shows `key`, sending these request `headers`."""
        async with self.client(key, headers=headers) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    async def refused_listing(self, key: str | None, headers: dict[str, str]) -> str:
        """The error message of a `tools/list` refused to `key` for these request `headers`."""
        async with self.client(key, headers=headers) as client:
            with pytest.raises(MCPError) as refused:
                await client.list_tools()
        return refused.value.error.message

    async def wait_for_servers(self, *servers: str, within: float = 30.0) -> None:
        catalog = self.ingress.catalog
        await poll_until(
            lambda: all((s := catalog.server_status(name)) is not None and s.status == "ready" for name in servers),
            f"servers {servers} in the ingress catalog",
            within,
        )

    async def apply(self, raw: dict[str, Any]) -> None:
        self.config = parse_config(raw)
        nc = await connect(self.nats_url, "test-apply")
        try:
            await apply_config(nc, self.config)
        finally:
            await nc.close()


def _public_url(ingress: dict[str, Any]) -> dict[str, Any]:
    return {"public_url": ingress["public_url"]} if ingress.get("public_url") else {}


@contextlib.asynccontextmanager
async def running_gateway(
    nats_url: str,
    redis_url: str,
    workdir: Path,
    raw_config: dict[str, Any] | None = None,
    clickhouse_url: str | None = None,
    executor: bool = True,
    policy: bool = True,
    secrets_key: str = "",
    oauth: bool = False,
    oauth_options: dict[str, Any] | None = None,
    executor_options: dict[str, Any] | None = None,
    policy_options: dict[str, Any] | None = None,
    admin_options: dict[str, Any] | None = None,
    audit_options: dict[str, Any] | None = None,
    codemode: CodeModeSettings | None = None,
    metrics: bool = False,
    lane: bool = False,
    admin: bool = False,
    creds: StackCredentials | None = None,
    **ingress: Any,
) -> AsyncIterator[Gateway]:
    """`executor=False` starts no executor (the test runs its own replicas, e.g. as processes it can
    kill) and so does not wait for any server to be ready; `policy=False` likewise starts no policy.
    `secrets_key` seals upstream secrets in KV (config apply, admin API) and opens them (executor), and
    the token signing key (oauth). `oauth=True` also starts the oauth service (with ingress's `public_url`,
    when given; `oauth_options` are further `OAuthSettings`); `executor_options` are further
    `ExecutorSettings`, `policy_options` further `PolicySettings`. `codemode` starts the codemode
    service with those settings (its NATS URL is filled in). `metrics` serves the `/metrics` of
    audit, policy, executor, oauth, admin and ingress on a free port each (`service.metrics_server.url`).
    `admin` starts the admin service too, with a first owner (`Gateway.admin_api`,
    `Gateway.admin_headers`). `lane`: every service's connection joins one in-process lane
    (`libs.common.bus.local_lane`), as co-located services do. The executor runs with the config's
    `egress` section as `bastion up` gives it one; a config without one gets `LOOPBACK_UPSTREAMS`
    (the suite's upstreams run on this machine). `creds`: the NATS is secured with these
    (`cli.credentials`): each service connects as its own role, the config is applied as the admin
    role, policy signs work and the executor verifies it. `admin_options` are further `AdminSettings`,
    `audit_options` further `AuditSettings`."""
    own = {"metrics_port": 0} if metrics else {}

    def role(name: str, **more: Any) -> dict[str, Any]:
        """Settings of the service `name` with its NKey when NATS is secured."""
        return {**({"nats_nkey_seed_file": creds.seed_file(name)} if creds else {}), **more}

    signed = {"bus_signing_key": creds.bus_signing_key} if creds else {}
    config = parse_config(raw_config or default_config())
    nc = await connect(nats_url, "test-setup", role=ADMIN, nkey_seed_file=creds.seed_file(ADMIN) if creds else "")
    await apply_config(nc, config, Sealer(secrets_key))
    await nc.close()
    started: list[Any] = []
    joining = contextlib.ExitStack()  # the services' connections, opened by start(), join the lane
    carrying = contextlib.ExitStack()  # and their messages carry their models while they run
    if lane:
        joining.enter_context(local_lane.sharing(LocalLane()))
        carrying.enter_context(local_lane.carrying_models())
    try:
        for service in (
            AuditService(
                AuditSettings(
                    nats_url=nats_url,
                    clickhouse_url=clickhouse_url or f"chdb://{workdir / 'clickhouse'}",
                    **role(
                        AUDIT,
                        **own,
                        # tests wait for rows often: half the default's wait, as before it grew
                        **{"flush_interval": 1.0, **(audit_options or {})},
                    ),
                )
            ),
            *(
                [
                    PolicyService(
                        PolicySettings(
                            nats_url=nats_url,
                            redis_url=redis_url,
                            **role(POLICY, **own, **signed, **(policy_options or {})),
                        )
                    )
                ]
                if policy
                else []
            ),
            *(
                [
                    ExecutorService(
                        ExecutorSettings(
                            nats_url=nats_url,
                            secrets_key=secrets_key,
                            **role(EXECUTOR, **own, **signed, **_executor_egress(config, executor_options)),
                        )
                    )
                ]
                if executor
                else []
            ),
            *(
                [
                    OAuthService(
                        OAuthSettings(
                            nats_url=nats_url,
                            secrets_key=secrets_key,
                            **role(OAUTH, **own, **_public_url(ingress), **(oauth_options or {})),
                        )
                    )
                ]
                if oauth
                else []
            ),
            *(
                [CodeModeService(codemode.model_copy(update={"nats_url": nats_url, **role(CODEMODE)}))]
                if codemode
                else []
            ),
            *(
                [
                    AdminService(
                        AdminSettings(
                            nats_url=nats_url,
                            admin_port=0,
                            admin_bootstrap_token=SecretStr(BOOTSTRAP),
                            secrets_key=SecretStr(secrets_key),
                            **role(ADMIN, **own, **_public_url(ingress), **_executor_egress(config, admin_options)),
                        )
                    )
                ]
                if admin
                else []
            ),
        ):
            await service.start()
            started.append(service)
        front = IngressService(IngressSettings(**{"nats_url": nats_url, "port": 0, **own, **role(INGRESS), **ingress}))
        await front.start()
        started.append(front)
        joining.close()  # the test's own connections stay off it
        service = next((s for s in started if isinstance(s, AdminService)), None)
        owner = await first_owner(service) if service is not None else ""
        gateway = Gateway(front.url, nats_url, config, front, started, service, owner)
        if executor:
            await gateway.wait_for_servers(
                *(n for n, s in config.mcp_servers.items() if not s.disabled and not n.startswith("down"))
            )
        yield gateway
    finally:
        joining.close()
        for service in reversed(started):
            await service.stop()
        carrying.close()


@contextlib.asynccontextmanager
async def running_oauth_gateway(
    nats_url: str, redis_url: str, workdir: Path, raw_config: dict[str, Any], port: int | None = None, **options: Any
) -> AsyncIterator[tuple[Gateway, str]]:
    """`running_gateway` with the oauth service (its signing key sealed under a fresh `secrets_key`),
    listening on `port` (a free one unless given) so that its public URL, the OAuth issuer and the base
    of every redirect URI, is known before it starts; yields the gateway and that URL. A free port
    another process takes before the ingress binds it is given up for another, at most twice."""
    for attempt in range(3):
        chosen = port or free_port()
        public = f"http://127.0.0.1:{chosen}"
        started = False
        try:
            async with running_gateway(
                nats_url,
                redis_url,
                workdir,
                raw_config,
                oauth=True,
                secrets_key=new_key(),
                port=chosen,
                public_url=public,
                **options,
            ) as gateway:
                started = True
                yield gateway, public
                return
        except OSError as refused:
            if started or port or attempt == 2 or refused.errno != errno.EADDRINUSE:
                raise


@contextlib.asynccontextmanager
async def gateway_on_own_servers(
    workdir: Path, raw_config: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[Gateway]:
    """`running_gateway` on a NATS and a Valkey of its own under `workdir`, stopped after it: the
    module-scoped gateway of a test module (the `nats_url` and `redis_url` fixtures live one test)."""
    with own_servers(workdir) as (nats, valkey):
        async with running_gateway(nats.url, valkey.url, workdir, raw_config, **options) as gw:
            yield gw


@contextlib.contextmanager
def own_servers(workdir: Path) -> Iterator[tuple[EmbeddedNats, EmbeddedValkey]]:
    """A NATS and a Valkey of a module's own under `workdir`, stopped after the block."""
    nats, valkey = EmbeddedNats(workdir / "nats").start(), EmbeddedValkey(workdir / "valkey").start()
    try:
        yield nats, valkey
    finally:
        nats.stop()
        valkey.stop()


T = TypeVar("T")


class SharedGateway(Generic[T]):
    """A test module's gateway, started when a test first needs it and stopped before a test starts one
    of its own (`close`, then `get` starts it again): the embedded audit store is one per process, so a
    second gateway's audit service could not open its own while this one's runs. `start` makes the
    gateway's context manager, e.g. `lambda: gateway_on_own_servers(workdir, config)`."""

    def __init__(self, start: Callable[[], contextlib.AbstractAsyncContextManager[T]]) -> None:
        self._start, self._running = start, contextlib.AsyncExitStack()
        self._gateway: T | None = None

    async def get(self) -> T:
        if self._gateway is None:
            self._gateway = await self._running.enter_async_context(self._start())
        return self._gateway

    async def close(self) -> None:
        self._gateway = None
        await self._running.aclose()

    async def __aenter__(self) -> SharedGateway[T]:
        """`async with SharedGateway(start) as holder: yield holder` in a module's fixture: stopped
        when the module is done."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def shared_gateway_fixture(start: Callable[[Path], contextlib.AbstractAsyncContextManager[T]]) -> Any:
    """The module-scoped fixture holding a module's `SharedGateway`: `start(workdir)` makes the
    gateway's context manager, in a fresh folder each time the gateway starts. A module binds it
    under the name its fixtures use: `shared = shared_gateway_fixture(lambda workdir: ...)`."""

    @pytest.fixture(scope="module")
    async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedGateway[T]]:
        async with SharedGateway(lambda: start(tmp_path_factory.mktemp("gateway"))) as holder:
            yield holder

    return shared
