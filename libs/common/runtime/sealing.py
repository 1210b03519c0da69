"""Upstream secrets at rest.

The `env` and `headers` values of a server in KV `bastion_servers` (and an OpenAPI server's
`openapi.auth` secrets: `ServerConfig.secret_values`).

Those values usually hold upstream credentials (API tokens, `Authorization` headers), and KV is
readable by every client allowed to read the bucket and by anyone holding the JetStream store files.
So writers (`bastion config apply`, the admin API) store each value sealed with Fernet
(AES-128-CBC + HMAC-SHA256, from `cryptography`) as `sealed:fernet:<token>`, and only the executor,
which starts the upstreams, opens them.

The key comes from the environment (`BASTION_SECRETS_KEY`): a comma-separated list of Fernet keys,
newest first. The first key seals; every key opens (`MultiFernet`), so a key is rotated by putting a
new one in front, re-sealing (`bastion config apply` re-seals every stored server under the first
key), then dropping the old one. Without a key, values are stored as given (an open development
setup; `bastion up` always sets one), and a plain value read back is used as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from libs.common.contracts.config import ServerConfig

__all__ = ["SEALED_PREFIX", "Sealer", "SealingError", "new_key"]

SEALED_PREFIX = "sealed:fernet:"


class SealingError(ValueError):
    """A sealed value cannot be opened (no key, or none of the keys made it), or a key is malformed."""


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64)."""
    return Fernet.generate_key().decode()


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


class Sealer:
    """Seals and opens the secret values of a `ServerConfig` with the configured keys."""

    def __init__(self, keys: str | SecretStr = "") -> None:
        raw = keys.get_secret_value() if isinstance(keys, SecretStr) else keys
        try:
            self._keys = [Fernet(k.strip().encode()) for k in raw.split(",") if k.strip()]
        except (ValueError, TypeError):
            # never echo the value: it is the key
            raise SealingError(
                "BASTION_SECRETS_KEY is not a comma-separated list of Fernet keys (32 url-safe base64-encoded bytes)"
            ) from None
        self._all = MultiFernet(self._keys) if self._keys else None

    @property
    def enabled(self) -> bool:
        return self._all is not None

    # ---- single values

    def seal_value(self, value: str) -> str:
        """`value` sealed under the first key; an already sealed value (kept from a stored record) as it is."""
        if self._all is None or is_sealed(value):
            return value
        return SEALED_PREFIX + self._keys[0].encrypt(value.encode()).decode()

    def open_value(self, value: str) -> str:
        if not is_sealed(value):
            return value
        if self._all is None:
            raise SealingError("the value is sealed but no BASTION_SECRETS_KEY is configured")
        try:
            return self._all.decrypt(value[len(SEALED_PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SealingError("none of the keys in BASTION_SECRETS_KEY opens the sealed value") from None

    def current(self, value: str) -> bool:
        """Whether `value` is stored as it should be now: sealed under the first key (or plain without keys)."""
        if self._all is None:
            return True
        if not is_sealed(value):
            return False
        try:
            self._keys[0].decrypt(value[len(SEALED_PREFIX) :].encode())
        except InvalidToken:
            return False
        return True

    # ---- whole server entries

    def seal(self, config: ServerConfig) -> ServerConfig:
        return _map(config, self.seal_value)

    def open(self, config: ServerConfig) -> ServerConfig:
        """The entry with every secret in plain text; `SealingError` names which value failed."""
        return _map(config, self.open_value)

    def reseal(self, config: ServerConfig) -> ServerConfig:
        """Every value sealed under the first key, whichever key sealed it before."""
        return _map(config, lambda v: v if self.current(v) else self.seal_value(self.open_value(v)))

    def is_current(self, config: ServerConfig) -> bool:
        return all(self.current(v) for v in config.secret_values())


def _map(config: ServerConfig, fn: Callable[[str], str]) -> ServerConfig:
    def each(where: str, value: str) -> str:
        try:
            return fn(value)
        except SealingError as exc:
            raise SealingError(f"{where}: {exc}") from None

    return config.map_secrets(each)
