"""`/admin/v1/keys`: create, list, show, change, revoke, rotate and delete virtual keys.

A secret is in the answers to create and rotate only; Bastion stores its sha256, which is the key's id.

`keys:read` and `keys:write` may be held for a team or a customer only (a scoped key manager): such
a principal lists and reads only the keys lying wholly inside its scope (`outcome.visible`), and every
write is decided on the key before and after it (`outcome.decide`, asked by the store): no route
here checks a link itself.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging

from fastapi import APIRouter, Response
from pydantic import BaseModel

from libs.common.contracts.messages import KeyRecord

from .identity import current as current_identity
from .models import KeyCreate, KeyCreated, KeyOut, KeyPatch
from .route_helpers import IfMatch, build, check_expected, check_refs, etag, expected_revision
from .route_table import Route, register
from .store import AdminStore, Conflict

__all__ = ["key_routes"]

log = logging.getLogger(__name__)

_KEY_REFS = {"groups": "group", "user_id": "user", "team_id": "team", "customer_id": "customer"}


def _key_out(record: KeyRecord, revision: int) -> KeyOut:
    return KeyOut(**record.model_dump(exclude={"v"}), revision=revision)


async def _check_key_name(store: AdminStore, name: str, own_id: str | None = None) -> None:
    for key_id, v in await store.keys.list():
        if v.value.name == name and not v.value.revoked and key_id != own_id:
            raise Conflict(f"an active key named {name!r} already exists ({key_id[:12]}…); pick another name")


async def create_key(store: AdminStore, body: KeyCreate) -> KeyCreated:
    """Create a virtual key.

    The answer holds the secret, the only time it is ever shown: Bastion stores just its sha256, which is
    the key's id."""
    values = body.model_dump()
    await check_refs(store, values, _KEY_REFS)
    await _check_key_name(store, body.name)
    secret, stored = await store.create_key(KeyRecord(id="", **values, created_by=current_identity().principal))
    log.info("admin: created key %r (%s…)", body.name, stored.value.id[:12])
    return KeyCreated(secret=secret, key=_key_out(stored.value, stored.revision))


async def list_keys(store: AdminStore) -> list[KeyOut]:
    """Every key (a scoped key manager: its team's or customer's), revoked ones included.

    Secrets are never stored, so never listed."""
    found = [v for _, v in await store.keys.list()]
    return [_key_out(v.value, v.revision) for v in await store.outcome.visible("key", "keys:read", found)]


async def get_key(store: AdminStore, key_id: str, response: Response) -> KeyOut:
    """One key by id (the sha256 hex of its secret)."""
    found = await store.keys.get(key_id)
    await store.outcome.require_visible("key", "keys:read", found.value)
    etag(response, found.revision)
    return _key_out(found.value, found.revision)


async def update_key(
    store: AdminStore, key_id: str, body: BaseModel, response: Response, if_match: IfMatch = None
) -> KeyOut:
    """Change a key's name, grants, groups, links, budget, rate limit, Code Mode or agent mode.

    Absent fields stay as they are, `null` clears a link, budget, rate limit or agent mode."""
    expected = expected_revision(if_match)
    changes = body.model_dump(include=body.model_fields_set)
    current = await store.keys.get(key_id)
    check_expected(current, expected, store.keys.stale(key_id))
    await check_refs(store, changes, _KEY_REFS)
    if "name" in changes and changes["name"] != current.value.name and not current.value.revoked:
        await _check_key_name(store, changes["name"], key_id)
    updated = build(KeyRecord, {**current.value.model_dump(), **changes})
    revision = await store.keys.update(key_id, updated, current.revision)
    log.info("admin: updated key %r (%s…): %s", updated.name, key_id[:12], ", ".join(sorted(changes)) or "nothing")
    etag(response, revision)
    return _key_out(updated, revision)


async def revoke_key(store: AdminStore, key_id: str, response: Response, if_match: IfMatch = None) -> KeyOut:
    """Revoke a key: every replica refuses it within moments. Revoking twice is harmless."""
    expected = expected_revision(if_match)
    current = await store.keys.get(key_id)
    await store.outcome.require_visible("key", "keys:write", current.value)  # it answers the key, written or not
    check_expected(current, expected, store.keys.stale(key_id))
    revision = current.revision
    if not current.value.revoked:
        revision = await store.keys.update(key_id, current.value.model_copy(update={"revoked": True}), revision)
        log.info("admin: revoked key %r (%s…)", current.value.name, key_id[:12])
    etag(response, revision)
    return _key_out(current.value.model_copy(update={"revoked": True}), revision)


async def rotate_key(store: AdminStore, key_id: str, if_match: IfMatch = None) -> KeyCreated:
    """Issue a new secret with the same name, grants, links and limits, and revoke the old key.

    The new secret is shown once, here. Budgets are counted per name, so spend carries over."""
    secret, new = await store.rotate_key(key_id, expected_revision(if_match), by=current_identity().principal)
    log.info("admin: rotated key %r (%s… -> %s…)", new.value.name, key_id[:12], new.value.id[:12])
    return KeyCreated(secret=secret, key=_key_out(new.value, new.revision))


async def delete_key(store: AdminStore, key_id: str, if_match: IfMatch = None) -> Response:
    """Delete a key's record (revoking keeps it visible; deleting forgets it)."""
    await store.keys.delete(key_id, expected_revision(if_match))
    log.info("admin: deleted key %s…", key_id[:12])
    return Response(status_code=204)


KEY_ROUTES = (
    Route("POST", "/keys", "keys:write", create_key, 201, (409, 422)),
    Route("GET", "/keys", "keys:read", list_keys),
    Route("GET", "/keys/{key_id}", "keys:read", get_key, errors=(404,)),
    Route("PATCH", "/keys/{key_id}", "keys:write", update_key, errors=(404, 409, 422), body=KeyPatch),
    Route("POST", "/keys/{key_id}/revoke", "keys:write", revoke_key, errors=(404, 409)),
    Route("POST", "/keys/{key_id}/rotate", "keys:write", rotate_key, 201, (404, 409)),
    Route("DELETE", "/keys/{key_id}", "keys:write", delete_key, 204, (404, 409)),
)


def key_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, KEY_ROUTES, "keys", store)
