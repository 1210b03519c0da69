"""`/admin/v1/tools`.

Definitions pinning holds back (docs/supply-chain.md), the field-level diff of each, and a person's
approve or reject — the same functions `bastion tools …` runs (`libs.common.supply_chain.pin_store`),
each decision an admin audit event naming who.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from libs.common.contracts import subjects
from libs.common.contracts.pins import PinError, PinRecord
from libs.common.supply_chain.pin_store import decide_pending, diff_text, find, pending, read_records

from .identity import CURRENT
from .route_table import Route, register
from .store import AdminStore
from .tables import Conflict, NotFound

__all__ = ["pin_routes"]


class PendingOut(BaseModel):
    server: str
    name: str
    kind: str
    reason: str | None
    approved: str | None = Field(description="sha256 of the approved definition, if any")
    pending: str = Field(description="sha256 of the definition waiting for a person")
    renamed_from: str | None = None


class DiffOut(PendingOut):
    diff: str = Field(description="the field-level diff, as `bastion tools diff` prints it")


class PinStateOut(BaseModel):
    server: str
    name: str
    kind: str
    approved: str | None = Field(description="sha256 of the approved definition, if any")
    approved_by: str | None = None
    approved_at: float | None = None
    pending: str | None = Field(description="sha256 of a definition waiting for a person, if any")
    reason: str | None = None
    rejected: int = Field(description="how many definitions a person rejected (kept out for good)")
    listed: bool = Field(description="whether the upstream lists the definition now")


class Decision(BaseModel):
    sha256: str | None = Field(
        default=None, description="the pending version looked at (8+ hex digits): refused if another waits now"
    )


def _out(record: PinRecord) -> dict[str, Any]:
    assert record.pending is not None
    return {
        "server": record.server,
        "name": record.name,
        "kind": record.kind,
        "reason": record.pending_reason,
        "approved": record.approved.sha256 if record.approved is not None else None,
        "pending": record.pending.sha256,
        "renamed_from": record.renamed_from,
    }


async def pins(store: AdminStore) -> Any:
    return await store.buckets.get(subjects.KV_PINS)


async def list_pending(store: AdminStore) -> list[PendingOut]:
    """Every definition held back, oldest first."""
    return [PendingOut(**_out(r)) for r in pending((await read_records(await pins(store))).values())]


async def show_diff(store: AdminStore, server: str, name: str) -> DiffOut:
    try:
        record = (await find(await pins(store), server, name)).record
    except PinError as exc:
        raise NotFound(str(exc)) from None
    if record.pending is None:
        raise NotFound(f"{server}/{name} has no change waiting for approval")
    return DiffOut(**_out(record), diff=diff_text(record))


async def show_pin(store: AdminStore, server: str, name: str) -> PinStateOut:
    """A definition's pin: the approved version, who approved it, what waits.

    404 when nothing is pinned under that name (pinning off, or the server not listed since it was turned
    on)."""
    try:
        record = (await find(await pins(store), server, name)).record
    except PinError as exc:
        raise NotFound(str(exc)) from None
    return PinStateOut(
        server=record.server,
        name=record.name,
        kind=record.kind,
        approved=record.approved.sha256 if record.approved is not None else None,
        approved_by=record.approved_by,
        approved_at=record.approved_at,
        pending=record.pending.sha256 if record.pending is not None else None,
        reason=record.pending_reason,
        rejected=len(record.rejected),
        listed=record.listed,
    )


async def decided(
    store: AdminStore, server: str, name: str, body: Decision, what: Literal["approve", "reject"]
) -> PendingOut:
    identity = CURRENT.get()
    by = identity.principal if identity is not None else "admin"
    kv = await pins(store)
    try:
        await find(kv, server, name)
    except PinError as exc:
        raise NotFound(str(exc)) from None
    try:  # nothing waits, another version waits now, or a concurrent decision
        change = await decide_pending(kv, server, name, what, by, body.sha256)
    except PinError as exc:
        raise Conflict(str(exc)) from None
    if store.changes is not None:
        store.changes.record("pin", what, f"{server}/{name}", change.before, change.after)
    after = change.after
    return PendingOut(
        server=after.server,
        name=after.name,
        kind=after.kind,
        reason=after.pending_reason,
        approved=after.approved.sha256 if after.approved is not None else None,
        pending=change.before.pending.sha256 if change.before and change.before.pending else "",
        renamed_from=after.renamed_from,
    )


async def approve(store: AdminStore, server: str, name: str, body: Decision | None = None) -> PendingOut:
    """Serve the pending definition from now on (every executor relists the server)."""
    return await decided(store, server, name, body or Decision(), "approve")


async def reject(store: AdminStore, server: str, name: str, body: Decision | None = None) -> PendingOut:
    """Keep the pending definition out for good (it is not asked about again)."""
    return await decided(store, server, name, body or Decision(), "reject")


PIN_ROUTES = (
    Route("GET", "/tools/pending", "servers:read", list_pending),
    Route("GET", "/tools/{server}/{name:path}/diff", "servers:read", show_diff, errors=(404,)),
    Route("GET", "/tools/{server}/{name:path}/pin", "servers:read", show_pin, errors=(404,)),
    Route("POST", "/tools/{server}/{name:path}/approve", "tools:approve", approve, errors=(404, 409)),
    Route("POST", "/tools/{server}/{name:path}/reject", "tools:approve", reject, errors=(404, 409)),
)


def pin_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, PIN_ROUTES, "tools", store)
