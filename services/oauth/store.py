"""Typed records in a JetStream KV bucket, with compare-and-set so replicas never lose an update."""

from __future__ import annotations

from typing import TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

__all__ = ["Conflict", "Records"]

M = TypeVar("M", bound=BaseModel)


class Conflict(Exception):
    """Another replica changed (or created) the record first."""


class Records:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str, model: type[M]) -> tuple[M, int] | None:
        """The record and its revision, or None when absent, deleted or unreadable."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        try:
            return model.model_validate_json(entry.value), entry.revision or 0
        except ValidationError:
            return None

    async def create(self, key: str, record: BaseModel) -> int:
        try:
            return await self.kv.create(key, record.model_dump_json().encode())
        except KeyWrongLastSequenceError as exc:
            raise Conflict(key) from exc

    async def update(self, key: str, record: BaseModel, revision: int) -> int:
        try:
            return await self.kv.update(key, record.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise Conflict(key) from exc

    async def put(self, key: str, record: BaseModel) -> int:
        return await self.kv.put(key, record.model_dump_json().encode())

    async def delete(self, key: str) -> None:
        try:
            await self.kv.delete(key)
        except KeyNotFoundError:
            return
