"""The key access tokens are signed with, and the tokens themselves (RFC 9068 JWT profile).

One ES256 key pair for the whole deployment, made by whichever replica starts first and kept in KV
`bastion_oauth` sealed (only the oauth service holds the sealing key); its public half goes to KV
`bastion_oauth_public`, where every ingress replica picks it up and verifies tokens locally.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from pydantic import BaseModel

from libs.common.contracts.oauth import ACCESS_TOKEN_TYP, JWKS_KEY, AccessTokenKeys
from libs.common.runtime.sealing import Sealer

from ..store import Conflict, Records

__all__ = ["ALGORITHM", "SigningKey", "load_signing_key"]

log = logging.getLogger(__name__)

ALGORITHM: Final = "ES256"
_RECORD = "signing"


class _StoredKey(BaseModel):
    v: int = 1
    kid: str
    private_jwk: str
    """The private JWK as JSON, sealed (`libs.common.runtime.sealing`)."""
    created_at: float


class SigningKey:
    def __init__(self, key: ECKey) -> None:
        self._key = key
        self.kid: str = key.kid or ""

    def public_jwks(self) -> AccessTokenKeys:
        public = self._key.as_dict(private=False)
        return AccessTokenKeys(keys=[{**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}])

    def access_token(
        self, *, issuer: str, audience: str, user_id: str, client_id: str, scope: str, ttl: int
    ) -> tuple[str, str, float]:
        """A signed access token and its `jti` and expiry time."""
        now = int(time.time())
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": user_id,
            "aud": audience,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
        }
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": ACCESS_TOKEN_TYP}
        return jwt.encode(header, claims, self._key, algorithms=[ALGORITHM]), jti, float(now + ttl)

    def verified_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this key signed (expired or not), or None."""
        try:
            return dict(jwt.decode(token, self._key, algorithms=[ALGORITHM]).claims)
        except (JoseError, ValueError):
            return None


async def load_signing_key(records: Records, public: Records, sealer: Sealer) -> SigningKey:
    """The deployment's signing key (created on first start, race-free between replicas), published.

    A key sealed under an older `BASTION_SECRETS_KEY` is sealed again under the newest one, so a
    rotation (new key first, restart, then drop the old key) leaves nothing sealed with the old key."""
    found = await records.get(_RECORD, _StoredKey)
    if found is None:
        key = ECKey.generate_key("P-256", private=True, auto_kid=True)
        stored = _StoredKey(
            kid=key.kid or "",
            private_jwk=sealer.seal_value(json.dumps(key.as_dict(private=True))),
            created_at=time.time(),
        )
        try:
            await records.create(_RECORD, stored)
            log.info("created the access token signing key %s", stored.kid)
        except Conflict:  # another replica was first: use its key
            found = await records.get(_RECORD, _StoredKey)
            if found is None:
                raise RuntimeError("the signing key record vanished while starting") from None
    if found is not None:
        stored, revision = found
        key = ECKey.import_key(json.loads(sealer.open_value(stored.private_jwk)))
        if not sealer.current(stored.private_jwk):
            resealed = stored.model_copy(
                update={"private_jwk": sealer.seal_value(sealer.open_value(stored.private_jwk))}
            )
            try:
                await records.update(_RECORD, resealed, revision)
                log.info("sealed the access token signing key under the newest BASTION_SECRETS_KEY")
            except Conflict:  # another replica did it
                pass
    signing = SigningKey(key)
    await public.put(JWKS_KEY, signing.public_jwks())
    return signing
