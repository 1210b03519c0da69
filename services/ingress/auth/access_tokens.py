"""Authentication of `/mcp`: a virtual key, or an OAuth access token verified here, locally.

Access tokens are ES256 JWTs signed by the oauth service (RFC 9068 profile, `typ: at+jwt`). Ingress
keeps the public keys (KV `bastion_oauth_public`) and the revoked token ids (KV
`bastion_oauth_revoked`) in memory from watches, so verifying a token costs one signature check
(cached per token) and no message. A valid token becomes the caller `user:<id>`, which policy
resolves to the user, their team, customer and groups, exactly like a key bound to that user; the
caller also names the user's team and customer (`owners.Owners`), so its audit rows do too.

While OAuth is offered (the oauth service has published its signing keys), every 401 carries
`WWW-Authenticate: Bearer resource_metadata="<protected resource metadata URL>"` (RFC 9728 §5.1),
which is how an MCP client discovers where to log in; without it, no client is sent to log in
where nobody could.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable

from cachetools import LRUCache
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.messages import Caller
from libs.common.contracts.oauth import ACCESS_TOKEN_TYP, JWKS_KEY, USER_CALLER_PREFIX, AccessTokenKeys, RevokedToken
from libs.common.runtime.refusals import RefusalReason
from services.ingress.auth.keys import AuthFailure, KeyDirectory, bearer_challenge
from services.ingress.auth.owners import Owners

__all__ = ["AccessTokens", "Authenticator"]

log = logging.getLogger(__name__)

_ALGORITHMS = ["ES256"]
_USER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_MAX_TOKEN = 8192
_LEEWAY = 30
"""Seconds of clock skew tolerated between the oauth service and this replica."""


def _invalid(message: str, reason: RefusalReason = "invalid") -> AuthFailure:
    return AuthFailure("invalid_token", f"invalid access token: {message}", reason=reason)


_EXPIRED = _invalid("the access token has expired; refresh it or log in again", "expired")
_REVOKED = _invalid("the access token has been revoked; log in again", "revoked")


class AccessTokens:
    """The verifier: fed by the two KV watches, asked by `Authenticator`."""

    def __init__(self, owners: Owners | None = None) -> None:
        self._owners = owners or Owners()
        """The user's team and customer, for the caller a token becomes (as a key's record names them)."""
        self._keys: KeySet | None = None
        self._revoked: dict[str, float] = {}
        self._verified: LRUCache[str, tuple[str, str, float]] = LRUCache(maxsize=10_000)
        """token -> (user id, jti, expiry) of tokens whose signature and claims already checked out."""

    # ---- KV feeds

    def put_keys(self, key: str, value: bytes, _revision: int = 0) -> None:
        if key != JWKS_KEY or (record := decode_value(AccessTokenKeys, value, "access token keys")) is None:
            return
        try:
            self._keys = KeySet.import_key_set({"keys": record.keys})
        except (JoseError, ValueError) as exc:
            log.error("ignoring malformed access token keys: %s", exc)
            return
        self._verified.clear()

    def delete_keys(self, key: str) -> None:
        if key == JWKS_KEY:
            self._keys = None
            self._verified.clear()

    def put_revoked(self, jti: str, value: bytes, _revision: int = 0) -> None:
        if (record := decode_value(RevokedToken, value, "revoked token")) is not None:
            self._revoked[jti] = record.expires_at
            now = time.time()
            if len(self._revoked) % 1024 == 0:  # forget entries of tokens that have expired anyway
                self._revoked = {j: exp for j, exp in self._revoked.items() if exp > now}

    def delete_revoked(self, jti: str) -> None:
        self._revoked.pop(jti, None)

    def is_revoked(self, jti: str) -> bool:
        return jti in self._revoked

    @property
    def offered(self) -> bool:
        """Whether agents can log in: the oauth service has published the keys its tokens verify with."""
        return self._keys is not None

    # ---- verification

    def verify(self, token: str, issuer: str, audience: str) -> Caller | AuthFailure:
        known = self._verified.get(token)
        if known is None:
            checked = self._check(token, issuer, audience)
            if isinstance(checked, AuthFailure):
                return checked
            known = self._verified[token] = checked
        user_id, jti, expires_at = known
        if expires_at + _LEEWAY < time.time():
            self._verified.pop(token, None)
            return _EXPIRED
        if self.is_revoked(jti):
            return _REVOKED
        team_id, customer_id = self._owners.of(user_id)
        return Caller(
            key_id=USER_CALLER_PREFIX + user_id,
            key_name=USER_CALLER_PREFIX + user_id,
            user_id=user_id,
            team_id=team_id,
            customer_id=customer_id,
        )

    def _check(self, token: str, issuer: str, audience: str) -> tuple[str, str, float] | AuthFailure:
        if self._keys is None:
            return _invalid("this gateway has no OAuth signing keys yet (is the oauth service running?)")
        if len(token) > _MAX_TOKEN:
            return _invalid("the access token is too long")
        try:
            decoded = jwt.decode(token, self._keys, algorithms=_ALGORITHMS)
        except (JoseError, ValueError):
            return _invalid("the access token was not issued by this gateway (bad signature or format)")
        if decoded.header.get("typ") != ACCESS_TOKEN_TYP:
            return _invalid(f"the token is not an access token (typ must be {ACCESS_TOKEN_TYP})")
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        )
        claims = decoded.claims
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            return _EXPIRED
        except InvalidClaimError as exc:
            if exc.claim == "aud":
                return _invalid(f"the access token is for another resource, not {audience}")
            if exc.claim == "iss":
                return _invalid(f"the access token was issued by another authorization server, not {issuer}")
            return _invalid(f"the access token's {exc.claim!r} claim is invalid")
        except MissingClaimError as exc:
            return _invalid(f"the access token lacks a claim: {exc.description}")
        except JoseError:
            return _invalid("the access token's claims are invalid")
        sub, jti, exp = claims.get("sub"), claims.get("jti"), claims.get("exp")
        if not isinstance(sub, str) or not _USER_ID.match(sub) or not isinstance(jti, str):
            return _invalid("the access token names no valid user")
        return sub, jti, float(exp) if isinstance(exp, int | float) else 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Authenticator:
    """Virtual keys (`bk_…`) and access tokens side by side; every failure with its challenge."""

    keys: KeyDirectory
    tokens: AccessTokens
    public_url: Callable[[], str]

    def authenticate(self, authorization: str | None) -> Caller | AuthFailure:
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() == "bearer" and _looks_like_jwt(credential):
            base = self.public_url()
            result = self.tokens.verify(credential, issuer=base, audience=f"{base}/mcp")
        else:
            result = self.keys.authenticate(authorization)
        if isinstance(result, Caller):
            return result
        metadata = f"{self.public_url()}/.well-known/oauth-protected-resource/mcp" if self.tokens.offered else None
        challenge = bearer_challenge(result, credentials_sent=bool(authorization), metadata_url=metadata)
        return dataclasses.replace(result, challenge=challenge)


def _looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("eyJ")
