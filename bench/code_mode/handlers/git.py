"""The `git` server's world."""

from __future__ import annotations

from typing import Any

from ._base import ToolFailure, World, handles


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
