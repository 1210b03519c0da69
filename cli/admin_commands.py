"""`bastion keys|groups|servers|llm-providers|customers|teams|users ...`: the admin API from a terminal.

Each command is one or two HTTP calls (`admin_client`) and a rich table or a line of text; `--json`
prints the API's answer as is, for scripts. Exit codes: 0 done, 1 the operation failed (refused by
the API, or the API unreachable), 2 the command line must change (bad value, missing settings).
A key secret is printed only by `keys create` and `keys rotate`, once, on stdout.

(No `from __future__ import annotations`: typer reads the annotations of the signatures that
`_command` assembles, and they must be real objects.)
"""

import functools
import getpass
import inspect
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .admin_client import AdminClient, AdminFailure, find_admin
from .terminal import FlagsGroup, console

__all__ = ["register"]

out = console()
keys_app = typer.Typer(
    help="Virtual keys: create, list, revoke, rotate (via the admin API).", no_args_is_help=True, cls=FlagsGroup
)
groups_app = typer.Typer(help="Tool groups: named bundles of grants.", no_args_is_help=True, cls=FlagsGroup)
servers_app = typer.Typer(help="Upstream MCP servers and their status.", no_args_is_help=True, cls=FlagsGroup)
providers_app = typer.Typer(
    help="OpenAI-compatible LLM providers behind /v1 (docs/llm.md).", no_args_is_help=True, cls=FlagsGroup
)
customers_app = typer.Typer(help="Customers (the top of the key hierarchy).", no_args_is_help=True, cls=FlagsGroup)
teams_app = typer.Typer(help="Teams (belong to a customer).", no_args_is_help=True, cls=FlagsGroup)
users_app = typer.Typer(help="Users (belong to a team).", no_args_is_help=True, cls=FlagsGroup)

_CONNECTION = [
    inspect.Parameter(
        "admin_url",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--admin-url",
                help="Gateway or admin API URL (default: BASTION_ADMIN_URL, then the running stack's).",
                rich_help_panel="Connection",
            ),
        ],
    ),
    inspect.Parameter(
        "admin_token",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--admin-token",
                help="Admin token (default: BASTION_ADMIN_TOKEN, then the running stack's).",
                show_default=False,
                rich_help_panel="Connection",
            ),
        ],
    ),
    inspect.Parameter(
        "data_dir",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option("--data-dir", help="Where stack.json is (default: .bastion).", rich_help_panel="Connection"),
        ],
    ),
]

Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


def _command(group: typer.Typer, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `func(api, ...)` as `group name ...` with the connection options added, an
    `AdminClient` passed as `api`, and every failure printed as one line with its exit code."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "api"]

        @functools.wraps(func)
        def wrapper(
            *args: Any,
            admin_url: str | None = None,
            admin_token: str | None = None,
            data_dir: Path | None = None,
            **kwargs: Any,
        ) -> None:
            try:
                target = find_admin(admin_url, admin_token, data_dir or Path(".bastion"))
                with AdminClient(target) as api:
                    func(api, *args, **kwargs)
            except AdminFailure as exc:
                print(f"error: {exc}", file=sys.stderr)
                raise typer.Exit(exc.exit_code) from None

        wrapper.__signature__ = signature.replace(parameters=[*own, *_CONNECTION])  # type: ignore[attr-defined]
        group.command(name)(wrapper)
        return func

    return decorate


def _usage(message: str) -> AdminFailure:
    return AdminFailure(message, 2)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# ---------------------------------------------------------------- value parsing


_PERIODS = ("minute", "hour", "day", "week", "month")
_WINDOWS = ("second", "minute", "hour", "day")


def parse_budget(text: str | None) -> dict[str, Any] | None:
    """`25`, `$25/day`, `10.5/month` -> a Budget body (period defaults to month)."""
    if text is None:
        return None
    amount, _, period = text.strip().removeprefix("$").partition("/")
    try:
        limit = float(amount)
    except ValueError:
        raise _usage(f"--budget {text!r}: expected USD[/period], e.g. 25/month") from None
    if limit < 0 or (period and period not in _PERIODS):
        raise _usage(f"--budget {text!r}: the amount must be >= 0 and the period one of {', '.join(_PERIODS)}")
    return {"limit_usd": limit, "period": period or "month"}


def parse_rate(text: str | None) -> dict[str, Any] | None:
    """`60`, `60/minute`, `5/second` -> a RateLimit body (window defaults to minute)."""
    if text is None:
        return None
    count, _, per = text.strip().partition("/")
    if not count.isdigit() or int(count) < 1 or (per and per not in _WINDOWS):
        raise _usage(f"--rate-limit {text!r}: expected REQUESTS[/window] with a window of {', '.join(_WINDOWS)}")
    return {"requests": int(count), "per": per or "minute"}


def parse_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        name, eq, content = value.partition("=")
        if not eq or not name:
            raise _usage(f"{flag} {value!r}: expected NAME=VALUE")
        pairs[name] = content
    return pairs


# ---------------------------------------------------------------- keys


def _resolve_key(api: AdminClient, ref: str, *, revoked_too: bool = False) -> dict[str, Any]:
    """A key by full id, unique id prefix (6+ hex characters), or the name of an active key (or,
    with `revoked_too` and no active key of that name, of a revoked one)."""
    keys = api.get("/keys")
    if re.fullmatch(r"[0-9a-f]{6,64}", ref):
        matches = [k for k in keys if k["id"].startswith(ref)]
    else:
        matches = [k for k in keys if k["name"] == ref and not k["revoked"]]
        if not matches and revoked_too:
            matches = [k for k in keys if k["name"] == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AdminFailure(f"no key matches {ref!r} (give its id, an id prefix, or the name of an active key)")
    raise AdminFailure(f"{ref!r} matches {len(matches)} keys; give more of the id")


def _limits(item: dict[str, Any]) -> str:
    parts = []
    if item.get("budget"):
        parts.append(f"${item['budget']['limit_usd']:g}/{item['budget']['period']}")
    if item.get("rate_limit"):
        parts.append(f"{item['rate_limit']['requests']}/{item['rate_limit']['per']}")
    return ", ".join(parts)


def _owner(key: dict[str, Any]) -> str:
    return ", ".join(f"{kind} {key[f'{kind}_id']}" for kind in ("user", "team", "customer") if key[f"{kind}_id"])


def _status(key: dict[str, Any]) -> str:
    status = "[red]revoked[/]" if key["revoked"] else "[green]active[/]"
    return status + (f" [dim]({escape(key['source'])})[/]" if key.get("source") else "")


def _print_secret(created: dict[str, Any], verb: str) -> None:
    key = created["key"]
    out.print(f"[green]{verb}[/] key {escape(key['name'])!r} [dim](id {key['id'][:12]})[/]")
    out.print("secret (shown once, store it now; send it as 'Authorization: Bearer <secret>'):", highlight=False)
    print(created["secret"])


@_command(keys_app, "create")
def keys_create(
    api: AdminClient,
    name: Annotated[str, typer.Argument(help="A unique name (shown in the audit trail).")],
    grant: Annotated[list[str] | None, typer.Option("--grant", "-g", help="server/tool pattern; repeatable.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Tool group id; repeatable.")] = None,
    user: Annotated[str | None, typer.Option(help="User id the key belongs to.")] = None,
    team: Annotated[str | None, typer.Option(help="Team id.")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    budget: Annotated[str | None, typer.Option(help="USD or USD/PERIOD, e.g. 25/month.")] = None,
    rate_limit: Annotated[str | None, typer.Option(help="REQUESTS or REQUESTS/WINDOW, e.g. 60/minute.")] = None,
    as_json: Json = False,
) -> None:
    """Create a key; its secret is printed once."""
    body = {
        "name": name,
        "grants": grant or [],
        "groups": group or [],
        "user_id": user,
        "team_id": team,
        "customer_id": customer,
        "budget": parse_budget(budget),
        "rate_limit": parse_rate(rate_limit),
    }
    created = api.post("/keys", body)
    if as_json:
        return _print_json(created)
    _print_secret(created, "created")


@_command(keys_app, "list")
def keys_list(api: AdminClient, as_json: Json = False) -> None:
    """List keys (never their secrets)."""
    keys = api.get("/keys")
    if as_json:
        return _print_json(keys)
    table = Table("id", "name", "grants", "groups", "belongs to", "limits", "status", title=f"{len(keys)} key(s)")
    for k in keys:
        table.add_row(
            k["id"][:12],
            escape(k["name"]),
            escape(", ".join(k["grants"]) or "-"),
            escape(", ".join(k["groups"]) or "-"),
            escape(_owner(k) or "-"),
            _limits(k) or "-",
            _status(k),
        )
    out.print(table)


@_command(keys_app, "show")
def keys_show(
    api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")], as_json: Json = False
) -> None:
    """Show one key in full (never its secret)."""
    found = _resolve_key(api, key, revoked_too=True)
    if as_json:
        return _print_json(found)
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(found["created_at"]))
    rows = [
        ("name", escape(found["name"])),
        ("id", found["id"]),
        ("status", _status(found)),
        ("grants", escape(", ".join(found["grants"]) or "none (deny by default)")),
        ("groups", escape(", ".join(found["groups"]) or "-")),
        ("belongs to", escape(_owner(found) or "-")),
        ("limits", _limits(found) or "-"),
        ("created", created),
    ]
    for label, value in rows:
        out.print(f"[bold]{label:<11}[/]{value}", highlight=False)


@_command(keys_app, "revoke")
def keys_revoke(api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")]) -> None:
    """Revoke a key: every gateway replica refuses it within moments."""
    found = _resolve_key(api, key, revoked_too=True)
    if found["revoked"]:
        out.print(f"key {escape(found['name'])!r} [dim](id {found['id'][:12]})[/] is already revoked: nothing to do")
        return
    api.post(f"/keys/{found['id']}/revoke")
    out.print(f"[green]revoked[/] key {escape(found['name'])!r} [dim](id {found['id'][:12]})[/]")


@_command(keys_app, "rotate")
def keys_rotate(
    api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")], as_json: Json = False
) -> None:
    """Issue a new secret for a key (same name, grants and limits) and revoke the old one."""
    found = _resolve_key(api, key)
    created = api.post(f"/keys/{found['id']}/rotate")
    if as_json:
        return _print_json(created)
    _print_secret(created, "rotated")


@_command(keys_app, "delete")
def keys_delete(api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")]) -> None:
    """Delete a key's record (revoking keeps it listed)."""
    found = _resolve_key(api, key)
    api.delete(f"/keys/{found['id']}")
    out.print(f"[green]deleted[/] key {escape(found['name'])!r} [dim](id {found['id'][:12]})[/]")


# ---------------------------------------------------------------- groups


@_command(groups_app, "create")
def groups_create(
    api: AdminClient,
    group_id: Annotated[str, typer.Argument(metavar="ID", help="Lower-case id, e.g. readers.")],
    tool: Annotated[list[str] | None, typer.Option("--tool", "-t", help="server/tool pattern; repeatable.")] = None,
    description: Annotated[str, typer.Option(help="What the group is for.")] = "",
) -> None:
    """Create a tool group."""
    api.post("/groups", {"id": group_id, "description": description, "tools": tool or []})
    out.print(f"[green]created[/] group {escape(group_id)!r} with {len(tool or [])} tool pattern(s)")


@_command(groups_app, "set-tools")
def groups_set_tools(
    api: AdminClient,
    group_id: Annotated[str, typer.Argument(metavar="ID")],
    tools: Annotated[
        list[str] | None, typer.Argument(help="The group's new server/tool patterns (none: empty).")
    ] = None,
) -> None:
    """Replace a group's tool patterns."""
    api.patch(f"/groups/{group_id}", {"tools": tools or []})
    out.print(f"[green]updated[/] group {escape(group_id)!r}: {escape(', '.join(tools or [])) or 'no tools'}")


@_command(groups_app, "list")
def groups_list(api: AdminClient, as_json: Json = False) -> None:
    """List tool groups."""
    groups = api.get("/groups")
    if as_json:
        return _print_json(groups)
    table = Table("id", "tools", "description", title=f"{len(groups)} group(s)")
    for g in groups:
        table.add_row(escape(g["id"]), escape(", ".join(g["tools"]) or "-"), escape(g["description"]))
    out.print(table)


def _delete_command(group: typer.Typer, path: str, label: str) -> None:
    @_command(group, "delete")
    def delete(
        api: AdminClient,
        entity_id: Annotated[str, typer.Argument(metavar="ID")],
        force: Annotated[bool, typer.Option(help="Delete even if keys or others still refer to it.")] = False,
    ) -> None:
        api.delete(f"{path}/{entity_id}", **({"force": "true"} if force else {}))
        out.print(f"[green]deleted[/] {label} {escape(entity_id)!r}")

    delete.__doc__ = f"Delete a {label} (refused while something refers to it, unless --force)."


# ---------------------------------------------------------------- customers, teams, users


@_command(customers_app, "create")
def customers_create(
    api: AdminClient,
    customer_id: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Option(help="Display name.")],
    group: Annotated[list[str] | None, typer.Option("--group", help="Tool group id; repeatable.")] = None,
    budget: Annotated[str | None, typer.Option(help="USD or USD/PERIOD, e.g. 500/month.")] = None,
) -> None:
    """Create a customer."""
    api.post("/customers", {"id": customer_id, "name": name, "groups": group or [], "budget": parse_budget(budget)})
    out.print(f"[green]created[/] customer {escape(customer_id)!r}")


@_command(teams_app, "create")
def teams_create(
    api: AdminClient,
    team_id: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Option(help="Display name.")],
    customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Tool group id; repeatable.")] = None,
    budget: Annotated[str | None, typer.Option(help="USD or USD/PERIOD.")] = None,
) -> None:
    """Create a team."""
    body = {"id": team_id, "name": name, "customer_id": customer, "groups": group or [], "budget": parse_budget(budget)}
    api.post("/teams", body)
    out.print(f"[green]created[/] team {escape(team_id)!r}")


@_command(users_app, "create")
def users_create(
    api: AdminClient,
    user_id: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Option(help="Display name.")],
    team: Annotated[str | None, typer.Option(help="Team id.")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Tool group id; repeatable.")] = None,
    rate_limit: Annotated[str | None, typer.Option(help="REQUESTS or REQUESTS/WINDOW.")] = None,
    password: Annotated[
        bool,
        typer.Option(
            "--password", help="Also set a password for OAuth logins (asked twice, or one line on standard input)."
        ),
    ] = False,
) -> None:
    """Create a user (with --password, one who can log in through OAuth: docs/oauth.md)."""
    secret = read_password() if password else None  # asked first: a typo must not leave a half-made user
    body = {"id": user_id, "name": name, "team_id": team, "groups": group or [], "rate_limit": parse_rate(rate_limit)}
    api.post("/users", body)
    out.print(f"[green]created[/] user {escape(user_id)!r}")
    if secret is not None:
        api.request("PUT", f"/users/{user_id}/password", {"password": secret})
        out.print(f"[green]password set[/] for user {escape(user_id)!r} [dim](only its scrypt hash is kept)[/]")


@_command(users_app, "set-password")
def users_set_password(api: AdminClient, user_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Set or change a user's password for OAuth logins (asked twice, or one line on standard input)."""
    api.request("PUT", f"/users/{user_id}/password", {"password": read_password()})
    out.print(f"[green]password set[/] for user {escape(user_id)!r} [dim](only its scrypt hash is kept)[/]")


def read_password() -> str:
    """A new password: typed twice on a terminal (not echoed), else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            raise _usage("the two passwords differ")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise _usage("no password given")
    return first


def _list_command(group: typer.Typer, path: str, label: str, link: str | None) -> None:
    @_command(group, "list")
    def list_entities(api: AdminClient, as_json: Json = False) -> None:
        items = api.get(path)
        if as_json:
            return _print_json(items)
        columns = ["id", "name", *([link.removesuffix("_id")] if link else []), "groups", "limits"]
        table = Table(*columns, title=f"{len(items)} {label}(s)")
        for item in items:
            linked = [escape(item.get(link) or "-")] if link else []
            table.add_row(
                escape(item["id"]),
                escape(item["name"]),
                *linked,
                escape(", ".join(item["groups"]) or "-"),
                _limits(item) or "-",
            )
        out.print(table)

    list_entities.__doc__ = f"List {label}s."


# ---------------------------------------------------------------- servers


@_command(servers_app, "add")
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
    entry: Annotated[
        str | None, typer.Option("--entry", help="The whole mcpServers entry as JSON (instead of the flags).")
    ] = None,
) -> None:
    """Add an upstream MCP server, e.g. `bastion servers add notes -- python notes_server.py`."""
    if entry is not None:
        if command or url or env or header or tools or transport:
            raise _usage("--entry replaces every other server flag; give one or the other")
        try:
            config = json.loads(entry)
        except ValueError as exc:
            raise _usage(f"--entry: not valid JSON ({exc})") from None
    elif bool(command) == bool(url):
        raise _usage("give the command to run (after --) or --url, exactly one")
    else:
        config = {"env": parse_pairs(env, "--env"), "headers": parse_pairs(header, "--header")}
        config |= {"command": command[0], "args": command[1:]} if command else {"url": url}
        if transport:
            config["type"] = transport
        if tools:
            config["tools"] = tools
    added = api.post("/servers", {"name": name, "config": config})
    out.print(f"[green]added[/] server {escape(name)!r} [dim]({added['status']}: executors connect to it now)[/]")


@_command(servers_app, "remove")
def servers_remove(api: AdminClient, name: Annotated[str, typer.Argument()]) -> None:
    """Remove an upstream server; its tools disappear from every catalog."""
    api.delete(f"/servers/{name}")
    out.print(f"[green]removed[/] server {escape(name)!r}")


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


@_command(servers_app, "list")
def servers_list(api: AdminClient, as_json: Json = False) -> None:
    """List upstream servers with the status the executors report."""
    from bastion_common.config import ServerConfig

    from .summary import server_target

    servers = api.get("/servers")
    if as_json:
        return _print_json(servers)
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
            escape(s.get("error") or ""),
        )
    out.print(table)
    for name, url in links:  # whole, on their own lines: a terminal must not wrap or cut a link
        print(f"authorize {name}: {url}")


# ---------------------------------------------------------------- LLM providers


@_command(providers_app, "add")
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
            raise _usage("--entry replaces every other provider flag; give one or the other")
        try:
            config = json.loads(entry)
        except ValueError as exc:
            raise _usage(f"--entry: not valid JSON ({exc})") from None
    elif not base_url or not models:
        raise _usage("give --base-url and at least one --model (or --entry)")
    else:
        config = {"base_url": base_url, "models": models}
        if api_key_env:
            config["api_key_env"] = api_key_env
        if api_key_stdin:
            key = sys.stdin.readline().strip()
            if not key:
                raise _usage("--api-key-stdin: standard input held no key")
            config["api_key"] = key
    added = api.post("/llm-providers", {"name": name, "config": config})
    served = ", ".join(added["config"]["models"])
    out.print(f"[green]added[/] llm provider {escape(name)!r} [dim](serving {escape(served)} now)[/]")


@_command(providers_app, "remove")
def providers_remove(api: AdminClient, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a provider; its models disappear from /v1/models."""
    api.delete(f"/llm-providers/{name}")
    out.print(f"[green]removed[/] llm provider {escape(name)!r}")


@_command(providers_app, "list")
def providers_list(api: AdminClient, as_json: Json = False) -> None:
    """List the providers, their models and where their key comes from (never the key)."""
    providers = api.get("/llm-providers")
    if as_json:
        return _print_json(providers)
    table = Table("name", "base url", "models", "key", "managed by", title=f"{len(providers)} provider(s)")
    for p in providers:
        config = p["config"]
        key = "stored" if config.get("api_key") else f"${config['api_key_env']}" if config.get("api_key_env") else "-"
        table.add_row(
            escape(p["name"]),
            escape(config["base_url"]),
            escape(", ".join(config["models"])),
            escape(key),
            "config file" if p.get("source") == "config" else "admin API",
        )
    out.print(table)


_delete_command(groups_app, "/groups", "tool group")
for _group, _path, _label, _link in (
    (customers_app, "/customers", "customer", None),
    (teams_app, "/teams", "team", "customer_id"),
    (users_app, "/users", "user", "team_id"),
):
    _list_command(_group, _path, _label, _link)
    _delete_command(_group, _path, _label)


def register(app: typer.Typer) -> None:
    """Add the admin command groups to the `bastion` app."""
    for name, group in (
        ("keys", keys_app),
        ("groups", groups_app),
        ("servers", servers_app),
        ("llm-providers", providers_app),
        ("customers", customers_app),
        ("teams", teams_app),
        ("users", users_app),
    ):
        app.add_typer(group, name=name)
