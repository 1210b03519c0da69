"""Tool groups, customers, teams and users.

The same six routes for each kind of entity in the policy bucket (create, list, get, replace, patch,
delete), one table whose handlers take the kind. A principal scoped to a team or customer reads only the
entities lying wholly inside it; every write is decided by the store's `outcome` on the entity before and
after.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from .route_helpers import IfMatch, build, check_expected, check_refs, etag, expected_revision, referrers
from .route_table import Route, register
from .store import LABELS, AdminStore, Conflict

__all__ = ["EntityKind", "entity_routes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EntityKind:
    """One kind of entity as its routes serve it: where it lives, its models, what it refers to."""

    kind: str
    path: str
    create_model: type[BaseModel]
    fields_model: type[BaseModel]
    patch_model: type[BaseModel]
    out_model: type[BaseModel]
    refs: dict[str, str]
    """Field -> the kind of entity it names (each must exist)."""
    permissions: tuple[str, str]
    """Reading, writing."""

    @property
    def label(self) -> str:
        return LABELS[self.kind]


@dataclass(frozen=True, slots=True)
class _Entities:
    store: AdminStore
    of: EntityKind

    def out(self, entity: BaseModel, revision: int) -> Any:
        return self.of.out_model(**entity.model_dump(), revision=revision)


async def _write(
    entities: _Entities, entity_id: str, changes: dict[str, Any], expected: int | None, replace: bool
) -> tuple[Any, int]:
    """PUT (`replace`: absent fields get their defaults) or PATCH (absent fields stay as they are)."""
    table = entities.store.entities[entities.of.kind]
    current = await table.get(entity_id)
    check_expected(current, expected, table.stale(entity_id))
    await check_refs(entities.store, changes, entities.of.refs)
    keep = {} if replace else current.value.model_dump()
    fixed = {"id": entity_id, "created_at": current.value.created_at, "updated_at": time.time()}  # type: ignore[attr-defined]  # every entity model has created_at
    entity = build(table.model, {**keep, **changes, **fixed})
    revision = await table.update(entity_id, entity, current.revision)
    log.info("admin: updated %s %r", entities.of.label, entity_id)
    return entity, revision


async def create(entities: _Entities, body: BaseModel) -> Any:
    table = entities.store.entities[entities.of.kind]
    values = body.model_dump()
    await check_refs(entities.store, values, entities.of.refs)
    entity = build(table.model, values)
    revision = await table.create(values["id"], entity)
    log.info("admin: created %s %r", entities.of.label, values["id"])
    return entities.out(entity, revision)


async def list_all(entities: _Entities) -> Any:
    """Every one (a principal scoped to a team or customer: those lying wholly inside it)."""
    found = [v for _, v in await entities.store.entities[entities.of.kind].list()]
    seen = await entities.store.outcome.visible(entities.of.label, entities.of.permissions[0], found)
    return [entities.out(v.value, v.revision) for v in seen]


async def get_one(entities: _Entities, entity_id: str, response: Response) -> Any:
    found = await entities.store.entities[entities.of.kind].get(entity_id)
    await entities.store.outcome.require_visible(entities.of.label, entities.of.permissions[0], found.value)
    etag(response, found.revision)
    return entities.out(found.value, found.revision)


async def replace(
    entities: _Entities, entity_id: str, body: BaseModel, response: Response, if_match: IfMatch = None
) -> Any:
    changes = body.model_dump()
    entity, revision = await _write(entities, entity_id, changes, expected_revision(if_match), replace=True)
    etag(response, revision)
    return entities.out(entity, revision)


async def update(
    entities: _Entities, entity_id: str, body: BaseModel, response: Response, if_match: IfMatch = None
) -> Any:
    changes = body.model_dump(include=body.model_fields_set)
    entity, revision = await _write(entities, entity_id, changes, expected_revision(if_match), replace=False)
    etag(response, revision)
    return entities.out(entity, revision)


async def delete(
    entities: _Entities,
    entity_id: str,
    if_match: IfMatch = None,
    force: Annotated[bool, Query(description="Delete even if keys or other entities still name it.")] = False,
) -> Response:
    kind, label = entities.of.kind, entities.of.label
    table = entities.store.entities[kind]
    expected = expected_revision(if_match)
    await table.get(entity_id)  # 404 before the (slower) reference scan
    if not force and (users := await referrers(entities.store, kind, entity_id)):
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise Conflict(f"{label} {entity_id!r} is still used by {shown}; remove those references or pass force=true")
    await table.delete(entity_id, expected)
    log.info("admin: deleted %s %r", label, entity_id)
    return Response(status_code=204)


def entity_table(of: EntityKind) -> tuple[Route, ...]:
    """The six routes of one kind: read with the first of its permissions, write with the second."""
    kind, label, path, item, answer = of.kind, of.label, of.path, f"{of.path}/{{entity_id}}", of.out_model
    read, write = of.permissions
    return (
        Route(
            "POST", path, write, create, 201, (409, 422), f"create_{kind}", f"Create a {label}", of.create_model, answer
        ),
        Route("GET", path, read, list_all, name=f"list_{kind}s", summary=f"List {label}s", answer=list[answer]),  # type: ignore[valid-type]  # a model class held in a field: FastAPI reads it at run time
        Route("GET", item, read, get_one, None, (404,), f"get_{kind}", f"Get a {label}", answer=answer),
        Route(
            "PUT",
            item,
            write,
            replace,
            None,
            (404, 409, 422),
            f"replace_{kind}",
            f"Replace a {label} (absent fields get their defaults)",
            of.fields_model,
            answer,
        ),
        Route(
            "PATCH",
            item,
            write,
            update,
            None,
            (404, 409, 422),
            f"update_{kind}",
            f"Update a {label} (absent fields stay as they are)",
            of.patch_model,
            answer,
        ),
        Route(
            "DELETE",
            item,
            write,
            delete,
            204,
            (404, 409),
            f"delete_{kind}",
            f"Delete a {label} (409 while still referenced, unless force=true)",
        ),
    )


def entity_routes(router: APIRouter, store: AdminStore, of: EntityKind) -> None:
    register(router, entity_table(of), of.path.strip("/"), _Entities(store, of))
