"""The pin decision.

(Mode, pinned records, what the upstream lists now) -> per definition, served, flagged or quarantined,
with the reason, and the records to write back.

Pure: the caller reads the server's records and baseline from KV, calls `decide` on every listing
(first connect, `list_changed`, reconnect), writes `PinOutcome.writes` (and the baseline once),
serves `PinOutcome.served(kind)` and asks `PinOutcome.refusal(kind, name)` before each call.

| mode    | first listing of the server | later: new / changed / renamed / re-added changed | rejected by a person |
|---------|-----------------------------|---------------------------------------------------|----------------------|
| approve | quarantined (new)           | quarantined                                       | quarantined          |
| tofu    | served, pinned (first_use)  | quarantined                                       | quarantined          |
| warn    | served, pinned (first_use)  | served, flagged                                   | quarantined          |

A definition equal to its approved version is served in every mode. A name listed twice with two
different definitions is quarantined whole: which copy an agent would get is the upstream's choice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from libs.common.contracts.messages import MAX_ALIASES
from libs.common.contracts.pins import (
    DefinitionKind,
    PinBaseline,
    PinMode,
    PinnedVersion,
    PinReason,
    PinRecord,
    body_sha256,
    definition_name,
    definition_sha256,
)

__all__ = ["DRIFT_REASONS", "PinDecision", "PinOutcome", "Verdict", "decide", "quarantine_message"]

Verdict = Literal["served", "flagged", "quarantined", "absent"]
"""served: listed as approved. flagged: listed although it drifted (warn mode). quarantined: neither
listed nor callable until a person approves it. absent: approved once, no longer listed upstream."""

DRIFT_REASONS: Final = frozenset({"new", "changed", "renamed", "removed", "readded_changed", "credential"})
"""Reasons worth a metric, an event and a person's attention (drift, and a definition carrying a credential)."""

_KINDS: Final[tuple[DefinitionKind, ...]] = ("tool", "prompt", "resource_template", "app", "skill")


@dataclass(frozen=True, slots=True)
class PinDecision:
    server: str
    kind: DefinitionKind
    name: str
    verdict: Verdict
    reason: PinReason
    sha256: str | None
    """The listed definition's hash (None for an absent one)."""
    approved_sha256: str | None = None
    renamed_from: str | None = None
    aliases: tuple[str, ...] = ()
    """The names it was approved under before a rename (`PinRecord.aliases`)."""

    @property
    def served(self) -> bool:
        return self.verdict in ("served", "flagged")


@dataclass(frozen=True, slots=True)
class PinOutcome:
    server: str
    decisions: tuple[PinDecision, ...]
    writes: tuple[PinRecord, ...]
    """Records that changed (first-use pins, pending versions, removals): put them in KV."""
    baseline: PinBaseline | None
    """Set on the server's first listing: put it in KV (create-only, so racing replicas agree)."""
    _listed: Mapping[tuple[DefinitionKind, str], Sequence[Mapping[str, Any]]] = field(repr=False)
    _by_name: Mapping[tuple[DefinitionKind, str], PinDecision] = field(repr=False)

    def served(self, kind: DefinitionKind) -> list[Mapping[str, Any]]:
        """The definitions of `kind` to list, in the upstream's order."""
        return [
            definition
            for (k, name), definitions in self._listed.items()
            if k == kind and self._by_name[(k, name)].served
            for definition in definitions[:1]
        ]

    def decision(self, kind: DefinitionKind, name: str) -> PinDecision | None:
        return self._by_name.get((kind, name))

    def refusal(self, kind: DefinitionKind, name: str) -> str | None:
        """Why a call of `name` is refused (naming the approval it needs), or None when it may run.

        A name the upstream does not list is not refused here: the call fails as any unknown name does."""
        decision = self._by_name.get((kind, name))
        if decision is None or decision.served or decision.verdict == "absent":
            return None
        return quarantine_message(decision)

    @property
    def drift(self) -> list[PinDecision]:
        return [d for d in self.decisions if d.reason in DRIFT_REASONS]


_WHY: Final[Mapping[str, str]] = {
    "new": "is new",
    "changed": "changed since it was approved",
    "renamed": "is a renamed copy of {renamed_from!r}",
    "readded_changed": "was removed and came back with another definition",
    "rejected": "was rejected by a person",
    "credential": "carries a credential",
}


def quarantine_message(decision: PinDecision) -> str:
    label = decision.kind.replace("_", " ")
    what = f"{decision.server}/{decision.name}"
    why = _WHY.get(decision.reason, decision.reason).format(renamed_from=decision.renamed_from)
    if decision.reason == "rejected":
        return f"{label} {what!r} is quarantined: its definition {why}"
    digest = (decision.sha256 or "")[:12]
    return (
        f"{label} {what!r} is quarantined: its definition {why} and waits for approval"
        f" (definition {digest}; see `bastion tools diff {what}`, then `bastion tools approve {what}`)"
    )


def _group(
    listing: Mapping[DefinitionKind, Sequence[Mapping[str, Any]]],
) -> dict[tuple[DefinitionKind, str], list[Mapping[str, Any]]]:
    grouped: dict[tuple[DefinitionKind, str], list[Mapping[str, Any]]] = {}
    for kind in _KINDS:
        for definition in listing.get(kind, ()):
            grouped.setdefault((kind, definition_name(kind, definition)), []).append(definition)
    return grouped


def decide(
    server: str,
    mode: PinMode,
    baseline: PinBaseline | None,
    records: Iterable[PinRecord],
    listing: Mapping[DefinitionKind, Sequence[Mapping[str, Any]]],
    now: float | None = None,
    carrying: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> PinOutcome:
    """Decide every definition `listing` holds against the server's `records`, in `mode`.

    `listing` is `{"tool": [...], "prompt": [...], "resource_template": [...]}`, wire objects;
    `baseline` None means the server was never listed before. `carrying`: (kind, name) -> the redacted
    copy of a definition that carries a credential: quarantined in every mode unless that exact version
    was approved, and the redacted copy is what its pending version records."""
    now = time.time() if now is None else now
    by_key = {(r.kind, r.name): r for r in records if r.server == server}
    listed = _group(listing)
    first = baseline is None and mode != "approve"
    writes: list[PinRecord] = []
    decisions: list[PinDecision] = []

    # approved bodies no longer listed under their own name: a new name carrying one is a rename
    gone: dict[tuple[DefinitionKind, str], list[PinRecord]] = {}
    for (kind, name), pinned in by_key.items():
        if pinned.approved is not None and (kind, name) not in listed:
            gone.setdefault((kind, body_sha256(kind, pinned.approved.definition)), []).append(pinned)

    for (kind, name), definitions in listed.items():
        hashes = sorted({definition_sha256(d) for d in definitions})
        sha = hashes[0]
        record = by_key.get((kind, name))
        version = PinnedVersion(sha256=sha, definition=dict(definitions[0]), seen_at=now)
        approved = record.approved.sha256 if record is not None and record.approved is not None else None
        redacted = carrying.get((kind, name)) if carrying else None
        if redacted is not None and approved != sha and (record is None or sha not in record.rejected):
            decision, write = _carrying(server, kind, name, sha, record, approved, redacted, now)
        else:
            decision, write = _one(server, mode, first, kind, name, sha, version, record, approved, gone, now)
        if len(hashes) > 1 or not name:  # two copies that differ, or no name to call it by
            decision = PinDecision(server, kind, name, "quarantined", decision.reason, sha, approved)
            if decision.reason in ("pinned", "first_use"):
                decision = PinDecision(server, kind, name, "quarantined", "changed", sha, approved)
                write = None
        decisions.append(decision)
        if write is not None and name:
            writes.append(write)

    for (kind, name), record in by_key.items():
        if (kind, name) in listed or not record.listed:
            continue
        approved = record.approved.sha256 if record.approved is not None else None
        decisions.append(PinDecision(server, kind, name, "absent", "removed", None, approved))
        unlisted = {"listed": False, "pending": None, "pending_reason": None, "renamed_from": None, "updated_at": now}
        writes.append(record.model_copy(update=unlisted))

    return PinOutcome(
        server=server,
        decisions=tuple(decisions),
        writes=tuple(writes),
        baseline=PinBaseline(server=server, established_at=now) if baseline is None else None,
        _listed=listed,
        _by_name={(d.kind, d.name): d for d in decisions if d.verdict != "absent"},
    )


def _one(
    server: str,
    mode: PinMode,
    first: bool,
    kind: DefinitionKind,
    name: str,
    sha: str,
    version: PinnedVersion,
    record: PinRecord | None,
    approved: str | None,
    gone: Mapping[tuple[DefinitionKind, str], list[PinRecord]],
    now: float,
) -> tuple[PinDecision, PinRecord | None]:
    aliases = tuple(record.aliases) if record is not None else ()
    if record is not None and approved == sha:
        settled = record.listed and record.pending is None
        write = None if settled else _listed_again(record, now)
        return PinDecision(server, kind, name, "served", "pinned", sha, approved, aliases=aliases), write
    if record is not None and sha in record.rejected:
        settled = record.listed and record.pending is None
        write = None if settled else _listed_again(record, now)
        return PinDecision(server, kind, name, "quarantined", "rejected", sha, approved), write
    if first and approved is None:
        trusted = (record or PinRecord(server=server, kind=kind, name=name)).model_copy(
            update={
                "approved": version,
                "approved_by": "tofu",
                "approved_at": now,
                "pending": None,
                "pending_reason": None,
                "listed": True,
                "updated_at": now,
            }
        )
        return PinDecision(server, kind, name, "served", "first_use", sha, sha), trusted

    verdict: Verdict = "flagged" if mode == "warn" else "quarantined"
    reason: PinReason
    if record is not None and record.listed and record.pending is not None and record.pending.sha256 == sha:
        # already waiting, as it was: the reason it was first seen for stays (a re-added definition
        # does not become a mere "changed" one on the next listing)
        reason = record.pending_reason or "changed"
        return PinDecision(server, kind, name, verdict, reason, sha, approved, record.renamed_from, aliases), None

    renamed_from = None
    if approved is not None:
        reason = "changed" if record is not None and record.listed else "readded_changed"
    else:
        origins = gone.get((kind, body_sha256(kind, version.definition)), [])
        if origins:
            renamed_from = origins[0].name
            # kept from now on, whatever a person decides: a name only ever adds the policies written
            # against it, so a rename can never take a tool out of one
            earlier = tuple(n for origin in origins for n in (*origin.aliases, origin.name))
            aliases = _lineage(aliases, earlier, name)
        reason = "renamed" if renamed_from is not None else "new"
    base = record or PinRecord(server=server, kind=kind, name=name)
    write = base.model_copy(
        update={
            "pending": version,
            "pending_reason": reason,
            "renamed_from": renamed_from,
            "aliases": list(aliases),
            "listed": True,
            "updated_at": now,
        }
    )
    return PinDecision(server, kind, name, verdict, reason, sha, approved, renamed_from, aliases), write


def _lineage(held: tuple[str, ...], earlier: tuple[str, ...], name: str) -> tuple[str, ...]:
    """The earlier names of `name`, oldest first, each once, the newest `MAX_ALIASES` of them."""
    names = [n for n in dict.fromkeys((*held, *earlier)) if n != name]
    return tuple(names[-MAX_ALIASES:])


def _carrying(
    server: str,
    kind: DefinitionKind,
    name: str,
    sha: str,
    record: PinRecord | None,
    approved: str | None,
    redacted: Mapping[str, Any],
    now: float,
) -> tuple[PinDecision, PinRecord | None]:
    """A definition that carries a credential: quarantined, its redacted copy waiting for an owner."""
    decision = PinDecision(server, kind, name, "quarantined", "credential", sha, approved)
    if record is not None and record.listed and record.pending is not None and record.pending.sha256 == sha:
        return decision, None  # already waiting, as it was
    base = record or PinRecord(server=server, kind=kind, name=name)
    pending = PinnedVersion(sha256=sha, definition=dict(redacted), seen_at=now)
    update = {"pending": pending, "pending_reason": "credential", "renamed_from": None, "listed": True}
    return decision, base.model_copy(update={**update, "updated_at": now})


def _listed_again(record: PinRecord, now: float) -> PinRecord:
    """The record once its listed version is the approved (or a rejected) one again: nothing waits."""
    return record.model_copy(
        update={"listed": True, "pending": None, "pending_reason": None, "renamed_from": None, "updated_at": now}
    )
