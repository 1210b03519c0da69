"""Human summaries of a config, for `bastion config check` and the `bastion up` banner.

Nothing secret is shown: no key material, no upstream `env`/`headers` values, stdio arguments
that look like tokens are masked, and URLs lose their userinfo and query string.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

    from libs.common.contracts.config import BastionConfig, ServerConfig

__all__ = [
    "banner_servers",
    "command_problem",
    "grant_warnings",
    "print_summary",
    "safe_url",
    "server_target",
    "server_warnings",
]


def safe_url(url: str) -> str:
    """`url` (or a comma-separated list) without credentials or query: fit for a terminal or a log."""
    if "," in url:
        return ",".join(safe_url(u.strip()) for u in url.split(","))
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if not netloc:  # chdb:///path: urlunsplit would drop the empty authority
        return f"{parts.scheme}://{parts.path}" if parts.scheme else parts.path
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_SENSITIVE = re.compile(r"token|secret|passw|key|auth|bearer|credential|api[_-]?key", re.IGNORECASE)


def _redacted_args(args: list[str]) -> list[str]:
    """Arguments with likely secrets masked: values of `--token x`, `--api-key=x`, bare `bk_...`."""
    shown: list[str] = []
    hide_next = False
    for arg in args:
        flag, eq, _value = arg.partition("=")
        if hide_next:
            shown.append("***")
        elif arg.startswith("-") and eq and _SENSITIVE.search(flag):
            shown.append(f"{flag}=***")
        elif arg.startswith(("bk_", "Bearer ")) or (len(arg) >= 24 and not re.search(r"[/\\.\s]", arg)):
            shown.append("***")
        else:
            shown.append(arg)
        hide_next = arg.startswith("-") and not eq and bool(_SENSITIVE.search(arg))
    return shown


def server_target(server: ServerConfig) -> str:
    """What the server runs or where it lives, with likely secrets masked."""
    if server.command:
        return " ".join([server.command, *_redacted_args(server.args)])
    if server.openapi is not None:
        document = server.openapi.document
        return safe_url(document) if server.openapi.is_url else document
    return safe_url(server.url or "")


def grant_warnings(config: BastionConfig) -> list[str]:
    """Grants naming a server the config does not define: valid, but probably a typo."""
    warnings = []
    for key in config.keys:
        for grant in key.tools:
            server = grant.split("/", 1)[0]
            if grant != "*" and not any(c in server for c in "*?[") and server not in config.mcp_servers:
                warnings.append(f"key {key.name!r}: grant {grant!r} names no configured server")
    return warnings


def command_problem(server: ServerConfig, environ: dict[str, str] | None = None) -> str | None:
    """Why a stdio server's command cannot start on this machine (not found, not executable), or None.

    It is looked up as the executor spawns it: on the `PATH` of its `env` if it sets one, else on this
    environment's (`bastion up` runs the executor with it), a path relative to its `cwd`."""
    if not server.command or server.disabled:
        return None
    command = server.command
    if "/" in command:
        path = Path(command) if Path(command).is_absolute() else Path(server.cwd or ".") / command
        if not path.is_file():
            return f"command not found: {command}"
        return None if os.access(path, os.X_OK) else f"command is not executable: {command}"
    environ = dict(os.environ) if environ is None else environ
    search = server.env.get("PATH", environ.get("PATH", os.defpath))
    return None if shutil.which(command, path=search) else f"command not found on PATH: {command}"


def server_warnings(config: BastionConfig) -> list[str]:
    """Servers that will be unavailable as configured: a stdio command that cannot be found."""
    return [
        f"server {name!r}: {problem} (it will be unavailable: install it, or give `command` its full path)"
        for name, server in config.mcp_servers.items()
        if (problem := command_problem(server)) is not None
    ]


def banner_servers(config: BastionConfig, down: Collection[str] = (), starting: Collection[str] = ()) -> str:
    """The `bastion up` banner's server list (rich markup).

    Each server with its transport, marked when it is unavailable (its command cannot be found here, or
    the gateway reports it `down`) or still `starting` (not listed yet: its tools, prompts and resources
    come when it is ready)."""
    shown = []
    for name, server in config.mcp_servers.items():
        if server.disabled:
            shown.append(f"{escape(name)} ({server.transport}, disabled)")
            continue
        problem = command_problem(server) or ("see `bastion servers list`" if name in down else None)
        mark = f", [red]unavailable: {escape(problem)}[/]" if problem else ""
        if not problem and name in starting:
            mark = ", [yellow]still starting: not listed yet[/]"
        shown.append(f"{escape(name)} ({server.transport}{mark})")
    return ", ".join(shown) or "none"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def print_summary(config: BastionConfig, console: Console) -> None:
    servers = config.mcp_servers
    console.print(f"[bold]servers[/] ({len(servers)}):" if servers else "[bold]servers[/]: none")
    width = max((len(n) for n in servers), default=0)
    for name, server in servers.items():
        notes = []
        if server.disabled:
            notes.append("disabled")
        if (problem := command_problem(server)) is not None:
            notes.append(problem)
        if server.tools is not None:
            notes.append(f"exposes {_plural(len(server.tools), 'tool pattern')}")
        if server.env or server.headers:
            notes.append(f"{_plural(len(server.env) + len(server.headers), 'env/header value')} (hidden)")
        if server.openapi is not None and server.openapi.auth is not None:
            notes.append(f"auth {server.openapi.auth.type} (secrets hidden)")
        suffix = f"  [dim]{escape(', '.join(notes))}[/]" if notes else ""
        console.print(f"  {name:<{width}}  {server.transport:<7}  {escape(server_target(server))}{suffix}")
    keys = config.keys
    console.print(f"[bold]keys[/] ({len(keys)}):" if keys else "[bold]keys[/]: none (every request will be refused)")
    width = max((len(k.name) for k in keys), default=0)
    for key in keys:
        grants = ", ".join(key.tools) if key.tools else "nothing (deny by default)"
        console.print(
            f"  {escape(key.name):<{width}}  {_plural(len(key.tools), 'grant')}: {escape(grants)}", soft_wrap=True
        )
    for warning in [*server_warnings(config), *grant_warnings(config)]:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
