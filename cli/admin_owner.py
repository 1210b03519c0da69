"""`bastion up`'s own owner.

The principal `local-cli`, whose API token the `bastion` CLI finds in the stack file (`admin_token`),
written straight into KV `bastion_admin` over the admin role's NATS connection (the one `bastion config
apply` uses), so the local stack needs no bootstrap token.

Each `up` issues a fresh token and deletes the ones the previous runs left: a stack file's token
lives as long as the stack that wrote it (and at most `TOKEN_DAYS`).
"""

from __future__ import annotations

import time

from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from libs.common.bus.nats import kv_bucket, kv_names
from libs.common.contracts import subjects
from libs.common.contracts.admin_principals import (
    OWNER,
    ApiToken,
    Principal,
    RoleBinding,
    new_token,
    principal_key,
    token_digest,
    token_key,
)

__all__ = ["LOCAL_OWNER", "TOKEN_DAYS", "local_owner_token"]

LOCAL_OWNER = "local-cli"
TOKEN_DAYS = 30


async def local_owner_token(nc: NATS) -> str:
    """Make sure `local-cli` exists as an owner, replace its tokens by a new one, and return it."""
    kv = await kv_bucket(nc.jetstream(), subjects.KV_ADMIN)
    owner = Principal(name=LOCAL_OWNER, kind="automation", roles=[RoleBinding(role=OWNER)], created_by="bastion up")
    try:
        entry = await kv.get(principal_key(LOCAL_OWNER))
        current = Principal.model_validate_json(entry.value or b"")
        if current.disabled or not any(b.role == OWNER and not b.scoped for b in current.roles):
            # a person disabled or demoted it on purpose: `bastion up` does not undo that
            raise RuntimeError(
                f"the principal {LOCAL_OWNER!r} was disabled or is no longer an owner: make it one again "
                "through the admin API as another owner, or delete it and `bastion up` makes it anew"
            )
    except KeyNotFoundError:
        try:
            await kv.create(principal_key(LOCAL_OWNER), owner.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            pass  # made meanwhile
    for key in await kv_names(nc.jetstream(), subjects.KV_ADMIN):
        if not key.startswith("token."):
            continue
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue  # deleted (its subject stays until compacted)
        if ApiToken.model_validate_json(entry.value or b"").principal == LOCAL_OWNER:
            await kv.delete(key)
    secret = new_token()
    token = ApiToken(
        id=token_digest(secret),
        principal=LOCAL_OWNER,
        label="bastion up",
        expires_at=time.time() + TOKEN_DAYS * 24 * 3600.0,
        created_by="bastion up",
    )
    await kv.create(token_key(token.id), token.model_dump_json().encode())
    return secret
