"""The versioned Cedar policy text in KV_POLICY: read, publish a new version, make one active.

Shared by the admin API (`/admin/v1/policies`) and `bastion config apply` (the config file's
`policies`). Every version is kept (`policies.v<n>`); `policies.active` names the one that applies,
so going back is one write. A text is compiled before anything is written: a text that does not
compile never reaches the policy service.
"""

from __future__ import annotations

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from libs.common.bus.nats import kv_keys
from libs.common.cedar.cedar_policies import (
    ACTIVE_KEY,
    VERSION_PREFIX,
    ActivePolicies,
    PolicyVersion,
    compile_policies,
    version_key,
)

__all__ = ["PolicyStoreError", "activate", "active_version", "publish", "read_version", "read_versions"]

_ATTEMPTS = 5


class PolicyStoreError(Exception):
    """A version that does not exist, or writers racing past every retry."""


async def active_version(kv: KeyValue) -> tuple[int, int | None]:
    """The active version (0: none) and the revision of `policies.active` (None: never written)."""
    try:
        entry = await kv.get(ACTIVE_KEY)
    except KeyNotFoundError:
        return 0, None
    try:
        return ActivePolicies.model_validate_json(entry.value or b"").version, entry.revision
    except ValidationError:
        return 0, entry.revision


async def read_version(kv: KeyValue, version: int) -> PolicyVersion | None:
    try:
        entry = await kv.get(version_key(version))
    except KeyNotFoundError:
        return None
    try:
        return PolicyVersion.model_validate_json(entry.value or b"")
    except ValidationError:
        return None


async def read_versions(kv: KeyValue) -> list[PolicyVersion]:
    """Every stored version, newest first."""
    try:
        keys = await kv_keys(kv)
    except NotFoundError:  # no policy service created the bucket yet
        return []
    suffixes = (k.removeprefix(VERSION_PREFIX) for k in keys if k.startswith(VERSION_PREFIX))
    numbers = sorted((int(n) for n in suffixes if n.isdigit()), reverse=True)
    found = [await read_version(kv, n) for n in numbers]
    return [v for v in found if v is not None]


async def publish(
    kv: KeyValue, text: str, *, by: str | None, comment: str | None = None, source: str | None = None
) -> PolicyVersion:
    """Compile `text` (`PolicyProblem` naming the line), store it as the next version, make it active."""
    compile_policies(text)
    for _ in range(_ATTEMPTS):
        versions = await read_versions(kv)
        number = (versions[0].version if versions else 0) + 1
        record = PolicyVersion(version=number, text=text, created_by=by, comment=comment, source=source)
        try:
            await kv.create(version_key(number), record.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            continue  # another writer took that number: take the next
        await activate(kv, number)
        return record
    raise PolicyStoreError("other writers kept publishing policy versions at the same time; try again")


async def activate(kv: KeyValue, version: int) -> None:
    """Make a stored version (or 0: none) the one that applies; it is compiled again first."""
    if version:
        stored = await read_version(kv, version)
        if stored is None:
            raise PolicyStoreError(f"there is no policy version {version}")
        compile_policies(stored.text)
    await kv.put(ACTIVE_KEY, ActivePolicies(version=version).model_dump_json().encode())
