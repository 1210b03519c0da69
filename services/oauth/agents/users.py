"""The built-in user store's passwords (`bastion users create --password`), set over NATS by the admin API."""

from __future__ import annotations

import asyncio

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from libs.common.contracts.entities import entity_key
from libs.common.contracts.oauth import PasswordChange, PasswordChanged

from ..store import Records
from .authorize import password_key
from .password_hashing import hash_password
from .records import PasswordRecord

__all__ = ["Passwords"]


class Passwords:
    def __init__(self, records: Records, policy: KeyValue) -> None:
        self.records, self.policy = records, policy

    async def handle(self, payload: bytes) -> bytes:
        return (await self.change(payload)).model_dump_json().encode()

    async def change(self, payload: bytes) -> PasswordChanged:
        try:
            change = PasswordChange.model_validate_json(payload)
        except ValidationError:
            return PasswordChanged(ok=False, error="malformed password change")
        try:
            await self.policy.get(entity_key("user", change.user_id))
        except (KeyNotFoundError, ValueError):
            return PasswordChanged(ok=False, error=f"there is no user {change.user_id!r}; create the user first")
        try:
            hashed = await asyncio.to_thread(hash_password, change.password)
        except ValueError as exc:
            return PasswordChanged(ok=False, error=str(exc))
        await self.records.put(password_key(change.user_id), PasswordRecord(user_id=change.user_id, hash=hashed))
        return PasswordChanged(ok=True)
