"""Command-line values of the admin commands made API bodies: budgets, rate limits, NAME=VALUE pairs.

A malformed value is a usage error (exit code 2) naming the flag."""

from __future__ import annotations

from typing import Any

from .admin_base import usage

__all__ = ["parse_budget", "parse_pairs", "parse_rate"]

_PERIODS = ("minute", "hour", "day", "week", "month")
_WINDOWS = ("second", "minute", "hour", "day")


def parse_budget(text: str | None) -> dict[str, Any] | None:
    """`25`, `$25/day`, `10.5/month` -> a Budget body (period defaults to month)."""
    if text is None:
        return None
    amount, _, period = text.strip().removeprefix("$").partition("/")
    try:
        limit = float(amount)
    except ValueError:
        raise usage(f"--budget {text!r}: expected USD[/period], e.g. 25/month") from None
    if limit < 0 or (period and period not in _PERIODS):
        raise usage(f"--budget {text!r}: the amount must be >= 0 and the period one of {', '.join(_PERIODS)}")
    return {"limit_usd": limit, "period": period or "month"}


def parse_rate(text: str | None) -> dict[str, Any] | None:
    """`60`, `60/minute`, `5/second` -> a RateLimit body (window defaults to minute)."""
    if text is None:
        return None
    count, _, per = text.strip().partition("/")
    if not count.isdigit() or int(count) < 1 or (per and per not in _WINDOWS):
        raise usage(f"--rate-limit {text!r}: expected REQUESTS[/window] with a window of {', '.join(_WINDOWS)}")
    return {"requests": int(count), "per": per or "minute"}


def parse_pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        name, eq, content = value.partition("=")
        if not eq or not name:
            raise usage(f"{flag} {value!r}: expected NAME=VALUE")
        pairs[name] = content
    return pairs
