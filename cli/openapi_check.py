"""`bastion config check` for `openapi` servers.

Each document read and turned into tools as the executor will, with what it refuses (and where) and what
it leaves out, so problems show before `bastion up`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from libs.common.contracts.config import BastionConfig, ConfigError
from libs.common.web.egress_rules import EgressRules
from services.executor.upstreams.openapi.api import Api
from services.executor.upstreams.openapi.source import DocumentError

from .summary import safe_url

__all__ = ["load_openapi_servers", "print_openapi_report"]


def load_openapi_servers(config: BastionConfig, source: str) -> dict[str, Api]:
    """Each enabled `openapi` server's API; `ConfigError` naming the first document that cannot be served."""
    from services.executor.upstreams.openapi.api import load_api

    apis: dict[str, Api] = {}
    for name, server in config.mcp_servers.items():
        if server.openapi is None or server.disabled:
            continue
        try:
            # within the same egress rules as the executor: a document it would refuse fails here too
            egress = EgressRules([*config.egress.allow_private_hosts, *server.allow_private_hosts])
            apis[name] = load_api(server.openapi, egress=egress)
        except DocumentError as exc:
            raise ConfigError(f"{source}: mcpServers.{name}.openapi.document: {exc}") from None
    return apis


def print_openapi_report(apis: dict[str, Api], console: Console) -> None:
    """What each document turned into, what it refused (and where) and what it left out."""
    for name, api in apis.items():
        title = f" {api.title!r}" if api.title else ""
        version = f"Swagger {api.version}" if api.version.startswith("2") else f"OpenAPI {api.version}"
        console.print(
            f"[bold]openapi[/] {escape(name)}: {version}{escape(title)}: {len(api.tools)} tool(s) from "
            f"{api.operations} operation(s), requests to {escape(safe_url(api.base_url))}"
        )
        for refusal in api.refused:
            console.print(f"  [yellow]refused[/] {escape(refusal.where)}: {escape(refusal.why)}", soft_wrap=True)
        for note in api.notes:
            console.print(f"  [dim]{escape(note)}[/]", soft_wrap=True)
