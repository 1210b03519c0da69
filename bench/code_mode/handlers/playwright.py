"""The `playwright` server's world."""

from __future__ import annotations

from typing import Any

from ._base import ToolFailure, World, handles


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
