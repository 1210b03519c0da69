"""The `sqlite` server's world."""

from __future__ import annotations

import re
from typing import Any

from ._base import ToolFailure, World, handles, query_rows


@handles("sqlite", "read_query")
def sqlite_read_query(world: World, args: dict[str, Any]) -> Any:
    if not args["query"].strip().upper().startswith("SELECT"):
        raise ToolFailure("Only SELECT queries are allowed for read_query")
    return query_rows(world["_db"], args["query"])


@handles("sqlite", "write_query", "create_table")
def sqlite_write_query(world: World, args: dict[str, Any]) -> Any:
    if args["query"].strip().upper().startswith("SELECT"):
        raise ToolFailure("SELECT queries are not allowed for write_query")
    cursor = world["_db"].execute(args["query"])
    world["_db"].commit()
    return [{"affected_rows": cursor.rowcount}]


@handles("sqlite", "list_tables")
def sqlite_list_tables(world: World, args: dict[str, Any]) -> Any:
    return query_rows(world["_db"], "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")


@handles("sqlite", "describe_table")
def sqlite_describe_table(world: World, args: dict[str, Any]) -> Any:
    if not re.fullmatch(r"\w+", args["table_name"]):
        raise ToolFailure("invalid table name")
    return query_rows(world["_db"], f"PRAGMA table_info({args['table_name']})")


@handles("sqlite", "append_insight")
def sqlite_append_insight(world: World, args: dict[str, Any]) -> Any:
    world["insights"].append(args["insight"])
    return "Insight added to memo"
