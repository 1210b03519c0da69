"""The `grafana` server's world."""

from __future__ import annotations

from typing import Any

from ._base import World, find_item, handles


@handles("grafana", "list_incidents")
def grafana_list_incidents(world: World, args: dict[str, Any]) -> Any:
    status = args.get("status")
    return {"incidents": [i for i in world["incidents"] if status in (None, i["status"])][: int(args.get("limit", 10))]}


@handles("grafana", "get_incident")
def grafana_get_incident(world: World, args: dict[str, Any]) -> Any:
    return find_item(world["incidents"], "id", args["id"], "incident")


@handles("grafana", "add_activity_to_incident")
def grafana_add_activity_to_incident(world: World, args: dict[str, Any]) -> Any:
    find_item(world["incidents"], "id", args["incidentId"], "incident")
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
    schedule = find_item(world["schedules"], "id", args["scheduleId"], "schedule")
    return {"scheduleId": schedule["id"], "scheduleName": schedule["name"], "users": schedule["oncall"]}


@handles("grafana", "list_datasources")
def grafana_list_datasources(world: World, args: dict[str, Any]) -> Any:
    return [d for d in world["datasources"] if args.get("type") in (None, d["type"])]


@handles("grafana", "query_prometheus")
def grafana_query_prometheus(world: World, args: dict[str, Any]) -> Any:
    find_item(world["datasources"], "uid", args["datasourceUid"], "datasource")
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
