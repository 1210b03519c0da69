"""The `supabase` server's world."""

from __future__ import annotations

import json
from typing import Any

from ._base import World, find_item, handles, query_rows


def _project(world: World, project_id: str) -> dict[str, Any]:
    return find_item(world["projects"], "id", project_id, "project")


@handles("supabase", "list_projects")
def supa_list_projects(world: World, args: dict[str, Any]) -> Any:
    return world["projects"]


@handles("supabase", "get_project")
def supa_get_project(world: World, args: dict[str, Any]) -> Any:
    return _project(world, args["id"])


@handles("supabase", "execute_sql")
def supa_execute_sql(world: World, args: dict[str, Any]) -> Any:
    _project(world, args["project_id"])
    rows = query_rows(world["_dbs"][args["project_id"]], args["query"])
    # the real server fences untrusted rows so a model does not follow instructions inside data
    return f"Below is the result of the SQL query. <untrusted-data>\n{json.dumps(rows)}\n</untrusted-data>"


@handles("supabase", "get_advisors")
def supa_get_advisors(world: World, args: dict[str, Any]) -> Any:
    _project(world, args["project_id"])
    return {"lints": world["advisors"][args["project_id"]][args["type"]]}
