"""The `time` server's world."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ._base import ToolFailure, World, handles


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise ToolFailure(f"Invalid timezone: {name}") from exc


def _time_result(moment: datetime, zone: str) -> dict[str, Any]:
    local = moment.astimezone(_zone(zone))
    return {
        "timezone": zone,
        "datetime": local.isoformat(timespec="seconds"),
        "day_of_week": local.strftime("%A"),
        "is_dst": bool(local.dst()),
    }


@handles("time", "get_current_time")
def time_get_current_time(world: World, args: dict[str, Any]) -> Any:
    return _time_result(datetime.fromisoformat(world["now_utc"]), args["timezone"])


@handles("time", "convert_time")
def time_convert_time(world: World, args: dict[str, Any]) -> Any:
    if not re.fullmatch(r"\d{2}:\d{2}", args["time"]):
        raise ToolFailure("Invalid time format. Expected HH:MM [24-hour format]")
    today = datetime.fromisoformat(world["now_utc"]).astimezone(_zone(args["source_timezone"])).date()
    hour, minute = map(int, args["time"].split(":"))
    source = datetime(today.year, today.month, today.day, hour, minute, tzinfo=_zone(args["source_timezone"]))
    target = source.astimezone(_zone(args["target_timezone"]))
    offset = (target.utcoffset() or timedelta()) - (source.utcoffset() or timedelta())
    hours = offset.total_seconds() / 3600
    difference = f"{hours:+.1f}h" if hours % 1 else f"{hours:+.0f}.0h"
    return {
        "source": _time_result(source, args["source_timezone"]),
        "target": _time_result(target, args["target_timezone"]),
        "time_difference": difference,
    }
