"""The `slack-legacy` server's world."""

from __future__ import annotations

from typing import Any

from ._base import World, find_item, handles


def _channel(world: World, channel_id: str) -> dict[str, Any]:
    return find_item(world["channels"], "id", channel_id, "channel")


def _post(world: World, channel_id: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
    _channel(world, channel_id)
    ts = f"{world['next_ts']}.000100"
    world["next_ts"] += 1
    message = {"ts": ts, "user": "U99BOT", "text": text, **({"thread_ts": thread_ts} if thread_ts else {})}
    world["messages"].setdefault(channel_id, []).append(message)
    return {"ok": True, "channel": channel_id, "ts": ts, "message": message}


@handles("slack-legacy", "slack_list_channels")
def slack_list_channels(world: World, args: dict[str, Any]) -> Any:
    return {"ok": True, "channels": world["channels"][: int(args.get("limit", 100))]}


@handles("slack-legacy", "slack_post_message")
def slack_post_message(world: World, args: dict[str, Any]) -> Any:
    return _post(world, args["channel_id"], args["text"])


@handles("slack-legacy", "slack_reply_to_thread")
def slack_reply_to_thread(world: World, args: dict[str, Any]) -> Any:
    return _post(world, args["channel_id"], args["text"], args["thread_ts"])


@handles("slack-legacy", "slack_add_reaction")
def slack_add_reaction(world: World, args: dict[str, Any]) -> Any:
    message = find_item(world["messages"].get(args["channel_id"], []), "ts", args["timestamp"], "message")
    message.setdefault("reactions", []).append(args["reaction"])
    return {"ok": True}


@handles("slack-legacy", "slack_get_channel_history")
def slack_get_channel_history(world: World, args: dict[str, Any]) -> Any:
    _channel(world, args["channel_id"])
    return {"ok": True, "messages": world["messages"].get(args["channel_id"], [])[-int(args.get("limit", 10)) :]}


@handles("slack-legacy", "slack_get_users")
def slack_get_users(world: World, args: dict[str, Any]) -> Any:
    return {
        "ok": True,
        "members": [{"id": u["id"], "name": u["name"], "real_name": u["real_name"]} for u in world["users"]],
    }


@handles("slack-legacy", "slack_get_user_profile")
def slack_get_user_profile(world: World, args: dict[str, Any]) -> Any:
    return {"ok": True, "profile": find_item(world["users"], "id", args["user_id"], "user")}
