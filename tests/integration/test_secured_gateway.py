"""Every service does its whole job with its own credentials only: the gateway in-process on a
nats-server with the generated permissions, Valkey with policy's password, sealed secrets and signed
work. A public ingress replica runs without admin credentials; the admin API writes keys through its
own connection; calls run and are audited; and no connection is ever refused anything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import nats
import openai
import pytest

from cli.apply import apply_config
from cli.credentials import StackCredentials, make_credentials
from cli.stack import EmbeddedNats, EmbeddedValkey
from libs.common.bus.nats import credentials
from libs.common.bus.permissions import ADMIN, AUDIT, EXECUTOR, INGRESS, POLICY
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows, Caller
from libs.common.runtime.sealing import Sealer
from libs.common.settings import AdminSettings, AuditSettings, ExecutorSettings, IngressSettings, PolicySettings
from libs.common.settings.config_file import parse_config
from services.admin.service import AdminService
from services.audit.service import AuditService
from services.executor.service import ExecutorService
from services.ingress.service import IngressService
from services.policy.service import PolicyService
from tests.support.admin_api import BOOTSTRAP, first_owner
from tests.support.egress import LOOPBACK_UPSTREAMS
from tests.support.gateway import ADMIN_KEY, Gateway, default_config
from tests.support.llm_provider import Reply, scripted_provider
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

# the servers each test calls, no more: every stdio server is a Python process to start
ECHO_ONLY = {**default_config(), "mcpServers": {"echo": default_config()["mcpServers"]["echo"]}}
NO_SERVERS = {**default_config(), "mcpServers": {}}


class Refusals(logging.Handler):
    """Every permission or authorization error any connection of any service reported."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().lower()
        if "violation" in text:
            self.seen.append(record.getMessage())


@contextlib.asynccontextmanager
async def secured_stack(
    tmp_path: Path, raw_config: dict[str, Any]
) -> AsyncIterator[tuple[StackCredentials, EmbeddedNats, tuple[AdminService, IngressService, str]]]:
    creds = make_credentials(tmp_path, {})
    bus = EmbeddedNats(tmp_path / "nats", authorization=creds.authorization).start()
    valkey = EmbeddedValkey(tmp_path / "valkey", password=creds.valkey_password).start()
    started: list[Any] = []
    try:
        nc = await nats.connect(bus.url, **credentials(ADMIN, creds.seed_file(ADMIN)))
        await apply_config(nc, parse_config(raw_config), Sealer(creds.secrets_key))
        await nc.close()
        common = {"nats_url": bus.url}
        services: tuple[Any, ...] = (
            AuditService(
                AuditSettings(
                    **common,
                    nats_nkey_seed_file=creds.seed_file(AUDIT),
                    clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
                )
            ),
            PolicyService(
                PolicySettings(
                    **common,
                    nats_nkey_seed_file=creds.seed_file(POLICY),
                    redis_url=valkey.url,
                    bus_signing_key=creds.bus_signing_key,
                )
            ),
            ExecutorService(
                ExecutorSettings(
                    **common,
                    egress=LOOPBACK_UPSTREAMS,  # its scripted provider runs on this machine
                    nats_nkey_seed_file=creds.seed_file(EXECUTOR),
                    secrets_key=creds.secrets_key,
                    bus_signing_key=creds.bus_signing_key,
                )
            ),
        )
        for service in services:
            await service.start()
            started.append(service)
        admin_service = AdminService(
            AdminSettings(
                **common,
                admin_port=0,
                nats_nkey_seed_file=creds.seed_file(ADMIN),
                admin_bootstrap_token=BOOTSTRAP,
                secrets_key=creds.secrets_key,
            )
        )
        public_replica = IngressService(IngressSettings(**common, port=0, nats_nkey_seed_file=creds.seed_file(INGRESS)))
        for front in (admin_service, public_replica):
            await front.start()
            started.append(front)
        yield creds, bus, (admin_service, public_replica, await first_owner(admin_service))
    finally:
        for service in reversed(started):
            await service.stop()
        valkey.stop()
        bus.stop()


async def test_each_service_does_its_job_with_only_its_own_credentials(tmp_path: Path) -> None:
    refusals = Refusals()
    logging.getLogger().addHandler(refusals)
    try:
        async with secured_stack(tmp_path, ECHO_ONLY) as (creds, bus, (admin_service, public_replica, owner)):
            public = Gateway(public_replica.url, bus.url, parse_config(ECHO_ONLY), public_replica)
            await public.wait_for_servers("echo")  # sealed config, opened by the executor
            async with public.client(ADMIN_KEY) as client:
                added = await client.call_tool("echo__add", {"a": 20, "b": 22})  # signed by policy, run
                assert added.structured_content == {"result": 42}

            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {owner}"}) as http:
                admin = admin_service.url + "/admin/v1"
                made = await http.post(f"{admin}/keys", json={"name": "made-live", "grants": ["echo/echo"]})
                assert made.status_code == 201, made.text
                secret = made.json()["secret"]
                public_admin = public_replica.url.removesuffix("/mcp") + "/admin/v1/keys"
                assert (await http.get(public_admin)).status_code == 404, "no admin API on a public replica"
            await poll_until(
                lambda: isinstance(public_replica.keys.authenticate(f"Bearer {secret}"), Caller),
                "the new key at the public replica",
            )
            async with public.client(secret) as client:
                echoed = await client.call_tool("echo__echo", {"text": "with a key made through the admin API"})
                assert echoed.content[0].text == "with a key made through the admin API"

            nc = await nats.connect(bus.url, **credentials(ADMIN, creds.seed_file(ADMIN)))
            try:
                rows: list[str] = []
                for _attempt in range(150):  # the audit service writes within its flush interval (1 s)
                    query = AuditQuery(limit=50).model_dump_json().encode()
                    reply = await nc.request(subjects.AUDIT_QUERY, query, timeout=10)
                    rows = [row.tool for row in AuditRows.model_validate_json(reply.data).rows]
                    if {"add", "echo"} <= set(rows):
                        break
                    await asyncio.sleep(0.2)
                assert {"add", "echo"} <= set(rows), "both calls audited, read back through the admin role"
            finally:
                await nc.close()
    finally:
        logging.getLogger().removeHandler(refusals)
    assert refusals.seen == [], "a service was refused something it needs"


async def test_the_llm_side_runs_with_only_each_services_own_credentials(tmp_path: Path) -> None:
    """A provider added through the admin API (key sealed), a streamed completion through the public
    replica: ingress -> policy -> executor (signed) -> provider, chunks back on ingress's inbox."""
    refusals = Refusals()
    logging.getLogger().addHandler(refusals)
    try:
        async with (
            scripted_provider() as provider,
            secured_stack(tmp_path, NO_SERVERS) as (_, _bus, (admin_service, public, owner)),
        ):
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {owner}"}) as http:
                admin = admin_service.url + "/admin/v1"
                config = {"base_url": provider.base_url, "api_key": "sk-secured-provider-key", "models": ["gpt-sec"]}
                added = await http.post(f"{admin}/llm-providers", json={"name": "scripted", "config": config})
                assert added.status_code == 201, added.text
            provider.script = [Reply("through the secured bus")]
            client = openai.AsyncOpenAI(base_url=public.url.removesuffix("/mcp") + "/v1", api_key=ADMIN_KEY)
            try:

                async def streamed() -> str | None:
                    try:
                        stream = await client.chat.completions.create(
                            model="gpt-sec", messages=[{"role": "user", "content": "hi"}], stream=True
                        )
                        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                    except openai.APIStatusError as exc:  # until ingress and the executor both have it
                        if "does not exist" in exc.message or "no provider serves" in exc.message:
                            return None
                        raise

                assert await poll_until(streamed, "a streamed completion") == "through the secured bus"
            finally:
                await client.close()
            assert provider.received[0].headers["authorization"] == "Bearer sk-secured-provider-key"
    finally:
        logging.getLogger().removeHandler(refusals)
    assert refusals.seen == [], "a service was refused something it needs"
