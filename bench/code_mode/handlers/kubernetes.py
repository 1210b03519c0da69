"""The `kubernetes` server's world."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ._base import ToolFailure, World, find_item, handles


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


class _Kind(NamedTuple):
    """How `kubectl get` shows one resource type: its items in the world, as JSON, as a table."""

    items: str
    header: list[str]
    as_json: Callable[[str, dict[str, Any]], dict[str, Any]]
    as_row: Callable[[dict[str, Any]], list[str]]


_KINDS: dict[str, _Kind] = {
    "pod": _Kind(
        "pods",
        ["NAME", "READY", "STATUS", "RESTARTS"],
        lambda ns, p: {"name": p["name"], "namespace": ns, "status": p["status"], "restarts": p["restarts"]},
        lambda p: [p["name"], p["ready"], p["status"], str(p["restarts"])],
    ),
    "deployment": _Kind(
        "deployments",
        ["NAME", "READY", "UP-TO-DATE"],
        lambda ns, d: {"name": d["name"], "namespace": ns, "replicas": d["replicas"], "readyReplicas": d["ready"]},
        lambda d: [d["name"], f"{d['ready']}/{d['replicas']}", str(d["replicas"])],
    ),
}


@handles("kubernetes", "kubectl_get")
def kubectl_get(world: World, args: dict[str, Any]) -> Any:
    namespace, kind = args.get("namespace", "default"), _KINDS.get(args["resourceType"].lower().rstrip("s"))
    if kind is None:
        raise ToolFailure(f'error: the server doesn\'t have a resource type "{args["resourceType"]}"')
    items = world[kind.items].get(namespace, [])
    if args.get("output") == "json":
        return {"items": [kind.as_json(namespace, item) for item in items]}
    return _table([kind.header] + [kind.as_row(item) for item in items])


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
    deployment = find_item(world["deployments"].get(namespace, []), "name", args["name"], "deployment")
    deployment["replicas"] = int(args["replicas"])
    return f"deployment.apps/{deployment['name']} scaled"


@handles("kubernetes", "kubectl_rollout")
def kubectl_rollout(world: World, args: dict[str, Any]) -> Any:
    find_item(world["deployments"].get(args["namespace"], []), "name", args["name"], "deployment")
    world["rollouts"].append(f"{args['subCommand']} {args['namespace']}/{args['name']}")
    return f"deployment.apps/{args['name']} {args['subCommand']}ed" if args["subCommand"] == "restart" else "ok"
