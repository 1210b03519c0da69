"""The `mongodb` server's world."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._base import ToolFailure, World, handles


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
