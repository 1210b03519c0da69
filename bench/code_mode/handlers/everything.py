"""The `everything` server's world."""

from __future__ import annotations

from typing import Any

from ._base import World, handles


@handles("everything", "echo")
def everything_echo(world: World, args: dict[str, Any]) -> Any:
    return f"Echo: {args['message']}"


@handles("everything", "get-sum")
def everything_get_sum(world: World, args: dict[str, Any]) -> Any:
    return f"The sum of {args['a']} and {args['b']} is {args['a'] + args['b']}."


@handles("everything", "get-structured-content")
def everything_structured(world: World, args: dict[str, Any]) -> Any:
    weather: dict[str, Any] = world["weather"][args["location"]]
    return weather
