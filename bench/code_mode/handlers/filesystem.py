"""The `filesystem` server's world."""

from __future__ import annotations

import re
from typing import Any

from ._base import ToolFailure, World, handles


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
