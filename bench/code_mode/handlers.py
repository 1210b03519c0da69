"""What the benchmark's upstream servers do: deterministic handlers over a small world per server.

Each server's world is `world/<server>.json`, loaded fresh on every reset. A handler gets the
world (a mutable dict) and the call's arguments, and returns the tool's answer as a JSON value;
`upstreams.py` turns it into a `CallToolResult` the way the real server does (text, plus
`structuredContent` for tools with an `outputSchema`). Tools without a handler answer a fixed
generic result, so every one of the 516 tools is callable and deterministic.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["HANDLERS", "ToolFailure", "World", "generic_answer", "load_world"]

WORLD_DIR = Path(__file__).resolve().parent / "world"

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
            world["_db"] = _database(world[key])
    if server == "supabase" and "sql" in world:
        world["_dbs"] = {project: _database(statements) for project, statements in world["sql"].items()}
    return world


def _database(statements: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    for statement in statements:
        db.execute(statement)
    db.commit()
    return db


def _rows(db: sqlite3.Connection, query: str) -> list[dict[str, Any]]:
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


def _find(items: list[dict[str, Any]], key: str, value: Any, what: str) -> dict[str, Any]:
    for item in items:
        if str(item.get(key)) == str(value):
            return item
    raise ToolFailure(f"{what} {value!r} not found")


# --- github-legacy ----------------------------------------------------------------------------------


def _repo(world: World, args: dict[str, Any]) -> dict[str, Any]:
    name = f"{args.get('owner')}/{args.get('repo')}"
    if name not in world["repos"]:
        raise ToolFailure(f"Not Found: repository {name}")
    return world["repos"][name]


_DEFAULT_LABELS = frozenset({"bug", "documentation", "duplicate", "enhancement"})


def _user(login: str) -> dict[str, Any]:
    """A GitHub user as the REST API embeds one (deterministic ids)."""
    number = sum(map(ord, login))
    return {
        "login": login,
        "id": 5000 + number,
        "node_id": f"MDQ6VXNlcj{number}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{5000 + number}?v=4",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def _issue_json(repo: str, issue: dict[str, Any]) -> dict[str, Any]:
    """An issue as the GitHub REST API returns it, so results weigh what real ones do."""
    number = issue["number"]
    reporter = ("alice", "bob", "carol", "dave")[number % 4]
    assignees = [_user(issue["assignee"])] if issue.get("assignee") else []
    return {
        "url": f"https://api.github.com/repos/{repo}/issues/{number}",
        "repository_url": f"https://api.github.com/repos/{repo}",
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "id": 2_400_000_000 + number,
        "node_id": f"I_kwDOAcme{number:06d}",
        "number": number,
        "title": issue["title"],
        "user": _user(reporter),
        "labels": [
            {"id": 6_000_000 + sum(map(ord, name)), "name": name, "color": "d73a4a", "default": name in _DEFAULT_LABELS}
            for name in issue["labels"]
        ],
        "state": issue["state"],
        "locked": False,
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "comments": issue["comments"],
        "created_at": issue["created_at"],
        "updated_at": issue["created_at"],
        "closed_at": None if issue["state"] == "open" else issue["created_at"],
        "author_association": "MEMBER",
        "body": issue.get("body") or f"Reported by @{reporter}. See the linked logs; happens on every request.",
    }


@handles("github-legacy", "list_issues")
def gh_list_issues(world: World, args: dict[str, Any]) -> Any:
    state, labels = args.get("state", "open"), set(args.get("labels") or [])
    repo = f"{args['owner']}/{args['repo']}"
    return [
        _issue_json(repo, issue)
        for issue in _repo(world, args)["issues"]
        if (state == "all" or issue["state"] == state) and labels <= set(issue["labels"])
    ]


@handles("github-legacy", "get_issue")
def gh_get_issue(world: World, args: dict[str, Any]) -> Any:
    issue = _find(_repo(world, args)["issues"], "number", int(args["issue_number"]), "issue")
    return _issue_json(f"{args['owner']}/{args['repo']}", issue)


@handles("github-legacy", "update_issue")
def gh_update_issue(world: World, args: dict[str, Any]) -> Any:
    issue = _find(_repo(world, args)["issues"], "number", int(args["issue_number"]), "issue")
    for field in ("title", "body", "state", "labels", "assignees"):
        if field in args:
            issue[field] = args[field]
    return _issue_json(f"{args['owner']}/{args['repo']}", issue)


@handles("github-legacy", "add_issue_comment")
def gh_add_issue_comment(world: World, args: dict[str, Any]) -> Any:
    issue = _find(_repo(world, args)["issues"], "number", int(args["issue_number"]), "issue")
    issue.setdefault("comment_bodies", []).append(args["body"])
    issue["comments"] += 1
    return {"id": 90000 + issue["comments"], "body": args["body"], "issue_number": issue["number"]}


@handles("github-legacy", "create_issue")
def gh_create_issue(world: World, args: dict[str, Any]) -> Any:
    repo = _repo(world, args)
    number = world["next_issue_number"]
    world["next_issue_number"] += 1
    issue = {
        "number": number,
        "title": args["title"],
        "body": args.get("body", ""),
        "state": "open",
        "labels": args.get("labels", []),
        "assignee": None,
        "comments": 0,
        "created_at": "2026-11-23T09:00:00Z",
    }
    repo["issues"].append(issue)
    return _issue_json(f"{args['owner']}/{args['repo']}", issue)


@handles("github-legacy", "list_pull_requests")
def gh_list_pull_requests(world: World, args: dict[str, Any]) -> Any:
    state, repo = args.get("state", "open"), f"{args['owner']}/{args['repo']}"
    return [
        {
            "url": f"https://api.github.com/repos/{repo}/pulls/{pr['number']}",
            "html_url": f"https://github.com/{repo}/pull/{pr['number']}",
            "diff_url": f"https://github.com/{repo}/pull/{pr['number']}.diff",
            "id": 1_900_000_000 + pr["number"],
            "number": pr["number"],
            "state": pr["state"],
            "locked": False,
            "title": pr["title"],
            "user": _user(pr["user"]),
            "body": f"{pr['title']}. Tests included.",
            "created_at": "2026-11-20T10:00:00Z",
            "updated_at": "2026-11-22T16:30:00Z",
            "merged_at": None,
            "draft": False,
            "head": {"label": f"acme:{pr['head']}", "ref": pr["head"], "sha": f"{pr['number']:04d}aa11bb22cc33"},
            "base": {"label": f"acme:{pr['base']}", "ref": pr["base"], "sha": "ffee00112233"},
            "author_association": "MEMBER",
        }
        for pr in _repo(world, args)["pulls"]
        if state == "all" or pr["state"] == state
    ]


@handles("github-legacy", "get_pull_request_files")
def gh_get_pull_request_files(world: World, args: dict[str, Any]) -> Any:
    pr = _find(_repo(world, args)["pulls"], "number", int(args["pull_number"]), "pull request")
    return [
        {"filename": f, "status": "modified", "additions": 10 + 3 * i, "deletions": i}
        for i, f in enumerate(pr["files"])
    ]


@handles("github-legacy", "list_commits")
def gh_list_commits(world: World, args: dict[str, Any]) -> Any:
    return _repo(world, args)["commits"]


@handles("github-legacy", "get_file_contents")
def gh_get_file_contents(world: World, args: dict[str, Any]) -> Any:
    files = _repo(world, args)["files"]
    if args["path"] not in files:
        raise ToolFailure(f"Not Found: {args['path']}")
    return {"type": "file", "path": args["path"], "encoding": "utf-8", "content": files[args["path"]]}


# --- slack-legacy -----------------------------------------------------------------------------------


def _channel(world: World, channel_id: str) -> dict[str, Any]:
    return _find(world["channels"], "id", channel_id, "channel")


def _post(world: World, channel_id: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
    _channel(world, channel_id)
    ts = f"{world['next_ts']}.000100"
    world["next_ts"] += 1
    message = {"ts": ts, "user": "U99BOT", "text": text, **({"thread_ts": thread_ts} if thread_ts else {})}
    world["messages"].setdefault(channel_id, []).append(message)
    return {"ok": True, "channel": channel_id, "ts": ts, "message": message}


@handles("slack-legacy", "slack_list_channels")
def slack_list_channels(world: World, args: dict[str, Any]) -> Any:
    return {"ok": True, "channels": world["channels"][: int(args.get("limit", 100))]}


@handles("slack-legacy", "slack_post_message")
def slack_post_message(world: World, args: dict[str, Any]) -> Any:
    return _post(world, args["channel_id"], args["text"])


@handles("slack-legacy", "slack_reply_to_thread")
def slack_reply_to_thread(world: World, args: dict[str, Any]) -> Any:
    return _post(world, args["channel_id"], args["text"], args["thread_ts"])


@handles("slack-legacy", "slack_add_reaction")
def slack_add_reaction(world: World, args: dict[str, Any]) -> Any:
    message = _find(world["messages"].get(args["channel_id"], []), "ts", args["timestamp"], "message")
    message.setdefault("reactions", []).append(args["reaction"])
    return {"ok": True}


@handles("slack-legacy", "slack_get_channel_history")
def slack_get_channel_history(world: World, args: dict[str, Any]) -> Any:
    _channel(world, args["channel_id"])
    return {"ok": True, "messages": world["messages"].get(args["channel_id"], [])[-int(args.get("limit", 10)) :]}


@handles("slack-legacy", "slack_get_users")
def slack_get_users(world: World, args: dict[str, Any]) -> Any:
    return {
        "ok": True,
        "members": [{"id": u["id"], "name": u["name"], "real_name": u["real_name"]} for u in world["users"]],
    }


@handles("slack-legacy", "slack_get_user_profile")
def slack_get_user_profile(world: World, args: dict[str, Any]) -> Any:
    return {"ok": True, "profile": _find(world["users"], "id", args["user_id"], "user")}


# --- memory -----------------------------------------------------------------------------------------


@handles("memory", "read_graph")
def memory_read_graph(world: World, args: dict[str, Any]) -> Any:
    return {"entities": world["entities"], "relations": world["relations"]}


@handles("memory", "search_nodes")
def memory_search_nodes(world: World, args: dict[str, Any]) -> Any:
    query = args["query"].lower()
    entities = [
        e
        for e in world["entities"]
        if query in e["name"].lower()
        or query in e["entityType"].lower()
        or any(query in o.lower() for o in e["observations"])
    ]
    names = {e["name"] for e in entities}
    return {
        "entities": entities,
        "relations": [r for r in world["relations"] if r["from"] in names or r["to"] in names],
    }


@handles("memory", "open_nodes")
def memory_open_nodes(world: World, args: dict[str, Any]) -> Any:
    names = set(args["names"])
    return {
        "entities": [e for e in world["entities"] if e["name"] in names],
        "relations": [r for r in world["relations"] if r["from"] in names or r["to"] in names],
    }


@handles("memory", "create_entities")
def memory_create_entities(world: World, args: dict[str, Any]) -> Any:
    existing = {e["name"] for e in world["entities"]}
    created = [dict(e) for e in args["entities"] if e["name"] not in existing]
    world["entities"].extend(created)
    return {"entities": created}


@handles("memory", "create_relations")
def memory_create_relations(world: World, args: dict[str, Any]) -> Any:
    created = [dict(r) for r in args["relations"] if r not in world["relations"]]
    world["relations"].extend(created)
    return {"relations": created}


@handles("memory", "add_observations")
def memory_add_observations(world: World, args: dict[str, Any]) -> Any:
    results = []
    for item in args["observations"]:
        entity = _find(world["entities"], "name", item["entityName"], "entity")
        added = [o for o in item["contents"] if o not in entity["observations"]]
        entity["observations"].extend(added)
        results.append({"entityName": entity["name"], "addedObservations": added})
    return {"results": results}


# --- sqlite -----------------------------------------------------------------------------------------


@handles("sqlite", "read_query")
def sqlite_read_query(world: World, args: dict[str, Any]) -> Any:
    if not args["query"].strip().upper().startswith("SELECT"):
        raise ToolFailure("Only SELECT queries are allowed for read_query")
    return _rows(world["_db"], args["query"])


@handles("sqlite", "write_query", "create_table")
def sqlite_write_query(world: World, args: dict[str, Any]) -> Any:
    if args["query"].strip().upper().startswith("SELECT"):
        raise ToolFailure("SELECT queries are not allowed for write_query")
    cursor = world["_db"].execute(args["query"])
    world["_db"].commit()
    return [{"affected_rows": cursor.rowcount}]


@handles("sqlite", "list_tables")
def sqlite_list_tables(world: World, args: dict[str, Any]) -> Any:
    return _rows(world["_db"], "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")


@handles("sqlite", "describe_table")
def sqlite_describe_table(world: World, args: dict[str, Any]) -> Any:
    if not re.fullmatch(r"\w+", args["table_name"]):
        raise ToolFailure("invalid table name")
    return _rows(world["_db"], f"PRAGMA table_info({args['table_name']})")


@handles("sqlite", "append_insight")
def sqlite_append_insight(world: World, args: dict[str, Any]) -> Any:
    world["insights"].append(args["insight"])
    return "Insight added to memo"


# --- time -------------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise ToolFailure(f"Invalid timezone: {name}") from exc


def _time_result(moment: datetime, zone: str) -> dict[str, Any]:
    local = moment.astimezone(_zone(zone))
    return {
        "timezone": zone,
        "datetime": local.isoformat(timespec="seconds"),
        "day_of_week": local.strftime("%A"),
        "is_dst": bool(local.dst()),
    }


@handles("time", "get_current_time")
def time_get_current_time(world: World, args: dict[str, Any]) -> Any:
    return _time_result(datetime.fromisoformat(world["now_utc"]), args["timezone"])


@handles("time", "convert_time")
def time_convert_time(world: World, args: dict[str, Any]) -> Any:
    if not re.fullmatch(r"\d{2}:\d{2}", args["time"]):
        raise ToolFailure("Invalid time format. Expected HH:MM [24-hour format]")
    today = datetime.fromisoformat(world["now_utc"]).astimezone(_zone(args["source_timezone"])).date()
    hour, minute = map(int, args["time"].split(":"))
    source = datetime(today.year, today.month, today.day, hour, minute, tzinfo=_zone(args["source_timezone"]))
    target = source.astimezone(_zone(args["target_timezone"]))
    offset = (target.utcoffset() or timedelta()) - (source.utcoffset() or timedelta())
    hours = offset.total_seconds() / 3600
    difference = f"{hours:+.1f}h" if hours % 1 else f"{hours:+.0f}.0h"
    return {
        "source": _time_result(source, args["source_timezone"]),
        "target": _time_result(target, args["target_timezone"]),
        "time_difference": difference,
    }


# --- git --------------------------------------------------------------------------------------------


def _git_repo(world: World, args: dict[str, Any]) -> dict[str, Any]:
    if args["repo_path"] not in world["repos"]:
        raise ToolFailure(f"{args['repo_path']} is not a git repository")
    return world["repos"][args["repo_path"]]


@handles("git", "git_log")
def git_log(world: World, args: dict[str, Any]) -> Any:
    entries = _git_repo(world, args)["log"][: int(args.get("max_count", 10))]
    return "Commit history:\n" + "\n".join(
        f"Commit: '{c['hash']}'\nAuthor: {c['author']}\nDate: {c['date']}\nMessage: '{c['message']}'\n" for c in entries
    )


@handles("git", "git_status")
def git_status(world: World, args: dict[str, Any]) -> Any:
    repo = _git_repo(world, args)
    modified = "".join(f"\tmodified:   {f}\n" for f in repo["status"]["modified"])
    untracked = "".join(f"\t{f}\n" for f in repo["status"]["untracked"])
    return (
        f"Repository status:\nOn branch {repo['current']}\nChanges not staged for commit:\n{modified}\n"
        f"Untracked files:\n{untracked}"
    )


@handles("git", "git_branch")
def git_branch(world: World, args: dict[str, Any]) -> Any:
    repo = _git_repo(world, args)
    return "\n".join(("* " if b == repo["current"] else "  ") + b for b in repo["branches"])


@handles("git", "git_create_branch")
def git_create_branch(world: World, args: dict[str, Any]) -> Any:
    repo = _git_repo(world, args)
    if args["branch_name"] in repo["branches"]:
        raise ToolFailure(f"A branch named '{args['branch_name']}' already exists.")
    base = args.get("base_branch") or repo["current"]
    repo["branches"].append(args["branch_name"])
    return f"Created branch '{args['branch_name']}' from '{base}'"


# --- filesystem -------------------------------------------------------------------------------------


def _path(world: World, path: str) -> str:
    if not any(path == root or path.startswith(root + "/") for root in world["allowed"]):
        raise ToolFailure(f"Access denied - path outside allowed directories: {path}")
    return path


def _text(content: str) -> dict[str, str]:
    return {"content": content}


@handles("filesystem", "read_text_file", "read_file")
def fs_read_text_file(world: World, args: dict[str, Any]) -> Any:
    path = _path(world, args["path"])
    if path not in world["files"]:
        raise ToolFailure(f"ENOENT: no such file or directory, open '{path}'")
    return _text(world["files"][path])


@handles("filesystem", "read_multiple_files")
def fs_read_multiple_files(world: World, args: dict[str, Any]) -> Any:
    parts = []
    for path in args["paths"]:
        content = world["files"].get(_path(world, path))
        parts.append(f"{path}:\n{content}\n" if content is not None else f"{path}: Error - ENOENT")
    return _text("\n---\n".join(parts))


@handles("filesystem", "write_file")
def fs_write_file(world: World, args: dict[str, Any]) -> Any:
    world["files"][_path(world, args["path"])] = args["content"]
    return _text(f"Successfully wrote to {args['path']}")


@handles("filesystem", "list_directory")
def fs_list_directory(world: World, args: dict[str, Any]) -> Any:
    root = _path(world, args["path"]).rstrip("/") + "/"
    entries = sorted(
        {
            ("[DIR] " if "/" in rest else "[FILE] ") + rest.split("/")[0]
            for p in world["files"]
            if p.startswith(root)
            for rest in [p[len(root) :]]
        }
    )
    return _text("\n".join(entries))


@handles("filesystem", "search_files")
def fs_search_files(world: World, args: dict[str, Any]) -> Any:
    root = _path(world, args["path"]).rstrip("/") + "/"
    pattern = re.compile("^" + re.escape(args["pattern"]).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*") + "$")
    found = [p for p in sorted(world["files"]) if p.startswith(root) and pattern.match(p[len(root) :])]
    return _text("\n".join(found) if found else "No matches found")


@handles("filesystem", "list_allowed_directories")
def fs_list_allowed_directories(world: World, args: dict[str, Any]) -> Any:
    return _text("Allowed directories:\n" + "\n".join(world["allowed"]))


# --- atlassian (FastMCP wraps every answer as {"result": "<json text>"}) -----------------------------


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
    issue = _find(world["issues"], "key", args["issue_key"], "issue")
    return _wrapped({**_issue_view(issue), "comments": issue["comments"]})


@handles("atlassian", "jira_get_transitions")
def jira_get_transitions(world: World, args: dict[str, Any]) -> Any:
    _find(world["issues"], "key", args["issue_key"], "issue")
    return _wrapped(world["transitions"])


@handles("atlassian", "jira_transition_issue")
def jira_transition_issue(world: World, args: dict[str, Any]) -> Any:
    issue = _find(world["issues"], "key", args["issue_key"], "issue")
    transition = _find(world["transitions"], "id", args["transition_id"], "transition")
    issue["status"] = transition["name"]
    if args.get("comment"):
        issue["comments"].append(args["comment"])
    return _wrapped({"message": f"Issue {issue['key']} transitioned successfully", "issue": _issue_view(issue)})


@handles("atlassian", "jira_add_comment")
def jira_add_comment(world: World, args: dict[str, Any]) -> Any:
    issue = _find(world["issues"], "key", args["issue_key"], "issue")
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
        page = _find(world["pages"], "id", args["page_id"], "page")
    else:
        page = _find(world["pages"], "title", args.get("title"), "page")
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


# --- gitlab -----------------------------------------------------------------------------------------


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
    _find(world["merge_requests"].get(str(args["project_id"]), []), "iid", args["merge_request_iid"], "merge request")
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
    _find(world["issues"].get(str(args["project_id"]), []), "iid", args["issue_iid"], "issue")
    return _note(world, f"{args['project_id']}/issue/{args['issue_iid']}", args["body"])


# --- grafana ----------------------------------------------------------------------------------------


@handles("grafana", "list_incidents")
def grafana_list_incidents(world: World, args: dict[str, Any]) -> Any:
    status = args.get("status")
    return {"incidents": [i for i in world["incidents"] if status in (None, i["status"])][: int(args.get("limit", 10))]}


@handles("grafana", "get_incident")
def grafana_get_incident(world: World, args: dict[str, Any]) -> Any:
    return _find(world["incidents"], "id", args["id"], "incident")


@handles("grafana", "add_activity_to_incident")
def grafana_add_activity_to_incident(world: World, args: dict[str, Any]) -> Any:
    _find(world["incidents"], "id", args["incidentId"], "incident")
    world["incident_activity"].setdefault(args["incidentId"], []).append(args["body"])
    return {"activityItemID": f"act-{len(world['incident_activity'][args['incidentId']])}", "body": args["body"]}


@handles("grafana", "list_oncall_schedules")
def grafana_list_oncall_schedules(world: World, args: dict[str, Any]) -> Any:
    return [
        {k: v for k, v in s.items() if k != "oncall"}
        for s in world["schedules"]
        if args.get("teamId") in (None, s["teamId"]) and args.get("scheduleId") in (None, s["id"])
    ]


@handles("grafana", "get_current_oncall_users")
def grafana_get_current_oncall_users(world: World, args: dict[str, Any]) -> Any:
    schedule = _find(world["schedules"], "id", args["scheduleId"], "schedule")
    return {"scheduleId": schedule["id"], "scheduleName": schedule["name"], "users": schedule["oncall"]}


@handles("grafana", "list_datasources")
def grafana_list_datasources(world: World, args: dict[str, Any]) -> Any:
    return [d for d in world["datasources"] if args.get("type") in (None, d["type"])]


@handles("grafana", "query_prometheus")
def grafana_query_prometheus(world: World, args: dict[str, Any]) -> Any:
    _find(world["datasources"], "uid", args["datasourceUid"], "datasource")
    if args["expr"] not in world["prometheus"]:
        return {"resultType": "vector", "result": []}
    return {"resultType": "vector", "result": world["prometheus"][args["expr"]]}


@handles("grafana", "list_alert_groups")
def grafana_list_alert_groups(world: World, args: dict[str, Any]) -> Any:
    return [g for g in world["alert_groups"] if args.get("state") in (None, g["state"])]


@handles("grafana", "create_annotation")
def grafana_create_annotation(world: World, args: dict[str, Any]) -> Any:
    annotation = {"id": world["next_annotation"], "text": args.get("text", ""), "tags": args.get("tags", [])}
    world["next_annotation"] += 1
    world["annotations"].append(annotation)
    return {"message": "Annotation added", "id": annotation["id"]}


# --- kubernetes -------------------------------------------------------------------------------------


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


@handles("kubernetes", "kubectl_get")
def kubectl_get(world: World, args: dict[str, Any]) -> Any:
    namespace, kind = args.get("namespace", "default"), args["resourceType"].lower().rstrip("s")
    if kind == "pod":
        items = world["pods"].get(namespace, [])
        if args.get("output") == "json":
            return {
                "items": [
                    {"name": p["name"], "namespace": namespace, "status": p["status"], "restarts": p["restarts"]}
                    for p in items
                ]
            }
        return _table(
            [["NAME", "READY", "STATUS", "RESTARTS"]]
            + [[p["name"], p["ready"], p["status"], str(p["restarts"])] for p in items]
        )
    if kind == "deployment":
        items = world["deployments"].get(namespace, [])
        if args.get("output") == "json":
            return {
                "items": [
                    {"name": d["name"], "namespace": namespace, "replicas": d["replicas"], "readyReplicas": d["ready"]}
                    for d in items
                ]
            }
        return _table(
            [["NAME", "READY", "UP-TO-DATE"]]
            + [[d["name"], f"{d['ready']}/{d['replicas']}", str(d["replicas"])] for d in items]
        )
    raise ToolFailure(f'error: the server doesn\'t have a resource type "{args["resourceType"]}"')


@handles("kubernetes", "kubectl_logs")
def kubectl_logs(world: World, args: dict[str, Any]) -> Any:
    logs = world["logs"].get(f"{args['namespace']}/{args['name']}")
    if logs is None:
        raise ToolFailure(f'pods "{args["name"]}" not found')
    lines = logs.splitlines()
    return "\n".join(lines[-int(args["tail"]) :] if args.get("tail") else lines)


@handles("kubernetes", "kubectl_scale")
def kubectl_scale(world: World, args: dict[str, Any]) -> Any:
    namespace = args.get("namespace", "default")
    deployment = _find(world["deployments"].get(namespace, []), "name", args["name"], "deployment")
    deployment["replicas"] = int(args["replicas"])
    return f"deployment.apps/{deployment['name']} scaled"


@handles("kubernetes", "kubectl_rollout")
def kubectl_rollout(world: World, args: dict[str, Any]) -> Any:
    _find(world["deployments"].get(args["namespace"], []), "name", args["name"], "deployment")
    world["rollouts"].append(f"{args['subCommand']} {args['namespace']}/{args['name']}")
    return f"deployment.apps/{args['name']} {args['subCommand']}ed" if args["subCommand"] == "restart" else "ok"


# --- mongodb ----------------------------------------------------------------------------------------


def _collection(world: World, args: dict[str, Any]) -> list[dict[str, Any]]:
    if args["connectionId"] not in world["connections"]:
        raise ToolFailure(f"unknown connectionId {args['connectionId']!r}; connect first")
    database = world["databases"].get(args["database"])
    if database is None or args["collection"] not in database:
        raise ToolFailure(f"collection {args['database']}.{args['collection']} does not exist")
    collection: list[dict[str, Any]] = database[args["collection"]]
    return collection


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: a in b,
}


def _matches(document: dict[str, Any], query: dict[str, Any]) -> bool:
    for field, condition in (query or {}).items():
        value = document.get(field)
        if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
            for op, operand in condition.items():
                if op not in _OPS:
                    raise ToolFailure(f"unsupported query operator {op}")
                if not _OPS[op](value, operand):
                    return False
        elif value != condition:
            return False
    return True


@handles("mongodb", "find")
def mongo_find(world: World, args: dict[str, Any]) -> Any:
    found = [d for d in _collection(world, args) if _matches(d, args.get("filter") or {})]
    for field, direction in reversed(list((args.get("sort") or {}).items())):
        found.sort(key=lambda d, f=field: d.get(f), reverse=direction == -1)
    found = found[: int(args.get("limit", 10))]
    if args.get("projection"):
        keep = {k for k, v in args["projection"].items() if v}
        found = [{k: v for k, v in d.items() if k in keep or k == "_id"} for d in found]
    return {"documents": found, "queryResultsCount": len(found), "appliedLimits": []}


@handles("mongodb", "count")
def mongo_count(world: World, args: dict[str, Any]) -> Any:
    return {"count": sum(1 for d in _collection(world, args) if _matches(d, args.get("query") or {}))}


@handles("mongodb", "insert-many")
def mongo_insert_many(world: World, args: dict[str, Any]) -> Any:
    collection = _collection(world, args)
    ids = []
    for document in args["documents"]:
        stored = {"_id": document.get("_id", f"gen-{len(collection) + 1}"), **document}
        collection.append(stored)
        ids.append(stored["_id"])
    return {
        "database": args["database"],
        "collection": args["collection"],
        "insertedCount": len(ids),
        "insertedIds": ids,
    }


@handles("mongodb", "update-many")
def mongo_update_many(world: World, args: dict[str, Any]) -> Any:
    matched = [d for d in _collection(world, args) if _matches(d, args.get("filter") or {})]
    for document in matched:
        document.update(args["update"].get("$set", {}))
    return {
        "database": args["database"],
        "collection": args["collection"],
        "matchedCount": len(matched),
        "modifiedCount": len(matched),
        "upsertedCount": 0,
    }


@handles("mongodb", "list-collections")
def mongo_list_collections(world: World, args: dict[str, Any]) -> Any:
    return "\n".join(f'Name: "{name}"' for name in world["databases"].get(args["database"], {}))


# --- notion -----------------------------------------------------------------------------------------


def _rich(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": text}, "plain_text": text}]


def _page_object(page: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "page",
        "id": page["id"],
        "properties": {"title": {"type": "title", "title": _rich(page["title"])}},
    }


@handles("notion", "API-post-search")
def notion_search(world: World, args: dict[str, Any]) -> Any:
    query = (args.get("query") or "").lower()
    return {
        "object": "list",
        "results": [_page_object(p) for p in world["pages"] if query in p["title"].lower()],
        "has_more": False,
    }


@handles("notion", "API-retrieve-a-page")
def notion_retrieve_page(world: World, args: dict[str, Any]) -> Any:
    return _page_object(_find(world["pages"], "id", args["page_id"], "page"))


@handles("notion", "API-get-block-children")
def notion_block_children(world: World, args: dict[str, Any]) -> Any:
    page = _find(world["pages"], "id", args["block_id"], "block")
    blocks = []
    for i, block in enumerate(page["blocks"]):
        body: dict[str, Any] = {"rich_text": _rich(block["text"])}
        if block["type"] == "to_do":
            body["checked"] = block["checked"]
        blocks.append({"object": "block", "id": f"{page['id']}-b{i}", "type": block["type"], block["type"]: body})
    return {"object": "list", "results": blocks, "has_more": False}


@handles("notion", "API-query-data-source")
def notion_query_data_source(world: World, args: dict[str, Any]) -> Any:
    source = world["data_sources"].get(args["data_source_id"])
    if source is None:
        raise ToolFailure(f"Could not find data source with ID: {args['data_source_id']}")
    results = [
        {
            "object": "page",
            "id": row["id"],
            "properties": {
                "Name": {"type": "title", "title": _rich(row["Name"])},
                "Status": {"type": "status", "status": {"name": row["Status"]}},
                "Owner": {"type": "rich_text", "rich_text": _rich(row["Owner"])},
                "Points": {"type": "number", "number": row["Points"]},
            },
        }
        for row in source["rows"]
    ]
    return {"object": "list", "results": results, "has_more": False}


@handles("notion", "API-create-a-comment")
def notion_create_comment(world: World, args: dict[str, Any]) -> Any:
    parent = args["parent"] if isinstance(args["parent"], dict) else json.loads(args["parent"])
    text = "".join(part.get("text", {}).get("content", "") for part in args["rich_text"])
    comment = {"id": f"cm-{world['next_id']}", "page_id": parent.get("page_id"), "text": text}
    world["next_id"] += 1
    world["comments"].append(comment)
    return {"object": "comment", "id": comment["id"], "parent": parent, "rich_text": _rich(text)}


# --- playwright -------------------------------------------------------------------------------------


def _page_state(url: str, page: dict[str, Any]) -> str:
    snapshot = f"```yaml\n{page['snapshot']}\n```"
    return f"### Page state\n- Page URL: {url}\n- Page Title: {page['title']}\n- Page Snapshot:\n{snapshot}"


def _current(world: World) -> dict[str, Any]:
    if world["current"] is None:
        raise ToolFailure("No open pages available. Use browser_navigate first.")
    page: dict[str, Any] = world["pages"][world["current"]]
    return page


@handles("playwright", "browser_navigate")
def pw_navigate(world: World, args: dict[str, Any]) -> Any:
    if args["url"] not in world["pages"]:
        raise ToolFailure(f"page.goto: net::ERR_NAME_NOT_RESOLVED at {args['url']}")
    world["current"], world["form"] = args["url"], {}
    page = world["pages"][args["url"]]
    return _page_state(args["url"], page)


@handles("playwright", "browser_snapshot")
def pw_snapshot(world: World, args: dict[str, Any]) -> Any:
    page = _current(world)
    return _page_state(world["current"], page)


@handles("playwright", "browser_type")
def pw_type(world: World, args: dict[str, Any]) -> Any:
    page = _current(world)
    if f"[ref={args['target']}]" not in page["snapshot"]:
        raise ToolFailure(f"Ref {args['target']} not found in the current page snapshot. Try capturing new snapshot.")
    world["form"][args["target"]] = args["text"]
    return f"Typed into {args['target']}"


@handles("playwright", "browser_fill_form")
def pw_fill_form(world: World, args: dict[str, Any]) -> Any:
    for field in args["fields"]:
        pw_type(world, {"target": field.get("target") or field.get("ref"), "text": str(field.get("value"))})
    return f"Filled {len(args['fields'])} fields"


@handles("playwright", "browser_click")
def pw_click(world: World, args: dict[str, Any]) -> Any:
    page = _current(world)
    if args["target"] != page.get("submit_ref"):
        return f"Clicked {args['target']}"
    ticket = f"AR-{world['next_ticket']}"
    world["next_ticket"] += 1
    world["submissions"].append({"url": world["current"], "form": dict(world["form"]), "ticket": ticket})
    snapshot = f'- heading "Thanks! Your ticket is {ticket}" [level=1]'
    return _page_state(world["current"], {"title": "Request received", "snapshot": snapshot})


# --- supabase ---------------------------------------------------------------------------------------


def _project(world: World, project_id: str) -> dict[str, Any]:
    return _find(world["projects"], "id", project_id, "project")


@handles("supabase", "list_projects")
def supa_list_projects(world: World, args: dict[str, Any]) -> Any:
    return world["projects"]


@handles("supabase", "get_project")
def supa_get_project(world: World, args: dict[str, Any]) -> Any:
    return _project(world, args["id"])


@handles("supabase", "execute_sql")
def supa_execute_sql(world: World, args: dict[str, Any]) -> Any:
    _project(world, args["project_id"])
    rows = _rows(world["_dbs"][args["project_id"]], args["query"])
    # the real server fences untrusted rows so a model does not follow instructions inside data
    return f"Below is the result of the SQL query. <untrusted-data>\n{json.dumps(rows)}\n</untrusted-data>"


@handles("supabase", "get_advisors")
def supa_get_advisors(world: World, args: dict[str, Any]) -> Any:
    _project(world, args["project_id"])
    return {"lints": world["advisors"][args["project_id"]][args["type"]]}


# --- everything -------------------------------------------------------------------------------------


@handles("everything", "echo")
def everything_echo(world: World, args: dict[str, Any]) -> Any:
    return f"Echo: {args['message']}"


@handles("everything", "get-sum")
def everything_get_sum(world: World, args: dict[str, Any]) -> Any:
    return f"The sum of {args['a']} and {args['b']} is {args['a'] + args['b']}."


@handles("everything", "get-structured-content")
def everything_structured(world: World, args: dict[str, Any]) -> Any:
    weather: dict[str, Any] = world["weather"][args["location"]]
    return weather
