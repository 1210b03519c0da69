"""Pinned definitions (docs/supply-chain.md).

What a tool, prompt or resource template looked like when it was trusted, and what it looks like now if
that differs.

A definition is pinned as the sha256 of its **whole wire object** (name, title, description, every
schema, annotations, `_meta`: everything the upstream sent), canonicalized with RFC 8785 (JCS):
object keys sorted by UTF-16 code units, no insignificant whitespace, numbers in their shortest
ECMAScript form (`1.0` and `1` are the same number), strings as their exact code points. Unicode is
deliberately *not* normalized: a definition that gains a zero-width space or swaps a letter for a
look-alike is a different definition. Pinning only the fields an approval dialog shows misses most
mutations (published work: 1 of 8 caught, against 7 of 8 for the whole object).

Records live in JetStream KV (`subjects.KV_PINS`): the executor writes what it sees (first-use
trust, pending changes, removals), a person approves or rejects through the admin API or the CLI
(`approve`, `reject` here, pure), a signed catalog imports approved versions
(`libs.common.supply_chain.catalog_manifest`).
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson
import rfc8785
from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.messages_base import BusMessage

__all__ = [
    "IDENTITY_FIELD",
    "MAX_REJECTED",
    "CatalogImport",
    "DefinitionKind",
    "PinBaseline",
    "PinDrift",
    "PinError",
    "PinMode",
    "PinReason",
    "PinRecord",
    "PinnedVersion",
    "approve",
    "baseline_key",
    "body_sha256",
    "canonical_json",
    "definition_name",
    "definition_sha256",
    "import_key",
    "pin_key",
    "reject",
]

DefinitionKind = Literal["tool", "prompt", "resource_template", "app", "skill"]
"""`app`: an MCP App, a `ui://` resource, pinned by its content as read (`ui_apps.app_definition`);
`skill`: a `skills/list` entry, its manifest (every file's sha256) included."""
PinMode = Literal["approve", "tofu", "warn"]
"""Per server (`ServerConfig.pinning`). approve: anything new or changed waits for a person. tofu
(the default): what the server lists when it is first added is trusted, later additions and changes
wait. warn: everything is served, drift is flagged."""
PinReason = Literal[
    "pinned", "first_use", "new", "changed", "renamed", "removed", "readded_changed", "rejected", "credential"
]
"""Why a definition got its verdict: `pinned` (as approved), `first_use` (trusted on the server's first
listing, tofu), `new`, `changed`, `renamed` (an approved body under a new name), `removed` (approved,
no longer listed), `readded_changed` (removed, then listed again with another definition),
`rejected` (a person rejected exactly this definition), `credential` (it carries a credential, whatever
the mode: the secrets guardrail found one in it, docs/guardrails.md)."""

IDENTITY_FIELD: Final[Mapping[DefinitionKind, str]] = {
    "tool": "name",
    "prompt": "name",
    "resource_template": "uriTemplate",
    "app": "uri",
    "skill": "uri",
}
"""The field that names a definition: what a call (or a resource read) refers to."""

MAX_REJECTED: Final = 32
"""Rejected hashes one record remembers (the newest); older ones are asked about again if they return."""

_MAX_SAFE_INT: Final = 2**53 - 1


class PinError(ValueError):
    """An approval or rejection that does not apply to the record as it is (the message says why)."""


# --------------------------------------------------------------------------- hashing


def _jcs_safe(value: Any) -> Any:
    """What JCS can encode, for the rare definition it cannot.

    Integers beyond 2^53 become the double nearest them (as any JCS implementation reads them), NaN and
    the infinities (not JSON, but Python's parser accepts them) their names, lone surrogates their
    `\\uXXXX` spelling."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INT else _jcs_safe(float(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {_jcs_safe(str(k)): _jcs_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jcs_safe(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of a parsed JSON value (see the module doc for the few values JCS has no form for)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, OverflowError):
        return rfc8785.dumps(_jcs_safe(value))


_REMEMBERED: Final = 16_384
"""Definition versions whose pin is remembered (a few MiB at most)."""
_PLAIN = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_NULL_TOKENS: Final = (b":null", b",null", b"[null")
_pins: dict[bytes, str] = {}
"""sha256 of a definition's sorted orjson bytes -> its pin."""


def definition_sha256(definition: Mapping[str, Any]) -> str:
    """The pin of a definition: sha256 (hex) of its canonical whole wire object.

    The one digest of a definition version: pinning records it and the definition screen remembers
    its scans by it. Canonical JSON costs ~70 µs for a typical tool, and every listing (pinning, the
    screen) asks again for the same versions, so a pin is remembered by the sha256 of the definition's
    sorted orjson bytes (~3 µs), which name one JSON value: orjson refuses what is not plain JSON (lone
    surrogates, integers past 64 bits, non-string keys, other types), and its one ambiguity, NaN and
    the infinities written as `null`, is ruled out by computing any definition holding a null afresh."""
    try:
        plain = orjson.dumps(definition, option=_PLAIN)
    except TypeError:
        return _pin(definition)
    if any(token in plain for token in _NULL_TOKENS):
        return _pin(definition)
    key = hashlib.sha256(plain).digest()
    pin = _pins.get(key)
    if pin is None:
        pin = _pin(definition)
        if len(_pins) >= _REMEMBERED:
            _pins.clear()
        _pins[key] = pin
    return pin


def _pin(definition: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(definition)).hexdigest()


def definition_name(kind: DefinitionKind, definition: Mapping[str, Any]) -> str:
    """The definition's identity (`name`, or a template's `uriTemplate`); "" when it has none."""
    name = definition.get(IDENTITY_FIELD[kind])
    return name if isinstance(name, str) else ""


def body_sha256(kind: DefinitionKind, definition: Mapping[str, Any]) -> str:
    """sha256 of the definition without its identity field: equal bodies under two names are a rename."""
    field = IDENTITY_FIELD[kind]
    return definition_sha256({k: v for k, v in definition.items() if k != field})


# --------------------------------------------------------------------------- records


def _token(text: str) -> str:
    """A KV key token for any text.

    Base64url without padding (letters, digits, `-`, `_`), or a hash for long names (KV keys are
    subjects; a template URI may be long)."""
    raw = text.encode()
    if len(raw) > 96:
        return "h" + hashlib.sha256(raw).hexdigest()[:40]
    return "b" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def pin_key(server: str, kind: DefinitionKind, name: str) -> str:
    """KV key of one definition's `PinRecord`.

    `def.<server>.<kind>.<name>`, each part encoded so any name is a valid key and `def.<server>.>`
    watches exactly one server."""
    return f"def.{_token(server)}.{kind}.{_token(name)}"


def baseline_key(server: str) -> str:
    """KV key of a server's `PinBaseline`."""
    return f"baseline.{_token(server)}"


def import_key(kid: str) -> str:
    """KV key of the `CatalogImport` from the signing key `kid`."""
    return f"imported.{_token(kid)}"


class PinnedVersion(BaseModel):
    """One version of a definition, as hashed."""

    model_config = ConfigDict(extra="ignore")
    sha256: str
    definition: dict[str, Any]
    seen_at: float = Field(default_factory=time.time)


class PinRecord(BusMessage):
    """One definition of one server: the approved version, and the version waiting for a person."""

    server: str
    kind: DefinitionKind
    name: str
    approved: PinnedVersion | None = None
    """What is served; None until something is approved (or trusted on first use)."""
    approved_by: str | None = None
    """"tofu" (first use), the person (`admin-token@<address>`, a user), or `catalog:<key id>#<sequence>`."""
    approved_at: float | None = None
    pending: PinnedVersion | None = None
    """What the upstream lists now, when it differs from `approved` and waits for a decision."""
    pending_reason: PinReason | None = None
    renamed_from: str | None = None
    """For a `renamed` pending version: the approved name whose body it carries."""
    aliases: list[str] = Field(default_factory=list, max_length=16)
    """The names this definition was approved under before it was renamed (oldest first), kept once
    seen: Cedar policies judge the tool under them too (docs/policy.md, "Stable identities")."""
    rejected: list[str] = Field(default_factory=list)
    """sha256 of versions a person rejected (newest last, at most `MAX_REJECTED`): stay quarantined."""
    listed: bool = True
    """Whether the server's last listing had this name."""
    updated_at: float = Field(default_factory=time.time)


class PinBaseline(BusMessage):
    """A server's first listing was seen (tofu trusts that listing, and only that one)."""

    server: str
    established_at: float = Field(default_factory=time.time)


class CatalogImport(BusMessage):
    """The last signed catalog imported from one key: a manifest not above `sequence` is a replay."""

    kid: str
    sequence: int
    imported_at: float = Field(default_factory=time.time)
    imported_by: str = ""


class PinDrift(BusMessage):
    """`subjects.PIN_DRIFT`: a listing found a definition that drifted from its pin.

    Names it and why, never its text (`bastion tools diff` shows that, from the record)."""

    server: str
    kind: DefinitionKind
    name: str
    reason: PinReason
    verdict: Literal["quarantined", "flagged", "absent"]
    sha256: str | None = None
    approved_sha256: str | None = None
    renamed_from: str | None = None
    mode: PinMode
    instance: str = ""
    """The executor replica that saw it (every replica lists every server: each may report it)."""
    ts: float = Field(default_factory=time.time)


# --------------------------------------------------------------------------- a person's decision


def _pending_for(record: PinRecord, sha256: str) -> PinnedVersion:
    pending = record.pending
    if pending is None:
        raise PinError(f"{record.server}/{record.name} has no change waiting for approval")
    if pending.sha256 != sha256:
        raise PinError(
            f"{record.server}/{record.name} waits with definition {pending.sha256[:12]}, not {sha256[:12]}:"
            " look at the diff again"
        )
    return pending


def approve(record: PinRecord, sha256: str, by: str, now: float | None = None) -> PinRecord:
    """The record once `by` approved its pending version `sha256`.

    (The hash the person was shown, so a definition that changed again meanwhile is not approved unseen)."""
    pending = _pending_for(record, sha256)
    now = time.time() if now is None else now
    return record.model_copy(
        update={
            "approved": pending,
            "approved_by": by,
            "approved_at": now,
            "pending": None,
            "pending_reason": None,
            "renamed_from": None,
            "rejected": [h for h in record.rejected if h != sha256],
            "updated_at": now,
        }
    )


def reject(record: PinRecord, sha256: str, now: float | None = None) -> PinRecord:
    """The record once a person rejected its pending version `sha256`.

    It stays quarantined, and is not asked about again while the upstream keeps listing it (who rejected
    is the audit event's to say)."""
    _pending_for(record, sha256)
    now = time.time() if now is None else now
    rejected = [*(h for h in record.rejected if h != sha256), sha256][-MAX_REJECTED:]
    return record.model_copy(
        update={"pending": None, "pending_reason": None, "renamed_from": None, "rejected": rejected, "updated_at": now}
    )
