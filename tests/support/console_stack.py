"""The stack the console's browser tests drive: a gateway on a module's own NATS and Valkey, and the
admin service that serves the console, told where the gateway is (as under `bastion up`: the
playground's calls go to it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from services.admin.service import AdminService
from tests.support.admin_api import running_admin
from tests.support.gateway import Gateway, own_servers, running_gateway

__all__ = ["console_stack"]


@contextlib.asynccontextmanager
async def console_stack(
    workdir: Path, config: dict[str, Any], admin: dict[str, Any] | None = None, **gateway: Any
) -> AsyncIterator[tuple[Gateway, AdminService, str]]:
    """The gateway of `config` (further `running_gateway` options in `gateway`), the admin service (further
    `AdminSettings` in `admin`) and its first owner's API token, all stopped after the block."""
    with own_servers(workdir) as (nats, valkey):
        async with (
            running_gateway(nats.url, valkey.url, workdir, config, **gateway) as front,
            running_admin(nats.url, public_url=front.url.removesuffix("/mcp"), **(admin or {})) as (service, owner),
        ):
            yield front, service, owner
