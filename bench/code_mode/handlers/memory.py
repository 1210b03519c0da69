"""The `memory` server's world."""

from __future__ import annotations

from typing import Any

from ._base import World, find_item, handles


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
        entity = find_item(world["entities"], "name", item["entityName"], "entity")
        added = [o for o in item["contents"] if o not in entity["observations"]]
        entity["observations"].extend(added)
        results.append({"entityName": entity["name"], "addedObservations": added})
    return {"results": results}
