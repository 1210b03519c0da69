"""OAuth clients: dynamic registration (RFC 7591) and client authentication at the token endpoints.

Redirect URIs are where codes go, so registration is strict (`redirect_uris`): absolute, no fragment, and either
https, http on a loopback address (native apps, RFC 8252 §7.3), or a private-use scheme
(`cursor://...`, RFC 8252 §7.1). At authorization time they are matched exactly.

Registration is open to anyone, so what strangers can make Bastion store is bounded: a registration
is at most `_MAX_REDIRECT_CHARS` of redirect URIs, each address may register
`registrations_per_address` clients an hour and the gateway `registrations_per_hour` in all, and a
registration waits in its own bucket (`KV_OAUTH_REGISTRATIONS`), which forgets it after a day, until
the client's first token moves it to the oauth state for good (`Registration.adopt`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from typing import Any, Literal
from urllib.parse import unquote

import orjson
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse

from ..http import HttpError, json_response
from ..store import Conflict, Records
from .client_metadata import ClientMetadataDocuments, ClientMetadataError, is_metadata_url
from .records import ClientRecord, digest, new_secret
from .redirect_uris import redirect_uri_problem

__all__ = ["ClientAuthenticator", "Registration", "client_key"]

_MAX_REDIRECT_URIS = 10
_MAX_REDIRECT_CHARS = 4096
"""All redirect URIs of one registration together: real clients name one or two."""
_RATE_WINDOW = 3600


def client_key(client_id: str) -> str:
    return f"client.{digest(client_id)[:48]}"


class _RegistrationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    redirect_uris: list[str] = Field(min_length=1, max_length=_MAX_REDIRECT_URIS)
    client_name: str = Field(default="", max_length=200)
    token_endpoint_auth_method: Literal["none", "client_secret_post", "client_secret_basic"] = "none"
    grant_types: list[Literal["authorization_code", "refresh_token"]] = Field(
        default=["authorization_code", "refresh_token"], max_length=2
    )
    response_types: list[Literal["code"]] = Field(default=["code"], max_length=1)
    scope: str | None = Field(default=None, max_length=200)

    @field_validator("redirect_uris")
    @classmethod
    def _bounded(cls, uris: list[str]) -> list[str]:
        if sum(len(uri) for uri in uris) > _MAX_REDIRECT_CHARS:
            raise ValueError(f"the redirect URIs may have at most {_MAX_REDIRECT_CHARS} characters together")
        return uris


class _Count(BaseModel):
    count: int


class Registration:
    """`POST /oauth/register`: anyone may register a client; what it may do is decided at login and by policy."""

    def __init__(self, pending: KeyValue, per_address: int, per_hour: int) -> None:
        self.pending = Records(pending)
        """`KV_OAUTH_REGISTRATIONS`: registrations not used yet, and the rate counters."""
        self.per_address, self.per_hour = per_address, per_hour

    async def _count(self, key: str, limit: int, what: str) -> None:
        """One more registration in this hour's window of `key`, or 429 past `limit`."""
        window = int(time.time()) // _RATE_WINDOW
        key = f"{key}.{window}"
        for _ in range(8):  # compare-and-set against other replicas counting the same window
            found = await self.pending.get(key, _Count)
            count = found[0].count if found else 0
            if count >= limit:
                retry = (window + 1) * _RATE_WINDOW - int(time.time())
                raise HttpError(
                    429,
                    "too_many_requests",
                    f"{what} ({limit} an hour); retry in {retry} s, or use a client ID metadata document",
                    [("retry-after", str(max(retry, 1)))],
                )
            try:
                if found is None:
                    await self.pending.create(key, _Count(count=1))
                else:
                    await self.pending.update(key, _Count(count=count + 1), found[1])
                return
            except Conflict:
                continue
        raise HttpError(503, "temporarily_unavailable", "too many registrations at once; retry shortly")

    async def register(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise HttpError(400, "invalid_client_metadata", "the registration request must be application/json")
        try:
            raw: Any = orjson.loads(request.body)
            metadata = _RegistrationRequest.model_validate(raw)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, "invalid_client_metadata", f"the body is not JSON: {exc}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            error = "invalid_redirect_uri" if where.startswith("redirect_uris") else "invalid_client_metadata"
            raise HttpError(400, error, f"{where}: {first['msg']}") from exc
        for uri in metadata.redirect_uris:
            if problem := redirect_uri_problem(uri):
                raise HttpError(400, "invalid_redirect_uri", problem)
        await self._count(
            f"rate.{digest(request.client_address)[:48]}", self.per_address, "this address registered too many clients"
        )
        await self._count("rate.all", self.per_hour, "the gateway accepted too many registrations")
        client_id = "bc_" + new_secret()
        secret = new_secret() if metadata.token_endpoint_auth_method != "none" else None
        record = ClientRecord(
            client_id=client_id,
            client_name=metadata.client_name,
            redirect_uris=metadata.redirect_uris,
            token_endpoint_auth_method=metadata.token_endpoint_auth_method,
            secret_digest=digest(secret) if secret else None,
            grant_types=list(metadata.grant_types),
        )
        await self.pending.create(client_key(client_id), record)
        body: dict[str, Any] = {
            "client_id": client_id,
            "client_id_issued_at": int(record.created_at),
            "client_name": record.client_name,
            "redirect_uris": record.redirect_uris,
            "token_endpoint_auth_method": record.token_endpoint_auth_method,
            "grant_types": record.grant_types,
            "response_types": ["code"],
        }
        if secret:
            body |= {"client_secret": secret, "client_secret_expires_at": 0}
        return json_response(body, 201)


class ClientAuthenticator:
    """Who is calling the token or revocation endpoint (RFC 6749 §2.3); `invalid_client` otherwise."""

    def __init__(
        self,
        records: Records,
        documents: ClientMetadataDocuments | None = None,
        preregistered: dict[str, ClientRecord] | None = None,
        pending: KeyValue | None = None,
    ) -> None:
        self.records = records
        self.pending = Records(pending) if pending is not None else None
        """Registrations that have not got a token yet (`KV_OAUTH_REGISTRATIONS`)."""
        self.preregistered = preregistered or {}
        """Clients an operator declared (`BASTION_OAUTH_CLIENTS_FILE`), by client_id."""
        self.documents = documents
        """Client ID metadata documents (a URL as `client_id`); None: not supported."""

    async def lookup(self, client_id: str) -> ClientRecord | None:
        """The client, or None when unknown; `ClientMetadataError` when its metadata document is unusable."""
        if client_id in self.preregistered:
            return self.preregistered[client_id]
        if self.documents is not None and is_metadata_url(client_id):
            return await self.documents.lookup(client_id)
        if not client_id or len(client_id) > 200:
            return None
        key = client_key(client_id)
        found = await self.records.get(key, ClientRecord)
        if found is None and self.pending is not None:
            found = await self.pending.get(key, ClientRecord)
        return found[0] if found is not None and found[0].client_id == client_id else None

    async def adopt(self, client: ClientRecord) -> None:
        """The client got its first token: keep it for good (it no longer expires unused)."""
        key = client_key(client.client_id)
        if client.source != "registration" or self.pending is None or await self.pending.get(key, ClientRecord) is None:
            return
        try:
            await self.records.create(key, client)
        except Conflict:
            pass  # another replica adopted it first
        await self.pending.delete(key)

    async def authenticate(self, request: HttpExchangeRequest, form: dict[str, str]) -> ClientRecord:
        basic = _basic_credentials(request.headers.get("authorization"))
        secret: str | None
        if basic is not None:
            client_id, secret, method = basic[0], basic[1], "client_secret_basic"
            if form.get("client_id", client_id) != client_id:
                raise HttpError(400, "invalid_request", "client_id in the form differs from the Authorization header")
        elif "client_secret" in form:
            client_id, secret, method = form.get("client_id", ""), form["client_secret"], "client_secret_post"
        else:
            client_id, secret, method = form.get("client_id", ""), None, "none"
        if not client_id:
            raise HttpError(400, "invalid_request", "client_id is required")
        challenge = [("www-authenticate", 'Basic realm="bastion"')] if basic is not None else []
        try:
            client = await self.lookup(client_id)
        except ClientMetadataError as exc:
            raise HttpError(401, "invalid_client", str(exc), challenge) from None
        if client is None:
            raise HttpError(401, "invalid_client", "unknown client", challenge)
        if client.token_endpoint_auth_method != method:
            raise HttpError(
                401, "invalid_client", f"this client authenticates with {client.token_endpoint_auth_method}", challenge
            )
        if method != "none" and (
            secret is None
            or client.secret_digest is None
            or not hmac.compare_digest(digest(secret), client.secret_digest)
        ):
            raise HttpError(401, "invalid_client", "client authentication failed", challenge)
        return client


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise HttpError(401, "invalid_client", "malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise HttpError(401, "invalid_client", "malformed Basic credentials")
    return unquote(client_id), unquote(secret)
