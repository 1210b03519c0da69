"""`bastion catalog keygen|export|verify|import`.

A deployment's approved definitions as a signed manifest (ed25519 JWS), and another deployment pinning
exactly those (dev -> prod promotion; docs/supply-chain.md, "Signed catalog"). Keys come from
`CatalogSettings` (`BASTION_CATALOG_*`) or files named on the command line; the private key is never
printed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from .terminal import FlagsGroup, console
from .tool_commands import DataDir, NatsUrl, actor, audited, run_on_pins

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js.kv import KeyValue

__all__ = ["catalog_app"]

catalog_app = typer.Typer(
    help="Signed catalogs of approved definitions: export here, verify and import there.",
    no_args_is_help=True,
    cls=FlagsGroup,
)

KeyFile = Annotated[
    Path | None,
    typer.Option("--key-file", help="The private signing key (PEM or JWK); default: BASTION_CATALOG_SIGNING_KEY."),
]
TrustFile = Annotated[
    list[Path] | None,
    typer.Option("--trust", help="A public JWK to trust (repeatable); default: BASTION_CATALOG_TRUSTED_KEYS."),
]
Manifest = Annotated[Path, typer.Argument(help="The signed catalog file (`bastion catalog export` wrote it).")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _trusted(files: list[Path] | None) -> list[dict[str, Any]]:
    from libs.common.settings import CatalogSettings

    if files:
        try:
            return [json.loads(path.read_text()) for path in files]
        except (OSError, ValueError) as exc:
            raise _fail(f"cannot read a trusted key: {exc}", 2) from None
    keys = CatalogSettings().trusted_keys
    if not keys:
        raise _fail("no trusted keys: pass --trust FILE (a public JWK) or set BASTION_CATALOG_TRUSTED_KEYS", 2)
    return [dict(k) for k in keys]


def _manifest(path: Path) -> str:
    from libs.common.supply_chain.catalog_manifest import MAX_MANIFEST_BYTES

    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise _fail(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes", 1)
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}", 2) from None


@catalog_app.command("keygen")
def keygen(out: Annotated[Path, typer.Argument(help="Where to write the private key (JWK, mode 0600).")]) -> None:
    """Make a deployment signing key; prints its public JWK (what another deployment trusts)."""
    from libs.common.supply_chain.catalog_manifest import generate_signing_key, public_jwk

    key = generate_signing_key()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise _fail(f"cannot create {out}: {exc.strerror or exc} (an existing key is never overwritten)", 2) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(key.as_dict(private=True), handle)
    print(json.dumps(public_jwk(key)))


@catalog_app.command("export")
def export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of standard output.")] = None,
    key_file: KeyFile = None,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Sign every approved definition of this deployment into one manifest (a compact JWS)."""
    from libs.common.settings import CatalogSettings
    from libs.common.supply_chain.catalog_manifest import ManifestError, load_signing_key
    from libs.common.supply_chain.pin_store import export_catalog

    settings = CatalogSettings()
    try:
        text = key_file.read_text() if key_file else settings.signing_key.get_secret_value()
    except OSError as exc:
        raise _fail(f"cannot read the key file: {exc.strerror or exc}", 2) from None
    if not text.strip():
        raise _fail("no signing key: pass --key-file or set BASTION_CATALOG_SIGNING_KEY", 2)
    try:
        key = load_signing_key(text)
    except ManifestError as exc:
        raise _fail(str(exc), 2) from None

    async def work(_nc: NATS, kv: KeyValue) -> tuple[str, int]:
        return await export_catalog(kv, key, settings.deployment)

    token, count = run_on_pins(nats_url, data_dir, work)
    if out is None:
        print(token)
    else:
        out.write_text(token + "\n")
    console(stderr=True).print(f"[green]exported[/] {count} approved definition(s), signed by key {key.thumbprint()}")


@catalog_app.command("verify")
def verify(file: Manifest, trust: TrustFile = None) -> None:
    """Check a catalog's signature (against the trusted keys) and every entry's hash; exit 1 if not valid."""
    from libs.common.supply_chain.catalog_manifest import ManifestError, verify_manifest

    try:
        verified = verify_manifest(_manifest(file), _trusted(trust))
    except ManifestError as exc:
        raise _fail(f"{file}: {exc}") from None
    manifest = verified.manifest
    console().print(
        f"[green]valid[/]: {len(manifest.entries)} definition(s) from deployment {escape(manifest.deployment)!r},"
        f" sequence {manifest.sequence}, signed by key {verified.kid}"
    )


@catalog_app.command("import")
def import_(file: Manifest, trust: TrustFile = None, nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """Verify a catalog and make its definitions the approved ones here (every executor follows at once)."""
    from libs.common.supply_chain.pin_store import import_catalog

    token, trusted, by = _manifest(file), _trusted(trust), actor()

    async def work(nc: NATS, kv: KeyValue) -> tuple[int, int]:
        changes = await import_catalog(kv, token, trusted, by)
        return len(changes), await audited(nc, changes, by) if changes else 0

    count, unaudited = run_on_pins(nats_url, data_dir, work)
    console().print(f"[green]imported[/]: {count} definition(s) approved from {escape(str(file))} as {escape(by)}")
    if unaudited:
        print("warning: the audit service did not take the events of this import (is it running?)", file=sys.stderr)
