"""The shared parts of the benchmark worlds: loading a world, the handler registry, errors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORLD_DIR = Path(__file__).resolve().parent.parent / "world"

World = dict[str, Any]
Handler = Callable[[World, dict[str, Any]], Any]
HANDLERS: dict[str, dict[str, Handler]] = {}


class ToolFailure(Exception):
    """The tool answers with `isError: true` and this message, as the real server would."""


def load_world(server: str) -> World:
    """The server's world, fresh; a server without a world file has an empty one."""
    path = WORLD_DIR / f"{server}.json"
    world: World = json.loads(path.read_text()) if path.is_file() else {}
    for key in ("sql",):
        if key in world and isinstance(world[key], list):  # sqlite: one database per world
            world["_db"] = open_database(world[key])
    if server == "supabase" and "sql" in world:
        world["_dbs"] = {project: open_database(statements) for project, statements in world["sql"].items()}
    return world


def open_database(statements: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    for statement in statements:
        db.execute(statement)
    db.commit()
    return db


def query_rows(db: sqlite3.Connection, query: str) -> list[dict[str, Any]]:
    try:
        cursor = db.execute(query)
    except sqlite3.Error as exc:
        raise ToolFailure(f"SQL error: {exc}") from exc
    db.commit()
    columns = [c[0] for c in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def generic_answer(server: str, tool: str, arguments: dict[str, Any]) -> str:
    return f"{tool}: done (the benchmark world of '{server}' holds no data for this tool)"


def handles(server: str, *tools: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for tool in tools:
            HANDLERS.setdefault(server, {})[tool] = handler
        return handler

    return register


def find_item(items: list[dict[str, Any]], key: str, value: Any, what: str) -> dict[str, Any]:
    for item in items:
        if str(item.get(key)) == str(value):
            return item
    raise ToolFailure(f"{what} {value!r} not found")
