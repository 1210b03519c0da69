"""The `atlassian` server's world (FastMCP wraps every answer as {"result": "<json text>"})."""

from __future__ import annotations

import json
import re
from typing import Any

from ._base import ToolFailure, World, find_item, handles


def _wrapped(value: Any) -> dict[str, str]:
    return {"result": json.dumps(value)}


_JQL_CLAUSE = re.compile(r'(\w+)\s*(=|!=|in)\s*("[^"]*"|\([^)]*\)|[\w-]+)', re.IGNORECASE)


def _jql_matches(issue: dict[str, Any], jql: str) -> bool:
    """The JQL the tasks need: clauses joined by AND, each `field = value`, `!=` or `in (...)`."""
    for field, op, raw in _JQL_CLAUSE.findall(jql.split(" ORDER BY")[0]):
        values = [v.strip().strip('"') for v in raw.strip("()").split(",")]
        actual = str(issue.get(field.lower(), ""))
        hit = any(actual.lower() == v.lower() for v in values)
        if (op == "!=") == hit:
            return False
    return True


def _issue_view(issue: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": issue["key"],
        "summary": issue["summary"],
        "status": {"name": issue["status"]},
        "priority": {"name": issue["priority"]},
        "assignee": {"display_name": issue["assignee"]} if issue["assignee"] else None,
        "labels": issue["labels"],
        "issue_type": {"name": issue["issue_type"]},
        "story_points": issue["story_points"],
    }


@handles("atlassian", "jira_search")
def jira_search(world: World, args: dict[str, Any]) -> Any:
    found = [_issue_view(i) for i in world["issues"] if _jql_matches(i, args["jql"])]
    return _wrapped({"total": len(found), "start_at": 0, "max_results": args.get("limit", 10), "issues": found})


@handles("atlassian", "jira_get_issue")
def jira_get_issue(world: World, args: dict[str, Any]) -> Any:
    issue = find_item(world["issues"], "key", args["issue_key"], "issue")
    return _wrapped({**_issue_view(issue), "comments": issue["comments"]})


@handles("atlassian", "jira_get_transitions")
def jira_get_transitions(world: World, args: dict[str, Any]) -> Any:
    find_item(world["issues"], "key", args["issue_key"], "issue")
    return _wrapped(world["transitions"])


@handles("atlassian", "jira_transition_issue")
def jira_transition_issue(world: World, args: dict[str, Any]) -> Any:
    issue = find_item(world["issues"], "key", args["issue_key"], "issue")
    transition = find_item(world["transitions"], "id", args["transition_id"], "transition")
    issue["status"] = transition["name"]
    if args.get("comment"):
        issue["comments"].append(args["comment"])
    return _wrapped({"message": f"Issue {issue['key']} transitioned successfully", "issue": _issue_view(issue)})


@handles("atlassian", "jira_add_comment")
def jira_add_comment(world: World, args: dict[str, Any]) -> Any:
    issue = find_item(world["issues"], "key", args["issue_key"], "issue")
    issue["comments"].append(args["body"])
    return _wrapped({"id": str(10000 + len(issue["comments"])), "body": args["body"]})


@handles("atlassian", "jira_create_issue")
def jira_create_issue(world: World, args: dict[str, Any]) -> Any:
    key = f"{args['project_key']}-{world['next_issue']}"
    world["next_issue"] += 1
    issue = {
        "key": key,
        "project": args["project_key"],
        "summary": args["summary"],
        "status": "To Do",
        "priority": "Medium",
        "assignee": args.get("assignee"),
        "labels": [],
        "issue_type": args["issue_type"],
        "story_points": None,
        "description": args.get("description", ""),
        "comments": [],
    }
    world["issues"].append(issue)
    return _wrapped({"message": "Issue created successfully", "issue": _issue_view(issue)})


@handles("atlassian", "jira_get_sprints_from_board")
def jira_get_sprints_from_board(world: World, args: dict[str, Any]) -> Any:
    board = world["boards"].get(str(args["board_id"]))
    if board is None:
        raise ToolFailure(f"board {args['board_id']} not found")
    state = args.get("state")
    return _wrapped([s for s in board["sprints"] if state in (None, s["state"])])


@handles("atlassian", "jira_get_sprint_issues")
def jira_get_sprint_issues(world: World, args: dict[str, Any]) -> Any:
    found = [_issue_view(i) for i in world["issues"] if str(i.get("sprint")) == str(args["sprint_id"])]
    return _wrapped({"total": len(found), "issues": found})


@handles("atlassian", "confluence_search")
def confluence_search(world: World, args: dict[str, Any]) -> Any:
    words = args["query"].lower().split()
    return _wrapped(
        [
            {"id": p["id"], "title": p["title"], "space": {"key": p["space"]}}
            for p in world["pages"]
            if all(w in (p["title"] + " " + p["body"]).lower() for w in words)
        ]
    )


@handles("atlassian", "confluence_get_page")
def confluence_get_page(world: World, args: dict[str, Any]) -> Any:
    if args.get("page_id"):
        page = find_item(world["pages"], "id", args["page_id"], "page")
    else:
        page = find_item(world["pages"], "title", args.get("title"), "page")
    return _wrapped(
        {"metadata": {"id": page["id"], "title": page["title"], "space": page["space"]}, "content": page["body"]}
    )


@handles("atlassian", "confluence_create_page")
def confluence_create_page(world: World, args: dict[str, Any]) -> Any:
    page = {
        "id": str(world["next_page"]),
        "space": args["space_key"],
        "title": args["title"],
        "body": args.get("content", ""),
    }
    world["next_page"] += 1
    world["pages"].append(page)
    return _wrapped({"message": "Page created successfully", "page": {"id": page["id"], "title": page["title"]}})
