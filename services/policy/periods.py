"""Calendar arithmetic for budgets and rate limits: which window a moment falls in. Pure.

Time is always passed in (epoch seconds, UTC), never read here, so every replica that agrees on
the clock agrees on the window, and tests can step over a month boundary without waiting for one.

- `period_window` serves budgets: calendar-aligned in UTC (a `day` starts at 00:00 UTC, a `week`
  on Monday 00:00 UTC, a `month` on the 1st), labelled readably (`2026-03`, `2026-W10`, ...).
- `window_bucket` serves rate limits: fixed windows of 1 s / 60 s / 3600 s / 86400 s counted from
  the epoch, which are calendar-aligned too (POSIX time has no leap seconds), labelled by index.

Labels never contain `:` so they stay the last, unambiguous part of a Redis key.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import time
from typing import Final, NamedTuple

from libs.common.contracts.entities import Period

__all__ = ["PERIODS", "WINDOW_SECONDS", "Span", "period_window", "window_bucket"]

PERIODS: Final = ("minute", "hour", "day", "week", "month")
WINDOW_SECONDS: Final[dict[str, int]] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_DAY: Final = 86400


class Span(NamedTuple):
    """The window `now` falls in: `start <= now < end` (epoch seconds) and a label unique per window."""

    start: int
    end: int
    label: str


def period_window(period: Period | str, now: float) -> Span:
    """The budget period containing `now`: calendar-aligned, UTC, weeks starting on Monday."""
    t = math.floor(now)
    if period == "minute":
        start = t - t % 60
        g = time.gmtime(start)
        return Span(start, start + 60, f"{_date(g)}T{g.tm_hour:02d}{g.tm_min:02d}")
    if period == "hour":
        start = t - t % 3600
        g = time.gmtime(start)
        return Span(start, start + 3600, f"{_date(g)}T{g.tm_hour:02d}")
    if period == "day":
        start = t - t % _DAY
        return Span(start, start + _DAY, _date(time.gmtime(start)))
    if period == "week":
        days = t // _DAY
        start = (days - (days + 3) % 7) * _DAY  # 1970-01-01 was a Thursday: +3 makes Monday 0
        year, week, _ = dt.datetime.fromtimestamp(start, dt.UTC).isocalendar()
        return Span(start, start + 7 * _DAY, f"{year:04d}-W{week:02d}")
    if period == "month":
        g = time.gmtime(t)
        year, month = g.tm_year, g.tm_mon
        start = calendar.timegm((year, month, 1, 0, 0, 0))
        end = calendar.timegm((year + 1, 1, 1, 0, 0, 0) if month == 12 else (year, month + 1, 1, 0, 0, 0))
        return Span(start, end, f"{year:04d}-{month:02d}")
    raise ValueError(f"unknown budget period {period!r}; expected one of {', '.join(PERIODS)}")


def window_bucket(window: str, now: float) -> Span:
    """The rate-limit window containing `now`; the label is the window's index since the epoch."""
    try:
        length = WINDOW_SECONDS[window]
    except KeyError:
        raise ValueError(f"unknown rate-limit window {window!r}; expected one of {', '.join(WINDOW_SECONDS)}") from None
    index = math.floor(now) // length
    return Span(index * length, (index + 1) * length, str(index))


def _date(g: time.struct_time) -> str:
    return f"{g.tm_year:04d}-{g.tm_mon:02d}-{g.tm_mday:02d}"
