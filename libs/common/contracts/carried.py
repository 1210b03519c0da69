"""A message's bytes that carry the model they were written from, for a receiver in the same process.

A co-located deployment hands messages between its services in memory (`libs.common.bus.local_lane`):
the receiver gets the very bytes object the sender published, and parsing it again only rebuilds the
model the sender just serialized (~4 µs for a `ToolCall`). `carrying` writes the bytes as a `Carried`
(a `bytes` in every respect: signed, sized, sent and compared as the same content) holding a copy of
the model as a receiver parsing those bytes would build it; `carried` gives that copy to the first
receiver instead of parsing. Whatever else the bytes meet (a socket, nats-server, a slice, a second
receiver of the same object) sees plain bytes and parses them as before.

The copy is taken when the bytes are written, so what the sender changes afterwards is not seen by the
receiver, and it is given away once, so nothing the receiver changes is seen by anyone else. Its nested
values (dicts, lists, nested models) are the sender's own: neither side changes one once it is sent.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["Carried", "carried", "carries", "carrying", "handing_over", "snapshot"]

M = TypeVar("M", bound=BaseModel)

_in_memory = False
"""Whether this process hands messages over in memory (`handing_over`): else a copy is never taken."""


def handing_over(on: bool) -> bool:
    """Say whether messages may reach a receiver in this process (`local_lane`); returns what it was."""
    global _in_memory
    before, _in_memory = _in_memory, on
    return before


class Carried(bytes):
    """JSON bytes with `model`: what parsing them gives, until a receiver takes it (`carried`)."""

    model: BaseModel | None = None


def carries() -> bool:
    """Whether `carrying` makes a copy for a receiver in this process (`handing_over`)."""
    return _in_memory


def snapshot(model: M, values: dict[str, Any] | None = None, unset: Iterable[str] = ()) -> M:
    """A copy of `model`, with `values` replacing fields, as a parse of its JSON dump builds it.

    Every field set but `unset`, and so every field of its nested models: a parse sets each field the
    dump names. `values` and `unset` describe what the dump leaves out (a parse leaves those fields their
    defaults)."""
    cls = type(model)
    try:  # subscripts and literals rather than method calls: this runs twice a call on the hot path
        every, nested = _SHAPES[cls]
    except KeyError:
        every, nested = _shape(cls)
    fields = {**model.__dict__, **values} if values else {**model.__dict__}
    for name in nested:
        if value := fields[name]:  # None and [] are as parsed
            fields[name] = snapshot(value) if type(value) in _SHAPES else _parsed_copy(value)
    copy = object.__new__(cls)
    object.__setattr__(copy, "__dict__", fields)
    object.__setattr__(copy, "__pydantic_fields_set__", set(every).difference(unset) if unset else set(every))
    object.__setattr__(copy, "__pydantic_extra__", None)
    object.__setattr__(copy, "__pydantic_private__", None)
    return copy


def _parsed_copy(value: Any) -> Any:
    """A nested value as parsed: its models copied with every field set."""
    if type(value) in _SHAPES or isinstance(value, BaseModel):  # a class seen before: no ABC check
        return snapshot(value)
    if type(value) is list:
        return [_parsed_copy(item) for item in value]
    if type(value) is dict:
        return {key: _parsed_copy(item) for key, item in value.items()}
    return value


_SHAPES: dict[type[BaseModel], tuple[frozenset[str], tuple[str, ...]]] = {}
"""Per model class: its fields, and those whose values may hold a model (nested, or in a list or dict)."""


def _shape(cls: type[BaseModel]) -> tuple[frozenset[str], tuple[str, ...]]:
    fields = cls.__pydantic_fields__
    shape = frozenset(fields), tuple(name for name, info in fields.items() if _holds_model(info.annotation))
    _SHAPES[cls] = shape
    return shape


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(arg) for arg in typing.get_args(annotation))


def carrying(model: BaseModel, data: bytes | None = None, parsed: BaseModel | None = None) -> bytes:
    """`data` (by default `model`'s JSON, as `model_dump_json` writes it) carrying `parsed`.

    Plain bytes in a process that hands nothing over in memory (`handing_over`).

    `parsed` is what a receiver parsing `data` builds; by default a `snapshot` of `model`, which is that
    when `data` is `model`'s full JSON dump (no field excluded) and `model` holds JSON's own types (a
    model built from parsed JSON, or validated: pydantic stores a `float` field's int as a float)."""
    if data is None:
        data = model.__pydantic_serializer__.to_json(model)
    if not _in_memory:
        return data
    carried_bytes = Carried(data)
    carried_bytes.model = snapshot(model) if parsed is None else parsed
    return carried_bytes


def carried(cls: type[M], data: bytes) -> M:
    """`cls.model_validate_json(data)`: the model `data` carries, taken (a second receiver parses)."""
    if type(data) is Carried:
        model = data.model
        if type(model) is cls:
            data.model = None
            return model
    return cls.model_validate_json(data)
