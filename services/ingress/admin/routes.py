"""HTTP layer of the admin API: routes, status codes and error bodies; KV access goes through `store`.

Every write validates everything first (body, references to other entities, name uniqueness) and
then makes one KV write, revision-checked, so a request either changes one record completely or
changes nothing. Errors are one `ErrorBody` shape whatever their origin: a request model, a
missing reference, a lost race, NATS being unreachable. Secrets appear only in the answers to
key create and rotate; error bodies never echo the request (its `input` is dropped).

(No `from __future__ import annotations` here: the route factories annotate with classes held in
local variables, which FastAPI must be able to evaluate.)
"""

import logging
import time
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ValidationError

from bastion_common.llm import ProviderRecord
from bastion_common.llm_config import ProviderConfig
from bastion_common.messages import KeyRecord, ServerRecord

from .auth import AdminAuth
from .errors import AdminRoute, documented, invalid
from .models import (
    MASK,
    CustomerCreate,
    CustomerFields,
    CustomerOut,
    CustomerPatch,
    FieldError,
    GroupCreate,
    GroupFields,
    GroupOut,
    GroupPatch,
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyPatch,
    ProviderCreate,
    ProviderOut,
    ProviderUpdate,
    ServerCreate,
    ServerOut,
    ServerUpdate,
    TeamCreate,
    TeamFields,
    TeamOut,
    TeamPatch,
    UserCreate,
    UserFields,
    UserOut,
    UserPatch,
    field_errors,
    masked,
    unmask,
)
from .store import LABELS, AdminStore, Conflict, Versioned
from .upstream_links import UpstreamLinks

__all__ = ["PREFIX", "admin_router"]

log = logging.getLogger(__name__)

PREFIX = "/admin/v1"

M = TypeVar("M", bound=BaseModel)

_KEY_REFS = {"groups": "group", "user_id": "user", "team_id": "team", "customer_id": "customer"}


# ---------------------------------------------------------------- helpers


IfMatch = Annotated[
    str | None,
    Header(description="A revision from an earlier answer: the write happens only if the record is still at it."),
]


def _expected(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise invalid([FieldError(loc=["header", "If-Match"], msg="must be a revision number", type="if_match")])
    return int(value)


def _check_expected(current: Versioned[Any], expected: int | None, stale: Conflict) -> None:
    if expected is not None and expected != current.revision:
        raise stale


def _etag(response: Response, revision: int) -> None:
    response.headers["ETag"] = f'"{revision}"'


async def _check_refs(store: AdminStore, values: dict[str, Any], refs: dict[str, str]) -> None:
    """422 naming every referenced entity that does not exist (lists by index)."""
    detail: list[FieldError] = []
    for field, kind in refs.items():
        if field not in values:
            continue
        value = values[field]
        ids = list(value) if isinstance(value, list) else ([value] if value else [])
        for missing in await store.missing(kind, ids):
            loc: list[str | int] = ["body", field, ids.index(missing)] if isinstance(value, list) else ["body", field]
            detail.append(
                FieldError(loc=loc, msg=f"{LABELS[kind]} {missing!r} does not exist", type="unknown_reference")
            )
    if detail:
        raise invalid(detail, "unknown_reference")


def _build(model: type[M], values: dict[str, Any]) -> M:
    """The stored model from merged values; a problem is a 422 on the request body."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid(field_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])) from None


def _refers(record: Any, kind: str, entity_id: str) -> bool:
    if kind == "group":
        return entity_id in getattr(record, "groups", ())
    return getattr(record, f"{kind}_id", None) == entity_id


async def _referrers(store: AdminStore, kind: str, entity_id: str) -> list[str]:
    """What still names the entity (active keys, other entities), for a refused delete."""
    found = [
        f"key {v.value.name!r}"
        for _, v in await store.keys.list()
        if not v.value.revoked and _refers(v.value, kind, entity_id)
    ]
    for other, table in store.entities.items():
        found += [f"{LABELS[other]} {i!r}" for i, v in await table.list() if _refers(v.value, kind, entity_id)]
    return found


# ---------------------------------------------------------------- keys


def _key_out(record: KeyRecord, revision: int) -> KeyOut:
    return KeyOut(**record.model_dump(exclude={"v"}), revision=revision)


async def _check_key_name(store: AdminStore, name: str, own_id: str | None = None) -> None:
    for key_id, v in await store.keys.list():
        if v.value.name == name and not v.value.revoked and key_id != own_id:
            raise Conflict(f"an active key named {name!r} already exists ({key_id[:12]}…); pick another name")


def _key_routes(router: APIRouter, store: AdminStore) -> None:
    @router.post("/keys", status_code=201, tags=["keys"], responses=documented(409, 422))
    async def create_key(body: KeyCreate) -> KeyCreated:
        """Create a virtual key. The answer holds the secret, the only time it is ever shown: Bastion
        stores just its sha256, which is the key's id."""
        values = body.model_dump()
        await _check_refs(store, values, _KEY_REFS)
        await _check_key_name(store, body.name)
        secret, stored = await store.create_key(KeyRecord(id="", **values))
        log.info("admin: created key %r (%s…)", body.name, stored.value.id[:12])
        return KeyCreated(secret=secret, key=_key_out(stored.value, stored.revision))

    @router.get("/keys", tags=["keys"])
    async def list_keys() -> list[KeyOut]:
        """Every key, revoked ones included. Secrets are never stored, so never listed."""
        return [_key_out(v.value, v.revision) for _, v in await store.keys.list()]

    @router.get("/keys/{key_id}", tags=["keys"], responses=documented(404))
    async def get_key(key_id: str, response: Response) -> KeyOut:
        """One key by id (the sha256 hex of its secret)."""
        found = await store.keys.get(key_id)
        _etag(response, found.revision)
        return _key_out(found.value, found.revision)

    @router.patch("/keys/{key_id}", tags=["keys"], responses=documented(404, 409, 422))
    async def update_key(key_id: str, body: KeyPatch, response: Response, if_match: IfMatch = None) -> KeyOut:
        """Change a key's name, grants, groups, links, budget, rate limit, Code Mode or agent mode;
        absent fields stay as they are, `null` clears a link, budget, rate limit or agent mode."""
        expected = _expected(if_match)
        changes = body.model_dump(include=body.model_fields_set)
        current = await store.keys.get(key_id)
        _check_expected(current, expected, store.keys.stale(key_id))
        await _check_refs(store, changes, _KEY_REFS)
        if "name" in changes and changes["name"] != current.value.name and not current.value.revoked:
            await _check_key_name(store, changes["name"], key_id)
        updated = _build(KeyRecord, {**current.value.model_dump(), **changes})
        revision = await store.keys.update(key_id, updated, current.revision)
        log.info("admin: updated key %r (%s…): %s", updated.name, key_id[:12], ", ".join(sorted(changes)) or "nothing")
        _etag(response, revision)
        return _key_out(updated, revision)

    @router.post("/keys/{key_id}/revoke", tags=["keys"], responses=documented(404, 409))
    async def revoke_key(key_id: str, response: Response, if_match: IfMatch = None) -> KeyOut:
        """Revoke a key: every replica refuses it within moments. Revoking twice is harmless."""
        expected = _expected(if_match)
        current = await store.keys.get(key_id)
        _check_expected(current, expected, store.keys.stale(key_id))
        revision = current.revision
        if not current.value.revoked:
            revision = await store.keys.update(key_id, current.value.model_copy(update={"revoked": True}), revision)
            log.info("admin: revoked key %r (%s…)", current.value.name, key_id[:12])
        _etag(response, revision)
        return _key_out(current.value.model_copy(update={"revoked": True}), revision)

    @router.post("/keys/{key_id}/rotate", status_code=201, tags=["keys"], responses=documented(404, 409))
    async def rotate_key(key_id: str, if_match: IfMatch = None) -> KeyCreated:
        """Issue a new secret with the same name, grants, links and limits, and revoke the old key.
        The new secret is shown once, here. Budgets are counted per name, so spend carries over."""
        secret, new = await store.rotate_key(key_id, _expected(if_match))
        log.info("admin: rotated key %r (%s… -> %s…)", new.value.name, key_id[:12], new.value.id[:12])
        return KeyCreated(secret=secret, key=_key_out(new.value, new.revision))

    @router.delete("/keys/{key_id}", status_code=204, tags=["keys"], responses=documented(404, 409))
    async def delete_key(key_id: str, if_match: IfMatch = None) -> Response:
        """Delete a key's record (revoking keeps it visible; deleting forgets it)."""
        await store.keys.delete(key_id, _expected(if_match))
        log.info("admin: deleted key %s…", key_id[:12])
        return Response(status_code=204)


# ---------------------------------------------------------------- tool groups, customers, teams, users


def _entity_routes(
    router: APIRouter,
    store: AdminStore,
    kind: str,
    path: str,
    create_model: type[BaseModel],
    fields_model: type[BaseModel],
    patch_model: type[BaseModel],
    out_model: type[BaseModel],
    refs: dict[str, str],
) -> None:
    """Create, list, get, replace, patch and delete for one entity kind in the policy bucket."""
    table = store.entities[kind]
    label, tag = LABELS[kind], path.strip("/")
    model = table.model

    def out(entity: BaseModel, revision: int) -> Any:
        return out_model(**entity.model_dump(), revision=revision)

    async def write(entity_id: str, changes: dict[str, Any], expected: int | None, replace: bool) -> tuple[Any, int]:
        current = await table.get(entity_id)
        _check_expected(current, expected, table.stale(entity_id))
        await _check_refs(store, changes, refs)
        keep = {} if replace else current.value.model_dump()
        fixed = {"id": entity_id, "created_at": current.value.created_at, "updated_at": time.time()}  # type: ignore[attr-defined]  # every entity model has created_at
        entity = _build(model, {**keep, **changes, **fixed})
        revision = await table.update(entity_id, entity, current.revision)
        log.info("admin: updated %s %r", label, entity_id)
        return entity, revision

    async def create(body: create_model) -> Any:  # type: ignore[valid-type]  # a model class held in a variable: FastAPI reads it at run time
        values = body.model_dump()  # type: ignore[attr-defined]  # an instance of that model
        await _check_refs(store, values, refs)
        entity = _build(model, values)
        revision = await table.create(values["id"], entity)
        log.info("admin: created %s %r", label, values["id"])
        return out(entity, revision)

    async def list_all() -> Any:
        return [out(v.value, v.revision) for _, v in await table.list()]

    async def get_one(entity_id: str, response: Response) -> Any:
        found = await table.get(entity_id)
        _etag(response, found.revision)
        return out(found.value, found.revision)

    async def replace(
        entity_id: str,
        body: fields_model,  # type: ignore[valid-type]  # a model class held in a variable: FastAPI reads it at run time
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        entity, revision = await write(entity_id, body.model_dump(), _expected(if_match), replace=True)  # type: ignore[attr-defined]  # an instance of that model
        _etag(response, revision)
        return out(entity, revision)

    async def patch(
        entity_id: str,
        body: patch_model,  # type: ignore[valid-type]  # a model class held in a variable: FastAPI reads it at run time
        response: Response,
        if_match: IfMatch = None,
    ) -> Any:
        changes = body.model_dump(include=body.model_fields_set)  # type: ignore[attr-defined]  # an instance of that model
        entity, revision = await write(entity_id, changes, _expected(if_match), replace=False)
        _etag(response, revision)
        return out(entity, revision)

    async def delete(
        entity_id: str,
        if_match: IfMatch = None,
        force: Annotated[bool, Query(description="Delete even if keys or other entities still name it.")] = False,
    ) -> Response:
        expected = _expected(if_match)
        await table.get(entity_id)  # 404 before the (slower) reference scan
        if not force and (users := await _referrers(store, kind, entity_id)):
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
        summary=f"List {label}s",
    )
    router.add_api_route(
        item,
        get_one,
        response_model=out_model,
        methods=["GET"],
        tags=[tag],
        name=f"get_{kind}",
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
        summary=f"Delete a {label} (409 while still referenced, unless force=true)",
        responses=documented(404, 409),
    )


# ---------------------------------------------------------------- servers


def _server_routes(router: APIRouter, store: AdminStore, links: UpstreamLinks | None) -> None:
    async def server_out(record: ServerRecord, revision: int) -> ServerOut:
        config = record.config.model_copy(
            update={"env": masked(record.config.env), "headers": masked(record.config.headers)}
        )
        if record.config.disabled:
            return ServerOut(name=record.name, config=config, status="disabled", health="disabled", revision=revision)
        catalog = await store.catalog.find(record.name)
        if catalog is None:
            return ServerOut(name=record.name, config=config, status="pending", revision=revision)
        tools = len(catalog.value.tools) if catalog.value.status == "ready" else 0
        health = catalog.value.health or ("healthy" if catalog.value.status == "ready" else "down")
        link = await links.link(record.name, record.config) if links and health == "needs_auth" else None
        return ServerOut(
            name=record.name,
            config=config,
            status=catalog.value.status,
            health=health,
            breaker=catalog.value.breaker,
            error=catalog.value.error,
            tools=tools,
            authorize_url=link,
            revision=revision,
        )

    @router.get("/servers", tags=["servers"])
    async def list_servers() -> list[ServerOut]:
        """Every upstream server with what the executor reports about it. `env` and `headers`
        values are masked: they usually hold the upstream's credentials."""
        return [await server_out(v.value, v.revision) for _, v in await store.servers.list()]

    @router.get("/servers/{name}", tags=["servers"], responses=documented(404))
    async def get_server(name: str, response: Response) -> ServerOut:
        """One upstream server and its status."""
        found = await store.servers.get(name)
        _etag(response, found.revision)
        return await server_out(found.value, found.revision)

    @router.post("/servers", status_code=201, tags=["servers"], responses=documented(409, 422))
    async def add_server(body: ServerCreate) -> ServerOut:
        """Add an upstream MCP server (one `mcpServers` entry); executors connect to it at once."""
        record = ServerRecord(name=body.name, config=store.sealer.seal(body.config))
        revision = await store.servers.create(body.name, record)
        log.info("admin: added server %r (%s)", body.name, body.config.transport)
        return await server_out(record, revision)

    @router.put("/servers/{name}", tags=["servers"], responses=documented(404, 409, 422))
    async def update_server(name: str, body: ServerUpdate, response: Response, if_match: IfMatch = None) -> ServerOut:
        """Replace a server's entry; executors reconnect with it. Masked `env`/`headers` values
        (sent back as read) keep their stored values."""
        expected = _expected(if_match)
        current = await store.servers.get(name)
        _check_expected(current, expected, store.servers.stale(name))
        old = current.value.config
        config = body.config.model_copy(
            update={"env": unmask(body.config.env, old.env), "headers": unmask(body.config.headers, old.headers)}
        )
        record = ServerRecord(name=name, config=store.sealer.seal(config))
        revision = await store.servers.update(name, record, current.revision)
        log.info("admin: updated server %r", name)
        _etag(response, revision)
        return await server_out(record, revision)

    @router.delete("/servers/{name}", status_code=204, tags=["servers"], responses=documented(404, 409))
    async def remove_server(name: str, if_match: IfMatch = None) -> Response:
        """Remove a server; its tools disappear from every catalog."""
        await store.servers.delete(name, _expected(if_match))
        log.info("admin: removed server %r", name)
        return Response(status_code=204)


# ---------------------------------------------------------------- LLM providers


def _provider_routes(router: APIRouter, store: AdminStore) -> None:
    def provider_out(record: ProviderRecord, revision: int) -> ProviderOut:
        config = record.config.model_copy(update={"api_key": MASK if record.config.api_key is not None else None})
        return ProviderOut(name=record.name, config=config, source=record.source, revision=revision)

    async def served_elsewhere(name: str, config: ProviderConfig) -> None:
        """A model has one provider: a request's `model` names it."""
        for other, found in await store.providers.list():
            if other != name and (taken := sorted(set(found.value.config.models) & set(config.models))):
                raise Conflict(
                    f"provider {other!r} already serves {', '.join(map(repr, taken))}; a model has one provider"
                )

    def sealed(config: ProviderConfig, old: ProviderConfig | None = None) -> ProviderConfig:
        api_key = config.api_key
        if api_key == MASK:  # sent back as read: keep what is stored
            api_key = old.api_key if old is not None else None
            if api_key is None:
                raise invalid([FieldError(loc=["body", "config", "api_key"], msg="no stored key to keep", type="mask")])
        return config.model_copy(update={"api_key": store.sealer.seal_value(api_key) if api_key is not None else None})

    @router.get("/llm-providers", tags=["llm"])
    async def list_providers() -> list[ProviderOut]:
        """The OpenAI-compatible providers behind `/v1/chat/completions`; `api_key` values are masked."""
        return [provider_out(v.value, v.revision) for _, v in await store.providers.list()]

    @router.get("/llm-providers/{name}", tags=["llm"], responses=documented(404))
    async def get_provider(name: str, response: Response) -> ProviderOut:
        """One provider (its `api_key` masked)."""
        found = await store.providers.get(name)
        _etag(response, found.revision)
        return provider_out(found.value, found.revision)

    @router.post("/llm-providers", status_code=201, tags=["llm"], responses=documented(409, 422))
    async def add_provider(body: ProviderCreate) -> ProviderOut:
        """Add a provider; ingress lists its models and executors call it at once (no restart)."""
        await served_elsewhere(body.name, body.config)
        record = ProviderRecord(name=body.name, config=sealed(body.config))
        revision = await store.providers.create(body.name, record)
        log.info("admin: added llm provider %r (%d model(s))", body.name, len(body.config.models))
        return provider_out(record, revision)

    @router.put("/llm-providers/{name}", tags=["llm"], responses=documented(404, 409, 422))
    async def update_provider(
        name: str, body: ProviderUpdate, response: Response, if_match: IfMatch = None
    ) -> ProviderOut:
        """Replace a provider's entry (an `api_key` sent back masked keeps the stored key)."""
        expected = _expected(if_match)
        current = await store.providers.get(name)
        _check_expected(current, expected, store.providers.stale(name))
        await served_elsewhere(name, body.config)
        record = ProviderRecord(name=name, config=sealed(body.config, current.value.config))
        revision = await store.providers.update(name, record, current.revision)
        log.info("admin: updated llm provider %r", name)
        _etag(response, revision)
        return provider_out(record, revision)

    @router.delete("/llm-providers/{name}", status_code=204, tags=["llm"], responses=documented(404, 409))
    async def remove_provider(name: str, if_match: IfMatch = None) -> Response:
        """Remove a provider; its models disappear from `/v1/models`."""
        await store.providers.delete(name, _expected(if_match))
        log.info("admin: removed llm provider %r", name)
        return Response(status_code=204)


# ---------------------------------------------------------------- the router


def admin_router(store: AdminStore, auth: AdminAuth, links: UpstreamLinks | None = None) -> APIRouter:
    """Every admin route under `/admin/v1`, all behind the admin token."""
    route_class = type("BoundAdminRoute", (AdminRoute,), {"auth": auth})
    router = APIRouter(
        prefix=PREFIX,
        route_class=route_class,
        dependencies=[Depends(auth)],
        responses=documented(401, 403, 503),
    )
    _key_routes(router, store)
    _entity_routes(router, store, "group", "/groups", GroupCreate, GroupFields, GroupPatch, GroupOut, {})
    _entity_routes(
        router,
        store,
        "customer",
        "/customers",
        CustomerCreate,
        CustomerFields,
        CustomerPatch,
        CustomerOut,
        {"groups": "group"},
    )
    _entity_routes(
        router,
        store,
        "team",
        "/teams",
        TeamCreate,
        TeamFields,
        TeamPatch,
        TeamOut,
        {"groups": "group", "customer_id": "customer"},
    )
    _entity_routes(
        router,
        store,
        "user",
        "/users",
        UserCreate,
        UserFields,
        UserPatch,
        UserOut,
        {"groups": "group", "team_id": "team"},
    )
    _server_routes(router, store, links)
    _provider_routes(router, store)
    return router
