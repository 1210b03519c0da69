"""The authorization server of the OAuth-protected test upstream (`oauth_upstream.py`), built with
authlib: RFC 8414 metadata, RFC 7591 registration, the authorization code grant with PKCE (S256 only)
and an RFC 8707 `resource` its tokens are bound to, rotating refresh tokens, and RFC 8693 token
exchange (an access token of a user for a token of the same user for another resource).

`/authorize` is a login form: POST `username` to approve (the browser step a test drives). Test
controls (no auth: a test fixture, not a product): `POST /test/expire-access` makes every access
token invalid, `POST /test/expire-refresh` every refresh token, `GET /test/stats` counts grants by
type and registered clients.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on 127.0.0.1 in tests

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

__all__ = ["AS", "SCOPE", "STORE", "TOKEN_EXCHANGE", "as_routes"]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SCOPE = "mcp"


# ------------------------------------------------------------------ the authorization server's store


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    metadata: dict[str, Any]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return str(self.metadata["redirect_uris"][0])

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or SCOPE).split() if s == SCOPE)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.metadata.get("redirect_uris", [])

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.metadata.get("token_endpoint_auth_method", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.metadata.get("grant_types", ["authorization_code"])


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str
    code_challenge_method: str
    resource: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token:
    access_token: str
    refresh_token: str | None
    client_id: str
    user: str
    scope: str
    resource: str | None
    expires_at: float
    revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.refresh_revoked

    def get_user(self) -> str:
        return self.user


@dataclass
class Store:
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    access: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, Token] = field(default_factory=dict)
    grants: dict[str, int] = field(default_factory=dict)
    lifetime: int = 3600


STORE = Store()


def _resource_of(request: OAuth2Request) -> str | None:
    return request.payload.data.get("resource") if request.payload else None


# ------------------------------------------------------------------ grants


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        STORE.codes[code] = Code(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope or SCOPE,
            user=request.user,
            code_challenge=data.get("code_challenge", ""),
            code_challenge_method=data.get("code_challenge_method", ""),
            resource=data.get("resource"),
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = STORE.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        STORE.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> str:
        self.request.payload.data.setdefault("resource", authorization_code.resource)
        return authorization_code.user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = STORE.refresh.get(refresh_token)
        return token if token is not None and not token.refresh_revoked else None

    def authenticate_user(self, refresh_token: Token) -> str:
        self.request.payload.data.setdefault("resource", refresh_token.resource)
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        refresh_token.refresh_revoked = True
        refresh_token.revoked = True


class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693: a live access token of a user, exchanged for one of the same user for `resource`."""

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise InvalidRequestError("client may not use token exchange")
        data = self.request.payload.data
        if data.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise InvalidRequestError("subject_token_type must be an access token")
        subject = STORE.access.get(data.get("subject_token", ""))
        if subject is None or subject.revoked or subject.is_expired():
            raise InvalidGrantError("subject_token is not a live access token")
        if not data.get("resource"):
            raise InvalidRequestError("resource is required")
        self.request.client = client
        self.request.user = subject.user

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(user=self.request.user, scope=SCOPE, include_refresh_token=True)
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class Registration(ClientRegistrationEndpoint):
    def authenticate_token(self, request: Any) -> bool:
        return True  # open registration, as MCP clients expect

    def resolve_public_key(self, request: Any) -> None:
        return None

    def get_server_metadata(self) -> dict[str, Any]:
        return {
            "grant_types_supported": ["authorization_code", "refresh_token", TOKEN_EXCHANGE],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": [SCOPE],
        }

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any) -> Client:
        client = Client(client_info["client_id"], client_info.get("client_secret"), client_metadata)
        STORE.clients[client.client_id] = client
        return client


class Server(AuthorizationServer):
    def __init__(self) -> None:
        super().__init__(scopes_supported=[SCOPE])
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **_: secrets.token_urlsafe(32),
                lambda **_: secrets.token_urlsafe(32),
                lambda client, grant_type: STORE.lifetime,
            ),
        )
        self.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(TokenExchangeGrant)
        self.register_endpoint(Registration)

    def query_client(self, client_id: str) -> Client | None:
        return STORE.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        STORE.grants[request.payload.grant_type or "authorization_code"] = (
            STORE.grants.get(request.payload.grant_type or "authorization_code", 0) + 1
        )
        record = Token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=request.client.client_id,
            user=request.user,
            scope=token.get("scope", SCOPE),
            resource=_resource_of(request),
            expires_at=time.time() + token["expires_in"],
        )
        STORE.access[record.access_token] = record
        if record.refresh_token:
            STORE.refresh[record.refresh_token] = record

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request  # built by `_oauth_request` (the body is read asynchronously first)

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=dict(headers))
        return Response(body, status_code=status, headers=dict(headers))


AS = Server()
CodeChallenge.SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]


class _Request(OAuth2Request):
    """An OAuth2Request over a Starlette request whose body was read beforehand."""

    def __init__(self, request: Request, form: dict[str, Any]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self._args = dict(request.query_params)
        self._form = form
        self.payload = BasicOAuth2Payload(self._args | form)

    @property
    def args(self) -> dict[str, Any]:
        return self._args

    @property
    def form(self) -> dict[str, Any]:
        return self._form


async def _oauth_request(request: Request) -> OAuth2Request:
    form = dict(await request.form()) if request.method == "POST" else {}
    return _Request(request, form)


async def _json_request(request: Request) -> Any:
    from authlib.oauth2.rfc6749 import JsonPayload, JsonRequest

    body = await request.json()

    class Payload(JsonPayload):
        @property
        def data(self) -> Any:
            return body

    built = JsonRequest(request.method, str(request.url), request.headers)
    built.payload = Payload()
    return built


# ------------------------------------------------------------------ HTTP routes of the AS


def as_routes(base: str) -> list[Route]:
    async def metadata(request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "registration_endpoint": f"{base}/register",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token", TOKEN_EXCHANGE],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "scopes_supported": [SCOPE],
            }
        )

    async def authorize(request: Request) -> Response:
        oauth_request = await _oauth_request(request)
        if request.method == "GET":
            try:
                AS.get_consent_grant(oauth_request)
            except Exception as exc:
                return HTMLResponse(f"<p>error: {exc}</p>", status_code=400)
            hidden = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in request.query_params.items())
            return HTMLResponse(f'<form method="post">{hidden}<input name="username"><button>Allow</button></form>')
        username = oauth_request.payload.data.get("username") or None
        grant = AS.get_authorization_grant(oauth_request)
        return AS.create_authorization_response(oauth_request, grant_user=username, grant=grant)

    async def token(request: Request) -> Response:
        return AS.create_token_response(await _oauth_request(request))

    async def register(request: Request) -> Response:
        return AS.create_endpoint_response("client_registration", await _json_request(request))

    async def expire_access(request: Request) -> Response:
        for token in STORE.access.values():
            token.revoked = True
        return JSONResponse({"expired": len(STORE.access)})

    async def expire_refresh(request: Request) -> Response:
        for token in STORE.access.values():
            token.revoked = token.refresh_revoked = True
        return JSONResponse({"expired": len(STORE.refresh)})

    async def stats(request: Request) -> Response:
        return JSONResponse({"grants": STORE.grants, "clients": len(STORE.clients)})

    return [
        Route("/.well-known/oauth-authorization-server", metadata),
        Route("/authorize", authorize, methods=["GET", "POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/register", register, methods=["POST"]),
        Route("/test/expire-access", expire_access, methods=["POST"]),
        Route("/test/expire-refresh", expire_refresh, methods=["POST"]),
        Route("/test/stats", stats),
    ]
