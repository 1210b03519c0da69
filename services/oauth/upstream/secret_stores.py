"""Where upstream OAuth secrets live: one small interface, three places.

- `SealedKVStore`: JetStream KV `bastion_oauth_upstream`, every value sealed with the Fernet keys of
  `BASTION_SECRETS_KEY` (`libs.common.runtime.sealing`); the default. A value is never written in plain
  text: without a key the store refuses to start. `reseal()` rewrites every value under the newest
  key, which is how a key is rotated (put the new key first, reseal, drop the old one).
- `VaultStore`: HashiCorp Vault's KV v2 engine through `hvac` (`BASTION_UPSTREAM_SECRET_STORE=vault`).
- `EnvStore`: read-only secrets from the environment (a pre-registered client's secret).

Names are dot-separated tokens of `[A-Za-z0-9_-]` (`token.github._shared`); values are text.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from libs.common.bus.nats import kv_keys
from libs.common.runtime.sealing import Sealer

__all__ = ["EnvStore", "ReadOnlySecrets", "SealedKVStore", "SecretStore", "VaultStore"]


class SecretStore(Protocol):
    async def get(self, name: str) -> str | None: ...
    async def put(self, name: str, value: str) -> None: ...
    async def delete(self, name: str) -> None: ...


class ReadOnlySecrets(Exception):
    """A write to a store that only reads (the environment)."""


class SealedKVStore:
    def __init__(self, kv: KeyValue, sealer: Sealer) -> None:
        if not sealer.enabled:
            raise ValueError("upstream OAuth tokens are stored sealed: set BASTION_SECRETS_KEY (Fernet key(s))")
        self._kv = kv
        self._sealer = sealer

    async def get(self, name: str) -> str | None:
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            return None
        if entry.value is None or not entry.value:
            return None
        return self._sealer.open_value(entry.value.decode())

    async def put(self, name: str, value: str) -> None:
        await self._kv.put(name, self._sealer.seal_value(value).encode())

    async def delete(self, name: str) -> None:
        try:
            await self._kv.purge(name)
        except KeyNotFoundError:
            return

    async def reseal(self) -> int:
        """Rewrite every value not sealed under the newest key; returns how many were rewritten."""
        rewritten = 0
        for name in await kv_keys(self._kv):
            try:
                entry = await self._kv.get(name)
            except KeyNotFoundError:
                continue  # its last write was a purge, or it went between the listing and the read
            if entry.value and not self._sealer.current(entry.value.decode()):
                await self.put(name, self._sealer.open_value(entry.value.decode()))
                rewritten += 1
        return rewritten


class VaultStore:
    """Vault KV v2 at `<mount>/<prefix>/<name>`, one secret per name with its text under `value`."""

    def __init__(self, client: Any, mount: str = "secret", prefix: str = "bastion/oauth") -> None:
        self._client = client
        self._mount = mount
        self._prefix = prefix.strip("/")

    def _path(self, name: str) -> str:
        return f"{self._prefix}/{name}"

    async def get(self, name: str) -> str | None:
        import hvac.exceptions

        def read() -> str | None:
            try:
                answer = self._client.secrets.kv.v2.read_secret_version(
                    path=self._path(name), mount_point=self._mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None
            value = answer["data"]["data"].get("value")
            return value if isinstance(value, str) else None

        return await asyncio.to_thread(read)

    async def put(self, name: str, value: str) -> None:
        await asyncio.to_thread(
            self._client.secrets.kv.v2.create_or_update_secret,
            path=self._path(name),
            secret={"value": value},
            mount_point=self._mount,
        )

    async def delete(self, name: str) -> None:
        import hvac.exceptions

        def remove() -> None:
            try:
                self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                    path=self._path(name), mount_point=self._mount
                )
            except hvac.exceptions.InvalidPath:
                return

        await asyncio.to_thread(remove)


class EnvStore:
    """`get("github-client-secret")` reads `<prefix>GITHUB_CLIENT_SECRET`."""

    def __init__(self, prefix: str = "BASTION_SECRET_", environ: dict[str, str] | None = None) -> None:
        self._prefix = prefix
        self._environ = environ if environ is not None else dict(os.environ)

    async def get(self, name: str) -> str | None:
        key = self._prefix + "".join(c if c.isalnum() else "_" for c in name).upper()
        return self._environ.get(key)

    async def put(self, name: str, value: str) -> None:
        raise ReadOnlySecrets(f"secrets from the environment are read-only ({name})")

    async def delete(self, name: str) -> None:
        raise ReadOnlySecrets(f"secrets from the environment are read-only ({name})")
