"""How the CLI looks: help without a type beside flags, and output that a pipe does not cut.

Typer prints `<bool>` beside every flag (`--json <bool>`), as if the flag took a value; `FlagsGroup`
blanks that column for flags in every command it resolves. Rich wraps tables to the terminal,
and to 80 columns when stdout is a pipe or a file; `console()` is as wide as its content then, so
`bastion keys list | grep ...` sees whole rows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from typer.core import TyperGroup, TyperOption

__all__ = ["FlagsGroup", "console"]

_UNBOUNDED = 100_000
"""Columns for output that is not a terminal: more than any row needs."""


def console(*, stderr: bool = False) -> Console:
    """A console that wraps to the terminal, and never cuts or folds when redirected."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else _UNBOUNDED)


def _untyped_flags(params: Iterable[Any]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # shown in the type column instead of `<bool>`


class FlagsGroup(TyperGroup):
    """The group class of every `bastion` command group (`typer.Typer(cls=FlagsGroup)`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _untyped_flags(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _untyped_flags(command.get_params(ctx))
        return command
