"""A readable field-level diff of two versions of a definition (`bastion tools diff SERVER/TOOL`).

Each change names its place as an RFC 6901 JSON pointer with the old and new value, and the changes
that alter what a tool does are called out in words: a schema property added or removed, a property
becoming required or optional, a default changed, an enum widened, the description rewritten.
`required`, `enum` and a `type` list are compared as sets (their order means nothing); a prompt's
`arguments` are matched by name; other lists element by element.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Change", "definition_diff", "render_diff"]

_SET_LIKE = frozenset({"required", "enum", "type"})
_SCHEMA_KEYS = frozenset({"inputSchema", "outputSchema"})
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    """JSON pointer into the definition ("" is the whole definition)."""
    op: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None
    note: str | None = None
    """What the change means, when it is one that alters behaviour (a property, required, a default)."""


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _schema_property(parts: Sequence[str | int]) -> str | None:
    """The property name when `parts` point at `<schema>/…/properties/<name>` inside a tool schema."""
    if len(parts) >= 3 and parts[0] in _SCHEMA_KEYS and parts[-2] == "properties":
        return str(parts[-1])
    return None


def _note(parts: Sequence[str | int], op: str, old: Any, new: Any) -> str | None:
    if parts == ["description"]:
        return "description changed" if op == "changed" else f"description {op}"
    prop = _schema_property(parts)
    if prop is not None and op != "changed":
        return f"property {prop!r} {op}"
    if len(parts) >= 2 and parts[-1] == "default" and parts[-3:-2] == ["properties"]:
        return f"default of {parts[-2]!r} {op}" + (f": {_short(old)} -> {_short(new)}" if op == "changed" else "")
    if len(parts) >= 2 and parts[-1] == "description" and parts[-3:-2] == ["properties"]:
        return f"description of {parts[-2]!r} {op}"
    if len(parts) >= 2 and parts[0] == "arguments" and parts[-1] == "required":
        return "prompt argument now required" if new is True else None
    return None


def _set_changes(parts: list[str | int], old: Sequence[Any], new: Sequence[Any], out: list[Change]) -> None:
    key = parts[-1]
    old_items = {json.dumps(v, sort_keys=True): v for v in old}
    new_items = {json.dumps(v, sort_keys=True): v for v in new}
    path = "/" + "/".join(_escape(p) for p in parts)
    for text, value in new_items.items():
        if text not in old_items:
            note = f"{_short(value)} is now required" if key == "required" else f"{key} gains {_short(value)}"
            out.append(Change(path, "added", None, value, note))
    for text, value in old_items.items():
        if text not in new_items:
            note = f"{_short(value)} is no longer required" if key == "required" else f"{key} loses {_short(value)}"
            out.append(Change(path, "removed", value, None, note))


def _by_name(items: Sequence[Any]) -> dict[str, int] | None:
    """Index of each item by its `name`, when every item is an object with a distinct one."""
    names: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or name in names:
            return None
        names[name] = index
    return names


def _walk(parts: list[str | int], old: Any, new: Any, out: list[Change]) -> None:
    path = "/" + "/".join(_escape(p) for p in parts) if parts else ""
    if old is _MISSING:
        out.append(Change(path, "added", None, new, _note(parts, "added", None, new)))
        return
    if new is _MISSING:
        out.append(Change(path, "removed", old, None, _note(parts, "removed", old, None)))
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new)):
            _walk([*parts, key], old.get(key, _MISSING), new.get(key, _MISSING), out)
        return
    if isinstance(old, list) and isinstance(new, list):
        if parts and parts[-1] in _SET_LIKE:
            _set_changes(parts, old, new, out)
            return
        old_names, new_names = _by_name(old), _by_name(new)
        if old_names is not None and new_names is not None:
            for name in sorted(set(old_names) | set(new_names)):
                was, now = old_names.get(name), new_names.get(name)
                if was is not None and now is not None:
                    _walk([*parts, now], old[was], new[now], out)
                elif now is not None:
                    out.append(Change(f"{path}/{now}", "added", None, new[now], f"{name!r} added"))
                elif was is not None:
                    out.append(Change(f"{path}/{was}", "removed", old[was], None, f"{name!r} removed"))
            return
        for index in range(max(len(old), len(new))):
            _walk(
                [*parts, index],
                old[index] if index < len(old) else _MISSING,
                new[index] if index < len(new) else _MISSING,
                out,
            )
        return
    # `1 == 1.0 == True` in Python; a change of JSON type is a change
    if old != new or type(old) is not type(new):
        out.append(Change(path, "changed", old, new, _note(parts, "changed", old, new)))


def definition_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[Change]:
    """Every difference between two versions of a definition, in pointer order.

    None for a side means there is no such version (a new definition, a removed one)."""
    out: list[Change] = []
    if old is None and new is None:
        return out
    _walk([], _MISSING if old is None else old, _MISSING if new is None else new, out)
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_diff(changes: Sequence[Change], limit: int = 200) -> str:
    """The changes as lines a person reads: `~ /path: old -> new  (note)`, `+` added, `-` removed.

    Values are cut at `limit` characters; an escaped form shows invisible characters (`\\u200b`)."""
    if not changes:
        return "no differences"
    lines = []
    for change in changes:
        note = f"  ({change.note})" if change.note else ""
        where = change.path or "(whole definition)"
        if change.op == "added":
            lines.append(f"+ {where}: {_visible(change.new, limit)}{note}")
        elif change.op == "removed":
            lines.append(f"- {where}: {_visible(change.old, limit)}{note}")
        else:
            lines.append(f"~ {where}: {_visible(change.old, limit)} -> {_visible(change.new, limit)}{note}")
    return "\n".join(lines)


def _visible(value: Any, limit: int) -> str:
    # ensure_ascii: a zero-width or bidi character a changed description hides shows as \u200b
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
