"""The `gitlab` server's world."""

from __future__ import annotations

from typing import Any

from ._base import World, find_item, handles


@handles("gitlab-zereight", "list_projects")
def gl_list_projects(world: World, args: dict[str, Any]) -> Any:
    search = (args.get("search") or "").lower()
    return [p for p in world["projects"] if search in p["name"]]


@handles("gitlab-zereight", "list_merge_requests")
def gl_list_merge_requests(world: World, args: dict[str, Any]) -> Any:
    state = args.get("state", "all")
    return [mr for mr in world["merge_requests"].get(str(args.get("project_id")), []) if state in ("all", mr["state"])]


@handles("gitlab-zereight", "list_merge_request_pipelines")
def gl_list_merge_request_pipelines(world: World, args: dict[str, Any]) -> Any:
    return world["pipelines"].get(f"{args['project_id']}/{args['merge_request_iid']}", [])


def _note(world: World, key: str, body: str) -> dict[str, Any]:
    note = {"id": world["next_note"], "body": body, "author": {"username": "bastion-bot"}}
    world["next_note"] += 1
    world["notes"].setdefault(key, []).append(note)
    return note


@handles("gitlab-zereight", "create_merge_request_note")
def gl_create_merge_request_note(world: World, args: dict[str, Any]) -> Any:
    requests = world["merge_requests"].get(str(args["project_id"]), [])
    find_item(requests, "iid", args["merge_request_iid"], "merge request")
    return _note(world, f"{args['project_id']}/mr/{args['merge_request_iid']}", args["body"])


@handles("gitlab-zereight", "list_issues")
def gl_list_issues(world: World, args: dict[str, Any]) -> Any:
    state, labels = args.get("state", "all"), set(args.get("labels") or [])
    return [
        i
        for i in world["issues"].get(str(args.get("project_id")), [])
        if state in ("all", i["state"]) and labels <= set(i["labels"])
    ]


@handles("gitlab-zereight", "create_issue_note")
def gl_create_issue_note(world: World, args: dict[str, Any]) -> Any:
    find_item(world["issues"].get(str(args["project_id"]), []), "iid", args["issue_iid"], "issue")
    return _note(world, f"{args['project_id']}/issue/{args['issue_iid']}", args["body"])
