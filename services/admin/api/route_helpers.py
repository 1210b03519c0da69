"""What every admin route module shares.

Revision checks (`If-Match`, `ETag`), references between records, and building a stored model from a
request's values (a problem is a 422 on the body).

(No `from __future__ import annotations`: FastAPI evaluates `IfMatch` in the route signatures.)
"""

import logging
from typing import Annotated, Any, TypeVar

from fastapi import Header, Response
from pydantic import BaseModel, ValidationError

from .errors import invalid
from .models import FieldError, field_errors
from .store import LABELS, AdminStore, Conflict, Versioned

__all__ = ["IfMatch", "build", "check_expected", "check_refs", "etag", "expected_revision", "referrers", "refers"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

IfMatch = Annotated[
    str | None,
    Header(description="A revision from an earlier answer: the write happens only if the record is still at it."),
]


def expected_revision(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise invalid([FieldError(loc=["header", "If-Match"], msg="must be a revision number", type="if_match")])
    return int(value)


def check_expected(current: Versioned[Any], expected: int | None, stale: Conflict) -> None:
    if expected is not None and expected != current.revision:
        raise stale


def etag(response: Response, revision: int) -> None:
    response.headers["ETag"] = f'"{revision}"'


async def check_refs(store: AdminStore, values: dict[str, Any], refs: dict[str, str]) -> None:
    """422 naming every referenced entity that does not exist (lists by index)."""
    detail: list[FieldError] = []
    for field, kind in refs.items():
        if field not in values:
            continue
        value = values[field]
        ids = list(value) if isinstance(value, list) else ([value] if value else [])
        for missing in await store.missing(kind, ids):
            loc: list[str | int] = ["body", field, ids.index(missing)] if isinstance(value, list) else ["body", field]
            # the field and the kind, not the id: a message never repeats a value it refused
            detail.append(FieldError(loc=loc, msg=f"no {LABELS[kind]} has this id", type="unknown_reference"))
    if detail:
        raise invalid(detail, "unknown_reference")


def build(model: type[M], values: dict[str, Any]) -> M:
    """The stored model from merged values; a problem is a 422 on the request body."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid(field_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])) from None


def refers(record: Any, kind: str, entity_id: str) -> bool:
    if kind == "group":
        return entity_id in getattr(record, "groups", ())
    return getattr(record, f"{kind}_id", None) == entity_id


async def referrers(store: AdminStore, kind: str, entity_id: str) -> list[str]:
    """What still names the entity (active keys, other entities), for a refused delete."""
    found = [
        f"key {v.value.name!r}"
        for _, v in await store.keys.list()
        if not v.value.revoked and refers(v.value, kind, entity_id)
    ]
    for other, table in store.entities.items():
        found += [f"{LABELS[other]} {i!r}" for i, v in await table.list() if refers(v.value, kind, entity_id)]
    return found
