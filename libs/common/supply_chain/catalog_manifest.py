"""The signed catalog (docs/supply-chain.md).

A deployment's approved definitions as a JWS, signed with its ed25519 key, verified and imported by
another deployment (dev -> prod promotion).

The file is one compact JWS (RFC 7515), algorithm `Ed25519` (RFC 9864; the older `EdDSA` name is
refused, as is every other algorithm), `kid` the key's RFC 7638 thumbprint, and a JSON payload:

    {"format": "bastion.catalog/1", "deployment": "dev", "sequence": 7, "issued_at": 1767225600.0,
     "entries": [{"server": "github", "kind": "tool", "name": "create_issue",
                  "sha256": "…", "definition": {…}}, …]}

Verification checks the signature against the public keys the importing deployment trusts, then
every entry's sha256 against its definition, then the sequence: an importer remembers the highest
sequence it imported from each key and refuses one not above it, so an older manifest (a definition
since withdrawn) cannot be replayed. Everything here is pure: keys and files are the caller's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libs.common.contracts.pins import DefinitionKind, PinnedVersion, PinRecord, definition_sha256, pin_key

__all__ = [
    "ALGORITHM",
    "MANIFEST_FORMAT",
    "MAX_ENTRIES",
    "MAX_MANIFEST_BYTES",
    "CatalogManifest",
    "ManifestEntry",
    "ManifestError",
    "VerifiedManifest",
    "export_manifest",
    "generate_signing_key",
    "load_signing_key",
    "pins_from_manifest",
    "public_jwk",
    "verify_manifest",
]

MANIFEST_FORMAT: Final = "bastion.catalog/1"
ALGORITHM: Final = "Ed25519"
MAX_MANIFEST_BYTES: Final = 64 * 1024 * 1024
"""A manifest file longer than this is refused before it is parsed."""
MAX_ENTRIES: Final = 100_000


class ManifestError(ValueError):
    """The manifest is not one this deployment may import; the message says why."""


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server: str
    kind: DefinitionKind
    name: str
    sha256: str
    definition: dict[str, Any]


class CatalogManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["bastion.catalog/1"] = MANIFEST_FORMAT
    deployment: str
    """Free text naming the exporting deployment (`dev`, `staging-eu`)."""
    sequence: int = Field(ge=1)
    """Increases with every export of the deployment; importers refuse one not above the last they took."""
    issued_at: float
    entries: list[ManifestEntry] = Field(max_length=MAX_ENTRIES)


class VerifiedManifest(BaseModel):
    manifest: CatalogManifest
    kid: str
    """Thumbprint of the key that signed it (one of the trusted keys)."""


def generate_signing_key() -> OKPKey:
    """A new private ed25519 deployment key."""
    return OKPKey.generate_key("Ed25519")


def load_signing_key(text: str | bytes) -> OKPKey:
    """A deployment key from its PEM or JWK (JSON) form; private for signing, public for verifying."""
    raw = text.encode() if isinstance(text, str) else text
    try:
        key = OKPKey.import_key(json.loads(raw)) if raw.lstrip().startswith(b"{") else OKPKey.import_key(raw)
    except (ValueError, TypeError, JoseError) as exc:
        raise ManifestError(f"not an ed25519 key in PEM or JWK form ({type(exc).__name__})") from None
    if key.curve_name != "Ed25519":
        raise ManifestError(f"the key is {key.curve_name}, not Ed25519")
    return key


def public_jwk(key: OKPKey) -> dict[str, Any]:
    """The public half as a JWK with its `kid` (what another deployment is told to trust)."""
    public = dict(key.as_dict(private=False))
    public["kid"] = key.thumbprint()
    return public


def export_manifest(
    records: Iterable[PinRecord], deployment: str, sequence: int, key: OKPKey, now: float | None = None
) -> str:
    """The approved version of every record, signed: a compact JWS (one line of text)."""
    if not key.is_private:
        raise ManifestError("signing needs the private deployment key")
    entries = [
        ManifestEntry(
            server=r.server, kind=r.kind, name=r.name, sha256=r.approved.sha256, definition=r.approved.definition
        )
        for r in sorted(records, key=lambda r: (r.server, r.kind, r.name))
        if r.approved is not None
    ]
    manifest = CatalogManifest(
        deployment=deployment, sequence=sequence, issued_at=time.time() if now is None else now, entries=entries
    )
    header = {"alg": ALGORITHM, "kid": key.thumbprint(), "typ": "bastion-catalog+jws"}
    payload = manifest.model_dump_json().encode()
    return jws.serialize_compact(header, payload, key, algorithms=[ALGORITHM])


def _keys_by_kid(trusted: Iterable[OKPKey | Mapping[str, Any]]) -> dict[str, OKPKey]:
    keys: dict[str, OKPKey] = {}
    for item in trusted:
        key = item if isinstance(item, OKPKey) else OKPKey.import_key(dict(item))
        if key.curve_name == "Ed25519":
            keys[key.thumbprint()] = key
    return keys


def verify_manifest(
    token: str | bytes, trusted: Iterable[OKPKey | Mapping[str, Any]], last_sequence: int | None = None
) -> VerifiedManifest:
    """The manifest.

    Once its signature is one of `trusted`'s, its every hash matches its definition and its sequence is
    above `last_sequence` (the highest this deployment imported from that key)."""
    if len(token) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    text = text.strip()
    try:
        header = jws.extract_compact(text.encode()).protected
    except (JoseError, ValueError):
        raise ManifestError("not a compact JWS") from None
    if header.get("alg") != ALGORITHM:
        raise ManifestError(f"signed with {header.get('alg')!r}; only {ALGORITHM} is accepted")
    kid = header.get("kid")
    key = _keys_by_kid(trusted).get(kid) if isinstance(kid, str) else None
    if key is None:
        raise ManifestError(f"signed by key {kid!r}, which this deployment does not trust")
    try:
        payload = jws.deserialize_compact(text, key, algorithms=[ALGORITHM]).payload
    except (JoseError, ValueError):
        raise ManifestError("the signature does not match the manifest (changed, or signed by another key)") from None
    try:
        manifest = CatalogManifest.model_validate_json(payload)
    except ValidationError as exc:
        raise ManifestError(f"the signed payload is not a catalog manifest ({exc.error_count()} problems)") from None
    for entry in manifest.entries:
        if definition_sha256(entry.definition) != entry.sha256:
            raise ManifestError(f"{entry.server}/{entry.name}: sha256 does not match its definition")
    if last_sequence is not None and manifest.sequence <= last_sequence:
        raise ManifestError(
            f"sequence {manifest.sequence} is not above {last_sequence}, the last imported from this key: a replay"
        )
    return VerifiedManifest(manifest=manifest, kid=kid)


def pins_from_manifest(
    verified: VerifiedManifest, existing: Mapping[str, PinRecord], now: float | None = None
) -> list[PinRecord]:
    """The records to write so this deployment serves exactly the manifest's versions.

    Each entry becomes the approved version of its record (`existing` is keyed by `pins.pin_key`); a
    pending version equal to it is settled. Records the manifest does not name are left as they are."""
    now = time.time() if now is None else now
    by = f"catalog:{verified.kid}#{verified.manifest.sequence}"
    out = []
    for entry in verified.manifest.entries:
        record = existing.get(pin_key(entry.server, entry.kind, entry.name)) or PinRecord(
            server=entry.server, kind=entry.kind, name=entry.name, listed=False, updated_at=now
        )
        if record.approved is not None and record.approved.sha256 == entry.sha256:
            continue
        settled = record.pending is not None and record.pending.sha256 == entry.sha256
        update: dict[str, Any] = {
            "approved": PinnedVersion(sha256=entry.sha256, definition=entry.definition, seen_at=now),
            "approved_by": by,
            "approved_at": now,
            "rejected": [h for h in record.rejected if h != entry.sha256],
            "updated_at": now,
        }
        if settled:
            update |= {"pending": None, "pending_reason": None, "renamed_from": None}
        out.append(record.model_copy(update=update))
    return out
