"""What every admin command module shares.

The `command` decorator (connection options, an `AdminClient`, failures as one line and an exit code),
the console, `--json`, and small cells.

Exit codes: 0 done, 1 the operation failed (refused by the API, or the API unreachable), 2 the
command line must change (bad value, missing settings).

(No `from __future__ import annotations`: typer reads the annotations of the signatures that
`command` assembles, and they must be real objects.)
"""

import functools
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .admin_client import AdminClient, AdminFailure, find_admin
from .terminal import FlagsGroup, console

__all__ = [
    "Json",
    "command",
    "group",
    "limits",
    "out",
    "print_json",
    "print_listing",
    "print_secret",
    "removal_command",
    "usage",
]

out = console()


def _connection_option(name: str, kind: type, help_text: str, **more: Any) -> inspect.Parameter:
    """`--<name>`, keyword-only and None by default, under the help's "Connection" panel."""
    flag = "--" + name.replace("_", "-")
    option = typer.Option(flag, help=help_text, rich_help_panel="Connection", **more)
    annotation = Annotated[kind | None, option]  # type: ignore[valid-type]  # a type chosen at run time, for typer
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


_CONNECTION = [
    _connection_option(
        "admin_url", str, "The admin service's URL (default: BASTION_ADMIN_URL, then the running stack's)."
    ),
    _connection_option(
        "admin_token",
        str,
        "A principal's API token (default: BASTION_ADMIN_TOKEN, then the running stack's).",
        show_default=False,
    ),
    _connection_option("data_dir", Path, "Where stack.json is (default: .bastion)."),
]

Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
ToolGroups = Annotated[list[str] | None, typer.Option("--group", help="Tool group id; repeatable.")]
"""The tool groups a key or a member of the key hierarchy is granted."""


def group(help_text: str) -> typer.Typer:
    """A command group (`bastion keys ...`) in the house style: help on no arguments, flags grouped."""
    return typer.Typer(help=help_text, no_args_is_help=True, cls=FlagsGroup)


def command(group: typer.Typer, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `func(api, ...)` as `group name ...` with the connection options added.

    An `AdminClient` passed as `api`, and every failure printed as one line with its exit code."""

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


def removal_command(group: typer.Typer, verb: str, path: str, label: str, summary: str) -> None:
    """Register `group verb NAME` (`summary` its help): delete `path/NAME`, then say `<verb>d <label> 'NAME'`."""

    def remove(api: AdminClient, name: Annotated[str, typer.Argument()]) -> None:
        api.delete(f"{path}/{name}")
        out.print(f"[green]{verb}d[/] {label} {escape(name)!r}")

    remove.__doc__ = summary
    command(group, verb)(remove)


def usage(message: str) -> AdminFailure:
    return AdminFailure(message, 2)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def print_listing(
    items: list[dict[str, Any]],
    as_json: bool,
    columns: Sequence[str],
    row: Callable[[dict[str, Any]], Sequence[str]],
    noun: str,
    of: str = "",
) -> None:
    """A list the API answered.

    Its JSON with `--json`, else a table of `row(item)` per item, titled `<count> <noun>(s)` and `of`
    (whose they are)."""
    if as_json:
        return print_json(items)
    table = Table(*columns, title=f"{len(items)} {noun}(s){of}")
    for item in items:
        table.add_row(*row(item))
    out.print(table)


def print_secret(noun: str, secret: str) -> None:
    """A secret the API answers this once, on a line of its own (plain print: never wrapped or cut)."""
    out.print(f"{noun} (shown once, store it now; send it as 'Authorization: Bearer <{noun}>'):", highlight=False)
    print(secret)


def limits(item: dict[str, Any]) -> str:
    """A budget and a rate limit in one short cell: `$25/month, 60/minute`."""
    parts = []
    if item.get("budget"):
        parts.append(f"${item['budget']['limit_usd']:g}/{item['budget']['period']}")
    if item.get("rate_limit"):
        parts.append(f"{item['rate_limit']['requests']}/{item['rate_limit']['per']}")
    return ", ".join(parts)
