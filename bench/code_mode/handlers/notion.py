"""The `notion` server's world."""

from __future__ import annotations

import json
from typing import Any

from ._base import ToolFailure, World, find_item, handles


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
    return _page_object(find_item(world["pages"], "id", args["page_id"], "page"))


@handles("notion", "API-get-block-children")
def notion_block_children(world: World, args: dict[str, Any]) -> Any:
    page = find_item(world["pages"], "id", args["block_id"], "block")
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
