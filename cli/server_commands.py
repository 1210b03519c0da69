"""`bastion servers|llm-providers add|remove|list`.

Upstream MCP servers (with their status, and the link to authorize one that needs OAuth) and the
OpenAI-compatible providers behind `/v1`.

(No `from __future__ import annotations`: typer reads the annotations of the signatures that
`command` assembles, and they must be real objects.)
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .admin_base import Json, command, group, out, print_json, print_listing, removal_command, usage
from .admin_client import AdminClient
from .admin_values import parse_pairs
from .registry_import import import_server

__all__ = ["openapi_section", "providers_app", "servers_app"]

servers_app = group("Upstream MCP servers and their status.")
providers_app = group("OpenAI-compatible LLM providers behind /v1 (docs/llm.md).")


@command(servers_app, "add")
def servers_add(
    api: AdminClient,
    name: Annotated[str, typer.Argument(help="Server name; agents see its tools as <name>__<tool>.")],
    command: Annotated[
        list[str] | None, typer.Argument(help="stdio: the command and its arguments (put them after --).")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Remote server: its streamable HTTP (or SSE) URL.")] = None,
    transport: Annotated[str | None, typer.Option("--type", help="http (default for --url) or sse.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE for stdio; repeatable.")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="NAME=VALUE for HTTP; repeatable.")] = None,
    tools: Annotated[
        list[str] | None, typer.Option("--tool", help="Only expose these tool patterns; repeatable.")
    ] = None,
    openapi: Annotated[
        str | None,
        typer.Option(
            "--openapi",
            help="A REST API: its OpenAPI 3.0 / 3.1 or Swagger 2.0 document, a file (read by the executors) or a URL.",
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="--openapi: where requests go (default: the document's servers).")
    ] = None,
    include_tags: Annotated[
        list[str] | None, typer.Option("--include-tag", help="--openapi: only operations with this tag; repeatable.")
    ] = None,
    exclude_tags: Annotated[
        list[str] | None,
        typer.Option("--exclude-tag", help="--openapi: leave out operations with this tag; repeatable."),
    ] = None,
    exclude_methods: Annotated[
        list[str] | None,
        typer.Option("--exclude-method", help="--openapi: leave out operations of this method (delete); repeatable."),
    ] = None,
    allow_private_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-private-host",
            help="--url / --openapi: a host, as its URLs write it, the server may reach although it is not a "
            "public address (10.0.0.5, mcp.internal); repeatable. Only an owner may.",
        ),
    ] = None,
    entry: Annotated[
        str | None, typer.Option("--entry", help="The whole mcpServers entry as JSON (instead of the flags).")
    ] = None,
    registry: Annotated[str | None, typer.Option(help="Import NAME (SERVER[@VERSION]) from this registry.")] = None,
    local: Annotated[str | None, typer.Option("--as", help="--registry: the server's name here.")] = None,
    choice: Annotated[str | None, typer.Option(help="--registry: remote:N or package:N (default: first).")] = None,
    value: Annotated[list[str] | None, typer.Option("--value", help="--registry: ARG=VALUE; repeatable.")] = None,
) -> None:
    """Add an upstream MCP server, e.g.

    `bastion servers add notes -- python notes_server.py`, a REST API as one: `bastion servers add
    petstore --openapi ./petstore.yaml --base-url https://petstore.example/v3`, or one from an MCP
    Registry: `bastion servers add --registry official io.github.user/weather@1.2.0`."""
    if registry is not None:
        values = parse_pairs(env, "--env") | parse_pairs(header, "--header") | parse_pairs(value, "--value")
        return import_server(api, registry, name, local, choice, values, bool(command or url or openapi or entry))
    rest = (base_url, include_tags, exclude_tags, exclude_methods)
    if entry is not None:
        if command or url or env or header or tools or transport or openapi or allow_private_hosts or any(rest):
            raise usage("--entry replaces every other server flag; give one or the other")
        try:
            config = json.loads(entry)
        except ValueError as exc:
            raise usage(f"--entry: not valid JSON ({exc})") from None
    elif openapi is not None:
        if command or url or env or transport:
            raise usage("--openapi is a server of its own: no command, --url, --env or --type with it")
        config = {"openapi": openapi_section(openapi, base_url, include_tags, exclude_tags, exclude_methods)}
        config["headers"] = parse_pairs(header, "--header")
        if tools:
            config["tools"] = tools
    elif any(rest):
        raise usage("--base-url, --include-tag, --exclude-tag and --exclude-method go with --openapi")
    elif bool(command) == bool(url):
        raise usage("give the command to run (after --), --url or --openapi, exactly one")
    else:
        config = {"env": parse_pairs(env, "--env"), "headers": parse_pairs(header, "--header")}
        config |= {"command": command[0], "args": command[1:]} if command else {"url": url}
        if transport:
            config["type"] = transport
        if tools:
            config["tools"] = tools
    if allow_private_hosts and entry is None:
        if command:
            raise usage("--allow-private-host is for --url and --openapi servers (a stdio server makes no connection)")
        config["allow_private_hosts"] = allow_private_hosts
    added = api.post("/servers", {"name": name, "config": config})
    out.print(f"[green]added[/] server {escape(name)!r} [dim]({added['status']}: executors connect to it now)[/]")


def openapi_section(
    document: str,
    base_url: str | None,
    include_tags: list[str] | None,
    exclude_tags: list[str] | None,
    exclude_methods: list[str] | None,
) -> dict[str, Any]:
    """The `openapi` section the flags describe; a file document by its absolute path (the executors read it)."""
    location = document if document.lower().startswith(("http://", "https://")) else str(Path(document).resolve())
    section: dict[str, Any] = {"document": location}
    if base_url:
        section["base_url"] = base_url
    if include_tags:
        section["include"] = {"tags": include_tags}
    exclude: list[dict[str, Any]] = []
    if exclude_tags:
        exclude.append({"tags": exclude_tags})
    if exclude_methods:
        exclude.append({"methods": [m.lower() for m in exclude_methods]})
    if exclude:
        section["exclude"] = exclude
    return section


removal_command(
    servers_app, "remove", "/servers", "server", "Remove an upstream server; its tools disappear from every catalog."
)


_STATUS_STYLE = {"ready": "green", "unavailable": "red", "pending": "yellow", "disabled": "dim"}
_HEALTH_STYLE = {
    "healthy": "green",
    "degraded": "yellow",
    "open": "red",
    "down": "red",
    "needs_auth": "magenta",
    "disabled": "dim",
    "pending": "yellow",
}


_STDERR_SHOWN = 3
"""Lines of a failed stdio server's stderr shown under its error (`--json` has all the executor kept)."""


def _error_cell(server: dict[str, Any]) -> str:
    """The server's error, and under it the last lines it wrote on stderr: often the real cause."""
    cell = escape(server.get("error") or "")
    tail = server.get("stderr_tail") or []
    lines = [f"[dim]stderr:[/] {escape(line)}" for line in tail[-_STDERR_SHOWN:]]
    return "\n".join([cell, *lines]) if cell else "\n".join(lines)


@command(servers_app, "list")
def servers_list(api: AdminClient, as_json: Json = False) -> None:
    """List upstream servers with the status the executors report."""
    servers = api.get("/servers")
    if as_json:
        return print_json(servers)
    from libs.common.contracts.config import ServerConfig

    from .summary import server_target

    table = Table(
        "name", "transport", "target", "status", "health", "tools", "error", title=f"{len(servers)} server(s)"
    )
    links = [(s["name"], s["authorize_url"]) for s in servers if s.get("authorize_url")]
    for s in servers:
        config = ServerConfig.model_validate(s["config"])
        style = _STATUS_STYLE.get(s["status"], "white")
        table.add_row(
            escape(s["name"]),
            config.transport,
            escape(server_target(config)),
            f"[{style}]{s['status']}[/]",
            f"[{_HEALTH_STYLE.get(s.get('health', ''), 'white')}]{s.get('health', '-')}[/]",
            str(s["tools"]) if s["status"] == "ready" else "-",
            _error_cell(s),
        )
    out.print(table)
    for name, url in links:  # whole, on their own lines: a terminal must not wrap or cut a link
        print(f"authorize {name}: {url}")


@command(providers_app, "add")
def providers_add(
    api: AdminClient,
    name: Annotated[str, typer.Argument(help="Provider name (a lower-case slug).")],
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Up to and including /v1, e.g. http://localhost:11434/v1.")
    ] = None,
    models: Annotated[list[str] | None, typer.Option("--model", "-m", help="A model it serves; repeatable.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Variable of the executors' environment holding the key.")
    ] = None,
    api_key_stdin: Annotated[
        bool, typer.Option("--api-key-stdin", help="Read the provider key from standard input (sealed when stored).")
    ] = False,
    entry: Annotated[
        str | None, typer.Option("--entry", help="The whole llm.providers entry as JSON (instead of the flags).")
    ] = None,
) -> None:
    """Add a provider, e.g. `bastion llm-providers add ollama --base-url http://localhost:11434/v1 -m qwen3:8b`."""
    if entry is not None:
        if base_url or models or api_key_env or api_key_stdin:
            raise usage("--entry replaces every other provider flag; give one or the other")
        try:
            config = json.loads(entry)
        except ValueError as exc:
            raise usage(f"--entry: not valid JSON ({exc})") from None
    elif not base_url or not models:
        raise usage("give --base-url and at least one --model (or --entry)")
    else:
        config = {"base_url": base_url, "models": models}
        if api_key_env:
            config["api_key_env"] = api_key_env
        if api_key_stdin:
            key = sys.stdin.readline().strip()
            if not key:
                raise usage("--api-key-stdin: standard input held no key")
            config["api_key"] = key
    added = api.post("/llm-providers", {"name": name, "config": config})
    served = ", ".join(added["config"]["models"])
    out.print(f"[green]added[/] llm provider {escape(name)!r} [dim](serving {escape(served)} now)[/]")


removal_command(
    providers_app,
    "remove",
    "/llm-providers",
    "llm provider",
    "Remove a provider; its models disappear from /v1/models.",
)


@command(providers_app, "list")
def providers_list(api: AdminClient, as_json: Json = False) -> None:
    """List the providers, their models and where their key comes from (never the key)."""
    columns = ("name", "base url", "models", "key", "managed by")
    print_listing(api.get("/llm-providers"), as_json, columns, _provider_row, "provider")


def _provider_row(p: dict[str, Any]) -> tuple[str, ...]:
    config = p["config"]
    key = "stored" if config.get("api_key") else f"${config['api_key_env']}" if config.get("api_key_env") else "-"
    return (
        escape(p["name"]),
        escape(config["base_url"]),
        escape(", ".join(config["models"])),
        escape(key),
        "config file" if p.get("source") == "config" else "admin API",
    )
