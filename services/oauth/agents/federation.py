"""OIDC federation: people log in at an external OpenID provider instead of Bastion's password form.

    GET /oauth/federated/start?request=<login id>  -> 302 to the provider (code flow, PKCE S256, nonce)
    GET /oauth/federated/callback?code&state        -> the ID token verified (signature against the
                                                       provider's JWKS, iss, aud, nonce, exp), its
                                                       user claim mapped to a Bastion user, and the
                                                       pending login completed as the password form does

Bastion is a confidential client of the provider (`BASTION_OIDC_CLIENT_ID` / `_SECRET`, redirect URI
`<public url>/oauth/federated/callback`). The claim named by `BASTION_OIDC_USER_CLAIM` must name a
user that exists in Bastion (`bastion users create`): the provider proves who someone is, Bastion's
policy still decides what they may do. The state is single-use and bound to the pending login.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ValidationError

from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse
from libs.common.settings import OAuthSettings

from ..http import HttpError, html_page, query_of
from ..store import Records
from .metadata import issuer_of
from .records import PendingLogin, digest, new_secret

__all__ = ["CALLBACK_PATH", "START_PATH", "Federation"]

log = logging.getLogger(__name__)

START_PATH = "/oauth/federated/start"
CALLBACK_PATH = "/oauth/federated/callback"
_ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
_LEEWAY = 30
_MAX_RESPONSE = 256 * 1024


class FederatedFlow(BaseModel):
    """`federated.<digest of state>`: one trip to the provider, bound to one pending login."""

    login_id: str
    nonce: str
    verifier: str
    expires_at: float


class _Provider(BaseModel):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


Complete = Callable[[HttpExchangeRequest, str, str], Awaitable[HttpExchangeResponse]]
"""(request, login id, user id) -> the redirect back to the client (what a correct password gets)."""
Pending = Callable[[str], Awaitable[PendingLogin | None]]
UserExists = Callable[[str], Awaitable[bool]]


class Federation:
    def __init__(
        self, settings: OAuthSettings, records: Records, pending: Pending, user_exists: UserExists, complete: Complete
    ) -> None:
        self.settings = settings
        self.records, self.pending, self.user_exists, self.complete = records, pending, user_exists, complete

    @property
    def label(self) -> str:
        return self.settings.oidc_name or self.settings.oidc_issuer

    def _redirect_uri(self, request: HttpExchangeRequest) -> str:
        return issuer_of(request) + CALLBACK_PATH

    async def _get_json(self, http: httpx2.AsyncClient, url: str) -> dict[str, Any]:
        answer = await http.get(url, headers={"accept": "application/json"})
        if answer.status_code != 200 or len(answer.content) > _MAX_RESPONSE:
            raise HttpError(502, "server_error", f"the identity provider answered HTTP {answer.status_code} at {url}")
        body = answer.json()
        if not isinstance(body, dict):
            raise HttpError(502, "server_error", f"the identity provider's {url} is not a JSON object")
        return body

    async def _provider(self, http: httpx2.AsyncClient) -> _Provider:
        issuer = self.settings.oidc_issuer.rstrip("/")
        document = await self._get_json(http, f"{issuer}/.well-known/openid-configuration")
        try:
            provider = _Provider.model_validate(document)
        except ValidationError:
            raise HttpError(502, "server_error", "the identity provider's discovery document is incomplete") from None
        if provider.issuer.rstrip("/") != issuer:  # OpenID Connect Discovery §4.3
            raise HttpError(502, "server_error", "the identity provider's discovery names another issuer")
        return provider

    # ------------------------------------------------------------------ GET /oauth/federated/start

    async def start(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        login_id = query_of(request).get("request", "")
        if not login_id or await self.pending(login_id) is None:
            return _page("this login page has expired or was already used; start again from your application")
        state, nonce, verifier = new_secret(), new_secret(), new_secret() + new_secret()
        try:
            async with _client() as http:
                provider = await self._provider(http)
        except (HttpError, httpx2.HTTPError, ValueError) as exc:
            return _page(f"cannot reach the identity provider: {_why(exc)}", 502)
        await self.records.create(
            _flow_key(state),
            FederatedFlow(
                login_id=login_id, nonce=nonce, verifier=verifier, expires_at=time.time() + self.settings.login_ttl
            ),
        )
        params = {
            "response_type": "code",
            "client_id": self.settings.oidc_client_id,
            "redirect_uri": self._redirect_uri(request),
            "scope": self.settings.oidc_scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": _s256(verifier),
            "code_challenge_method": "S256",
        }
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        location = provider.authorization_endpoint + sep + urlencode(params)
        return HttpExchangeResponse(status=302, headers=[("location", location), ("cache-control", "no-store")])

    # ------------------------------------------------------------------ GET /oauth/federated/callback

    async def callback(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        params = query_of(request)
        state = params.get("state", "")
        found = await self.records.get(_flow_key(state), FederatedFlow) if 0 < len(state) <= 128 else None
        if found is None:
            return _page("unknown or expired sign-in state: start again from your application")
        await self.records.delete(_flow_key(state))  # single use, whatever happens next
        flow = found[0]
        if flow.expires_at < time.time():
            return _page("the sign-in took too long: start again from your application")
        if "error" in params or not params.get("code"):
            return _page(f"the identity provider did not sign you in: {params.get('error', 'no code')}")
        try:
            claims = await self._verified_claims(request, params["code"], flow)
        except (HttpError, httpx2.HTTPError, ValueError) as exc:
            log.warning("federated login refused: %s", _why(exc))
            return _page(f"the identity provider's answer was refused: {_why(exc)}", 502)
        claim = self.settings.oidc_user_claim
        value = claims.get(claim)
        user_id = value.strip().lower() if isinstance(value, str) else ""
        if not user_id or not await self.user_exists(user_id):
            return _page(f"you signed in at {self.label}, but no Bastion user matches your {claim}", 403)
        if await self.pending(flow.login_id) is None:
            return _page("this login page has expired or was already used; start again from your application")
        log.info("federated login of user %s through %s", user_id, self.settings.oidc_issuer)
        return await self.complete(request, flow.login_id, user_id)

    async def _verified_claims(self, request: HttpExchangeRequest, code: str, flow: FederatedFlow) -> dict[str, Any]:
        async with _client() as http:
            provider = await self._provider(http)
            answer = await http.post(
                provider.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self._redirect_uri(request),
                    "code_verifier": flow.verifier,
                },
                auth=(self.settings.oidc_client_id, self.settings.oidc_client_secret.get_secret_value()),
                headers={"accept": "application/json"},
            )
            if answer.status_code != 200 or len(answer.content) > _MAX_RESPONSE:
                raise HttpError(502, "server_error", f"its token endpoint answered HTTP {answer.status_code}")
            id_token = answer.json().get("id_token")
            if not isinstance(id_token, str):
                raise HttpError(502, "server_error", "its token response has no id_token")
            keys = KeySet.import_key_set(await self._get_json(http, provider.jwks_uri))  # type: ignore[arg-type]
        try:
            decoded = jwt.decode(id_token, keys, algorithms=_ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=_LEEWAY,
                iss={"essential": True, "value": provider.issuer},
                aud={"essential": True, "value": self.settings.oidc_client_id},
                nonce={"essential": True, "value": flow.nonce},
                sub={"essential": True},
                exp={"essential": True},
            ).validate(decoded.claims)
        except JoseError as exc:
            raise ValueError(f"its ID token is not valid ({exc.error}: {exc.description or exc})") from None
        return dict(decoded.claims)


def _client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(timeout=httpx2.Timeout(15.0), follow_redirects=False)


def _flow_key(state: str) -> str:
    return f"federated.{digest(state)}"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _why(exc: Exception) -> str:
    return exc.description if isinstance(exc, HttpError) else (str(exc) or type(exc).__name__)


def _page(message: str, status: int = 400) -> HttpExchangeResponse:
    return html_page("Cannot sign in", f"<h1>Cannot sign in</h1><p>{html.escape(message)}</p>", status=status)
