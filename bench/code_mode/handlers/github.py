"""The `github-legacy` server's world."""

from __future__ import annotations

from typing import Any

from ._base import ToolFailure, World, find_item, handles


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
    issue = find_item(_repo(world, args)["issues"], "number", int(args["issue_number"]), "issue")
    return _issue_json(f"{args['owner']}/{args['repo']}", issue)


@handles("github-legacy", "update_issue")
def gh_update_issue(world: World, args: dict[str, Any]) -> Any:
    issue = find_item(_repo(world, args)["issues"], "number", int(args["issue_number"]), "issue")
    for field in ("title", "body", "state", "labels", "assignees"):
        if field in args:
            issue[field] = args[field]
    return _issue_json(f"{args['owner']}/{args['repo']}", issue)


@handles("github-legacy", "add_issue_comment")
def gh_add_issue_comment(world: World, args: dict[str, Any]) -> Any:
    issue = find_item(_repo(world, args)["issues"], "number", int(args["issue_number"]), "issue")
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
    pr = find_item(_repo(world, args)["pulls"], "number", int(args["pull_number"]), "pull request")
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
