"""The policy service's in-memory view of virtual keys, fed by the KV watch."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from bastion_common.errors import ErrorKind
from bastion_common.messages import Caller, GatewayError, KeyRecord

from .grants import GrantSet

__all__ = ["CompiledKey", "KeyView"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CompiledKey:
    record: KeyRecord
    grants: GrantSet


class KeyView:
    def __init__(self) -> None:
        self._keys: dict[str, CompiledKey] = {}

    def put(self, key_id: str, value: bytes, _revision: int = 0) -> None:
        try:
            record = KeyRecord.model_validate_json(value)
        except ValidationError as exc:
            log.error("ignoring malformed key record %s…: %s", key_id[:8], exc.errors()[0]["msg"])
            return
        self._keys[key_id] = CompiledKey(record, GrantSet.compile(record.grants))

    def delete(self, key_id: str) -> None:
        self._keys.pop(key_id, None)

    def decide(self, caller: Caller, server: str, tool: str) -> GatewayError | None:
        """None when the call may proceed, else the reason it may not."""
        key = self._keys.get(caller.key_id)
        if key is None or key.record.revoked:
            return GatewayError(kind=ErrorKind.KEY_REVOKED, message=f"key {caller.key_name!r} is revoked or unknown")
        if not key.grants.allows(server, tool):
            return GatewayError(
                kind=ErrorKind.FORBIDDEN,
                message=f"key {caller.key_name!r} is not allowed to call tool {tool!r} on server {server!r}",
            )
        return None

    def visible(self, caller: Caller, tools: list[tuple[str, str]]) -> list[int] | GatewayError:
        key = self._keys.get(caller.key_id)
        if key is None or key.record.revoked:
            return GatewayError(kind=ErrorKind.KEY_REVOKED, message=f"key {caller.key_name!r} is revoked or unknown")
        return [i for i, (server, tool) in enumerate(tools) if key.grants.allows(server, tool)]
