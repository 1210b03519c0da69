"""The `kubernetes` server's world."""

from __future__ import annotations

from typing import Any

from ._base import ToolFailure, World, find_item, handles


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
    deployment = find_item(world["deployments"].get(namespace, []), "name", args["name"], "deployment")
    deployment["replicas"] = int(args["replicas"])
    return f"deployment.apps/{deployment['name']} scaled"


@handles("kubernetes", "kubectl_rollout")
def kubectl_rollout(world: World, args: dict[str, Any]) -> Any:
    find_item(world["deployments"].get(args["namespace"], []), "name", args["name"], "deployment")
    world["rollouts"].append(f"{args['subCommand']} {args['namespace']}/{args['name']}")
    return f"deployment.apps/{args['name']} {args['subCommand']}ed" if args["subCommand"] == "restart" else "ok"
