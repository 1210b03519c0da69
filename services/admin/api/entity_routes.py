"""Tool groups, customers, teams and users: the same six routes for each kind of entity in the
policy bucket (create, list, get, replace, patch, delete), built by one factory.

(No `from __future__ import annotations`: the route factories annotate with classes held in local
variables, which FastAPI must be able to evaluate.)
"""

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from .errors import documented, needs
from .route_helpers import IfMatch, build, check_expected, check_refs, etag, expected_revision, referrers
from .store import LABELS, AdminStore, Conflict

__all__ = ["entity_routes"]

log = logging.getLogger(__name__)


def entity_routes(
    router: APIRouter,
    store: AdminStore,
    kind: str,
    path: str,
    create_model: type[BaseModel],
    fields_model: type[BaseModel],
    patch_model: type[BaseModel],
    out_model: type[BaseModel],
    refs: dict[str, str],
    permissions: tuple[str, str],
) -> None:
    """Create, list, get, replace, patch and delete for one entity kind in the policy bucket, reading
    with the first of `permissions` and writing with the second."""
    may_read, may_write = (needs(p) for p in permissions)
    table = store.entities[kind]
    label, tag = LABELS[kind], path.strip("/")
    model = table.model

    def out(entity: BaseModel, revision: int) -> Any:
        return out_model(**entity.model_dump(), revision=revision)

    async def write(entity_id: str, changes: dict[str, Any], expected: int | None, replace: bool) -> tuple[Any, int]:
        current = await table.get(entity_id)
        check_expected(current, expected, table.stale(entity_id))
        await check_refs(store, changes, refs)
        keep = {} if replace else current.value.model_dump()
        fixed = {"id": entity_id, "created_at": current.value.created_at, "updated_at": time.time()}  # type: ignore[attr-defined]  # every entity model has created_at
        entity = build(model, {**keep, **changes, **fixed})
        revision = await table.update(entity_id, entity, current.revision)
        log.info("admin: updated %s %r", label, entity_id)
        return entity, revision

    async def create(body: create_model) -> Any:  # type: ignore[valid-type]  # a model class held in a variable: FastAPI reads it at run time
        values = body.model_dump()  # type: ignore[attr-defined]  # an instance of that model
        await check_refs(store, values, refs)
        entity = build(model, values)
        revision = await table.create(values["id"], entity)
        log.info("admin: created %s %r", label, values["id"])
        return out(entity, revision)

    async def list_all() -> Any:
        return [out(v.value, v.revision) for _, v in await table.list()]

    async def get_one(entity_id: str, response: Response) -> Any:
        found = await table.get(entity_id)
        etag(response, found.revision)
        return out(found.value, found.revision)

    async def replace(
        entity_id: str,
        body: fields_model,  # type: ignore[valid-type]  # a model class held in a variable: FastAPI reads it at run time
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        entity, revision = await write(entity_id, body.model_dump(), expected_revision(if_match), replace=True)  # type: ignore[attr-defined]  # an instance of that model
        etag(response, revision)
        return out(entity, revision)

    async def patch(
        entity_id: str,
        body: patch_model,  # type: ignore[valid-type]  # a model class held in a variable: FastAPI reads it at run time
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        changes = body.model_dump(include=body.model_fields_set)  # type: ignore[attr-defined]  # an instance of that model
        entity, revision = await write(entity_id, changes, expected_revision(if_match), replace=False)
        etag(response, revision)
        return out(entity, revision)

    async def delete(
        entity_id: str,
        if_match: IfMatch = None,
        force: Annotated[bool, Query(description="Delete even if keys or other entities still name it.")] = False,
    ) -> Response:
        expected = expected_revision(if_match)
        await table.get(entity_id)  # 404 before the (slower) reference scan
        if not force and (users := await referrers(store, kind, entity_id)):
            shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
            raise Conflict(
                f"{label} {entity_id!r} is still used by {shown}; remove those references or pass force=true"
            )
        await table.delete(entity_id, expected)
        log.info("admin: deleted %s %r", label, entity_id)
        return Response(status_code=204)

    item = f"{path}/{{entity_id}}"
    router.add_api_route(
        path,
        create,
        response_model=out_model,
        methods=["POST"],
        status_code=201,
        tags=[tag],
        name=f"create_{kind}",
        openapi_extra=may_write,
        summary=f"Create a {label}",
        responses=documented(409, 422),
    )
    router.add_api_route(
        path,
        list_all,
        response_model=list[out_model],  # type: ignore[valid-type]  # a model class held in a variable (as above)
        methods=["GET"],
        tags=[tag],
        name=f"list_{kind}s",
        openapi_extra=may_read,
        summary=f"List {label}s",
    )
    router.add_api_route(
        item,
        get_one,
        response_model=out_model,
        methods=["GET"],
        tags=[tag],
        name=f"get_{kind}",
        openapi_extra=may_read,
        summary=f"Get a {label}",
        responses=documented(404),
    )
    router.add_api_route(
        item,
        replace,
        response_model=out_model,
        methods=["PUT"],
        tags=[tag],
        name=f"replace_{kind}",
        openapi_extra=may_write,
        summary=f"Replace a {label} (absent fields get their defaults)",
        responses=documented(404, 409, 422),
    )
    router.add_api_route(
        item,
        patch,
        response_model=out_model,
        methods=["PATCH"],
        tags=[tag],
        name=f"update_{kind}",
        openapi_extra=may_write,
        summary=f"Update a {label} (absent fields stay as they are)",
        responses=documented(404, 409, 422),
    )
    router.add_api_route(
        item,
        delete,
        methods=["DELETE"],
        status_code=204,
        tags=[tag],
        name=f"delete_{kind}",
        openapi_extra=may_write,
        summary=f"Delete a {label} (409 while still referenced, unless force=true)",
        responses=documented(404, 409),
    )
