"""A person's side of pinning over KV `bastion_pins` (docs/supply-chain.md).

What waits, its diff, approve or reject it, export the approved definitions as a signed catalog and
import one.

Used by the CLI (`bastion tools ...`, `bastion catalog ...`, over the admin role's NATS connection)
and meant for the admin API's routes: each function takes the bucket and returns what an answer and
an audit event need (`PinChange`, `pin_audit_event`). Every write is compare-and-set on the
revision that was read, so a definition that changed again meanwhile is never approved unseen, and
an executor's concurrent write is never overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from joserfc.jwk import OKPKey
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from libs.common.bus.nats import kv_keys
from libs.common.contracts.messages_audit import AuditEvent
from libs.common.contracts.pins import (
    CatalogImport,
    DefinitionKind,
    PinError,
    PinRecord,
    approve,
    import_key,
    pin_key,
    reject,
)
from libs.common.supply_chain.catalog_manifest import (
    ManifestError,
    export_manifest,
    pins_from_manifest,
    verify_manifest,
)
from libs.common.supply_chain.pin_diff import definition_diff, render_diff

__all__ = [
    "Held",
    "PinChange",
    "decide_pending",
    "diff_text",
    "export_catalog",
    "find",
    "import_catalog",
    "parse_target",
    "pending",
    "pin_audit_event",
    "read_records",
]

Decision = Literal["approve", "reject"]


@dataclass(frozen=True, slots=True)
class Held:
    """A record as read, with the KV key and revision a write must name."""

    key: str
    record: PinRecord
    revision: int


@dataclass(frozen=True, slots=True)
class PinChange:
    """What a person's decision changed: the record before and after (for the answer and the audit event)."""

    action: str
    """`pin.approve`, `pin.reject`, `pin.import`."""
    before: PinRecord | None
    after: PinRecord


async def read_records(kv: KeyValue) -> dict[str, Held]:
    """Every pin record in the bucket, by KV key."""
    try:
        keys = await kv_keys(kv)
    except NotFoundError:  # not created yet (no executor has run)
        return {}
    held: dict[str, Held] = {}
    for key in keys:
        if not key.startswith("def."):
            continue
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue  # deleted between the listing and the read
        if entry.value:
            held[key] = Held(key, PinRecord.model_validate_json(entry.value), entry.revision or 0)
    return held


def pending(records: Iterable[Held]) -> list[PinRecord]:
    """The records with a version waiting for a person, oldest first."""
    waiting = [h.record for h in records if h.record.pending is not None]
    return sorted(waiting, key=lambda r: (r.pending.seen_at if r.pending else 0.0, r.server, r.name))


def parse_target(target: str) -> tuple[str, str]:
    """`SERVER/NAME` -> (server, name); the name may itself hold slashes (a template's URI)."""
    server, slash, name = target.partition("/")
    if not slash or not server or not name:
        raise PinError(f"{target!r} is not SERVER/NAME (e.g. github/create_issue)")
    return server, name


async def find(kv: KeyValue, server: str, name: str) -> Held:
    """The record of `server`'s tool, prompt or template `name` (a tool first if several kinds share it)."""
    kinds: tuple[DefinitionKind, ...] = ("tool", "prompt", "resource_template", "app", "skill")
    for kind in kinds:
        key = pin_key(server, kind, name)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue
        if entry.value:
            return Held(key, PinRecord.model_validate_json(entry.value), entry.revision or 0)
    raise PinError(f"no pinned definition {server}/{name}: see `bastion tools pending`")


def diff_text(record: PinRecord) -> str:
    """The field-level diff of the approved and the pending version, as `bastion tools diff` prints it."""
    if record.pending is None:
        return f"{record.server}/{record.name}: nothing waits for approval"
    old = record.approved.definition if record.approved is not None else None
    head = f"{record.kind.replace('_', ' ')} {record.server}/{record.name}: {record.pending_reason or 'changed'}"
    if record.renamed_from:
        head += f" (a renamed copy of {record.renamed_from!r})"
    approved = record.approved.sha256[:12] if record.approved is not None else "none"
    head += f"\napproved {approved} -> pending {record.pending.sha256[:12]}"
    return f"{head}\n{render_diff(definition_diff(old, record.pending.definition))}"


async def decide_pending(
    kv: KeyValue, server: str, name: str, decision: Decision, by: str, sha256: str | None = None
) -> PinChange:
    """Approve or reject what waits for `server/name`.

    `sha256` (a prefix of at least 8 hex digits is enough) is the pending version the person looked at:
    if another one waits now, nothing changes."""
    held = await find(kv, server, name)
    record = held.record
    if record.pending is None:
        raise PinError(f"{server}/{name} has no change waiting for approval")
    wanted = record.pending.sha256
    if sha256 is not None:
        if len(sha256) < 8 or not wanted.startswith(sha256.lower()):
            raise PinError(
                f"{server}/{name} waits with definition {wanted[:12]}, not {sha256[:12]}: look at the diff again"
            )
    after = approve(record, wanted, by) if decision == "approve" else reject(record, wanted)
    try:
        await kv.update(held.key, after.model_dump_json().encode(), last=held.revision)
    except KeyWrongLastSequenceError:
        raise PinError(f"{server}/{name} changed while you decided: look at `bastion tools diff` again") from None
    return PinChange(f"pin.{decision}", record, after)


def _summary(record: PinRecord | None) -> str | None:
    """A record as an audit event's before/after: hashes and reasons, not the definitions."""
    if record is None:
        return None
    return orjson.dumps(
        {
            "kind": record.kind,
            "approved": record.approved.sha256 if record.approved else None,
            "approved_by": record.approved_by,
            "pending": record.pending.sha256 if record.pending else None,
            "pending_reason": record.pending_reason,
            "rejected": record.rejected,
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def pin_audit_event(change: PinChange, actor: str) -> AuditEvent:
    """The admin audit event of a person's decision (or an import): who, what, on which definition."""
    after = change.after
    return AuditEvent(
        kind="admin",
        status="ok",
        latency_ms=0.0,
        server=after.server,
        tool=after.name,
        name=f"{after.server}/{after.name}",
        actor=actor,
        action=change.action,
        target=f"{after.server}/{after.kind}/{after.name}",
        before=_summary(change.before),
        after=_summary(after),
    )


async def export_catalog(kv: KeyValue, key: OKPKey, deployment: str, now: float | None = None) -> tuple[str, int]:
    """Every approved definition, signed with the deployment key: (the compact JWS, how many entries).

    The sequence is the export time in milliseconds, so each export is above the previous one."""
    now = time.time() if now is None else now
    records = [h.record for h in (await read_records(kv)).values() if h.record.approved is not None]
    return export_manifest(records, deployment, max(1, int(now * 1000)), key, now), len(records)


async def import_catalog(
    kv: KeyValue, token: str | bytes, trusted: Iterable[OKPKey | Mapping[str, Any]], by: str
) -> list[PinChange]:
    """Verify a signed catalog against `trusted` keys and make its entries the approved versions here.

    Refuses a manifest not above the last one imported from its key (a replay)."""
    # the signature first (which key), then the replay check with that key's last sequence
    verified = verify_manifest(token, trusted)
    last_key = import_key(verified.kid)
    last: CatalogImport | None = None
    last_revision = 0
    try:
        entry = await kv.get(last_key)
        if entry.value:
            last, last_revision = CatalogImport.model_validate_json(entry.value), entry.revision or 0
    except KeyNotFoundError:
        pass
    if last is not None and verified.manifest.sequence <= last.sequence:
        raise ManifestError(
            f"sequence {verified.manifest.sequence} is not above {last.sequence}, the last imported from this key:"
            " a replay"
        )
    held = await read_records(kv)
    existing = {key: h.record for key, h in held.items()}
    changes: list[PinChange] = []
    for record in pins_from_manifest(verified, existing):
        key = pin_key(record.server, record.kind, record.name)
        before = held.get(key)
        value = record.model_dump_json().encode()
        try:
            if before is not None:
                await kv.update(key, value, last=before.revision)
            else:
                await kv.create(key, value)
        except KeyWrongLastSequenceError:
            raise PinError(f"{record.server}/{record.name} changed during the import; import again") from None
        changes.append(PinChange("pin.import", before.record if before else None, record))
    mark = CatalogImport(kid=verified.kid, sequence=verified.manifest.sequence, imported_by=by).model_dump_json()
    if last is None:
        await kv.create(last_key, mark.encode())
    else:
        await kv.update(last_key, mark.encode(), last=last_revision)
    return changes
