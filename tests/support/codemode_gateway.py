"""A test module's gateway with the codemode service: started once its catalog is complete, and
shared by the module's tests (`SharedGateway`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from libs.common.settings import CodeModeSettings
from services.codemode.service import CodeModeService
from tests.support.gateway import Gateway, gateway_on_own_servers, shared_gateway_fixture
from tests.support.polling import poll_until

__all__ = ["codemode_ready", "shared_codemode_fixture"]


@contextlib.asynccontextmanager
async def codemode_ready(
    running: contextlib.AbstractAsyncContextManager[Gateway], servers: set[str] | None = None
) -> AsyncIterator[Gateway]:
    """The gateway `running` starts, once its codemode service's catalog holds exactly `servers` (None:
    any server at all); the service is `gw.codemode`."""
    async with running as gw:
        codemode = next(s for s in gw.services if isinstance(s, CodeModeService))
        listed = lambda: {server for server, _ in codemode.catalog.pairs}  # noqa: E731
        await poll_until(lambda: listed() == servers if servers is not None else bool(listed()), "the codemode catalog")
        gw.codemode = codemode  # type: ignore[attr-defined]
        yield gw


def shared_codemode_fixture(
    config: Callable[[], dict[str, Any]], settings: CodeModeSettings, servers: set[str] | None = None
) -> Any:
    """The module-scoped `SharedGateway` fixture of a module whose gateway runs codemode with
    `settings` on `config()`, on servers of its own, ready once its catalog holds `servers`."""
    return shared_gateway_fixture(
        lambda workdir: codemode_ready(gateway_on_own_servers(workdir, config(), codemode=settings), servers)
    )
