"""Tool groups, customers, teams and users: the same six routes for each kind of entity in the
policy bucket (create, list, get, replace, patch, delete), built by one factory.

(No `from __future__ import annotations`: the route factories annotate with classes held in local
variables, which FastAPI must be able to evaluate.)
"""

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

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

    def writing(body_model: type[BaseModel], replace: bool) -> Callable[..., Any]:
        """PUT (`replace`: absent fields get their defaults) or PATCH (absent fields stay as they are)."""

        async def endpoint(
            entity_id: str,
            body: body_model,  # type: ignore[valid-type]  # a model class held in a variable: FastAPI reads it at run time
            response: Response,
            if_match: IfMatch = None,
        ) -> Any:
            changes = body.model_dump(include=None if replace else body.model_fields_set)  # type: ignore[attr-defined]  # an instance of that model
            entity, revision = await write(entity_id, changes, expected_revision(if_match), replace=replace)
            etag(response, revision)
            return out(entity, revision)

        return endpoint

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
    for route in (
        _Route(path, create, "POST", f"create_{kind}", f"Create a {label}", may_write, out_model, (409, 422), 201),
        _Route(path, list_all, "GET", f"list_{kind}s", f"List {label}s", may_read, list[out_model]),  # type: ignore[valid-type]  # a model class held in a variable (as above)
        _Route(item, get_one, "GET", f"get_{kind}", f"Get a {label}", may_read, out_model, (404,)),
        _Route(
            item,
            writing(fields_model, replace=True),
            "PUT",
            f"replace_{kind}",
            f"Replace a {label} (absent fields get their defaults)",
            may_write,
            out_model,
            (404, 409, 422),
        ),
        _Route(
            item,
            writing(patch_model, replace=False),
            "PATCH",
            f"update_{kind}",
            f"Update a {label} (absent fields stay as they are)",
            may_write,
            out_model,
            (404, 409, 422),
        ),
        _Route(
            item,
            delete,
            "DELETE",
            f"delete_{kind}",
            f"Delete a {label} (409 while still referenced, unless force=true)",
            may_write,
            None,
            (404, 409),
            204,
        ),
    ):
        router.add_api_route(
            route.path,
            route.endpoint,
            response_model=route.answer,
            methods=[route.method],
            status_code=route.status,
            tags=[tag],
            name=route.name,
            openapi_extra=route.access,
            summary=route.summary,
            responses=documented(*route.errors),
        )


class _Route(NamedTuple):
    path: str
    endpoint: Callable[..., Any]
    method: str
    name: str
    summary: str
    access: dict[str, Any]
    answer: Any
    """The response model (None: the endpoint answers a bare `Response`)."""
    errors: tuple[int, ...] = ()
    status: int | None = None
    """The success status, where not 200."""
