"""Who may use the admin API: the holder of the admin token, and nobody else.

The token is compared in constant time (sha256 digests of equal length through `hmac.compare_digest`),
so response timing tells nothing about how much of a guess was right. A virtual key (its sha256 is
its id in the keys bucket) is recognized only to give a clearer answer (403: right gateway, wrong
kind of credential) than an unknown one (401).
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from .changes import ACTOR
from .errors import AdminError
from .store import AdminStore

__all__ = ["AdminAuth"]


_bearer = HTTPBearer(auto_error=False, description="The admin token (BASTION_ADMIN_TOKEN of the admin service).")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bastion-admin"'}


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class AdminAuth:
    """Guards every admin route: `check` runs before the request body is read (see `routes`), and
    again as the router's dependency, which is also what puts the bearer scheme in the OpenAPI schema."""

    def __init__(self, token: SecretStr, store: AdminStore) -> None:
        secret = token.get_secret_value()
        self._digest = _digest(secret) if secret else None
        self._store = store

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    async def check(self, authorization: str | None) -> None:
        """Raise the `AdminError` (503, 401 or 403) unless `authorization` carries the admin token."""
        if self._digest is None:
            raise AdminError(
                503,
                "admin_disabled",
                "the admin API is disabled: start the admin service with BASTION_ADMIN_TOKEN set to enable it",
            )
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AdminError(
                401,
                "missing_credentials",
                "the admin API needs 'Authorization: Bearer <admin token>'",
                headers=_CHALLENGE,
            )
        if hmac.compare_digest(_digest(credential), self._digest):
            return
        if (key := await self._store.keys.find(_digest(credential).hex())) is not None and not key.value.revoked:
            raise AdminError(403, "forbidden", "a virtual key cannot use the admin API; send the admin token instead")
        raise AdminError(401, "invalid_credentials", "the credential is not the admin token", headers=_CHALLENGE)

    async def __call__(
        self,
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008 - documents the scheme
    ) -> None:
        await self.check(request.headers.get("authorization"))
        ACTOR.set(f"admin-token@{request.client.host if request.client else 'unknown'}")
