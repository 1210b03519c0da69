"""A fake OAuth token endpoint speaking Entra ID's and Google's token wires.

Entra ID: `POST /<tenant>/oauth2/v2.0/token` with the client-credentials form, answered as
`login.microsoftonline.com` does (`token_type`, `expires_in`, `ext_expires_in`, `access_token`; an
`AADSTS` error otherwise). Google: `POST /token` with a `jwt-bearer` assertion, whose RS256 signature
is checked against the service account's public key, its `aud` against this URL and its `iss` and
`scope`, answered as `oauth2.googleapis.com` does. Tokens are `token-1`, `token-2`, ... in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

__all__ = ["TokenServer", "service_account_key", "token_server"]

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "entra-client-secret-Qx8~0123456789abcdef"
TENANT = "contoso.onmicrosoft.com"
SERVICE_ACCOUNT = "bastion@my-project.iam.gserviceaccount.com"


def service_account_key(key: RSAKey) -> str:
    """A service account's JSON key file as Google issues it, around `key`."""
    return orjson.dumps(
        {
            "type": "service_account",
            "project_id": "my-project",
            "private_key_id": "0123456789abcdef",
            "private_key": key.as_pem(private=True).decode(),
            "client_email": SERVICE_ACCOUNT,
            "client_id": "123456789012345678901",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    ).decode()


@dataclass
class TokenServer:
    signing: RSAKey
    """The service account's key pair (its public half checks assertions)."""
    lifetime: int = 3599
    failure: tuple[int, dict[str, object]] | None = None
    """An error answer to give instead of tokens."""
    hold: asyncio.Event | None = None
    """Set: answers wait for it (requests arriving meanwhile are counted in `asked`)."""
    asked: list[dict[str, str]] = field(default_factory=list)
    """Each request's form, in order."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    issued: int = 0
    port: int = 0

    @property
    def entra_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{TENANT}/oauth2/v2.0/token"

    @property
    def google_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            path = head[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            form = {name: values[0] for name, values in parse_qs(raw.decode()).items()}
            self.asked.append(form)
            self.arrived.set()
            if self.hold is not None:
                await self.hold.wait()
            status, payload = self._answer(path, form)
            body = orjson.dumps(payload)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    def _answer(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if self.failure is not None:
            return self.failure
        if path == f"/{TENANT}/oauth2/v2.0/token":
            problem = self._entra_problem(form)
        elif path == "/token":
            problem = self._google_problem(form)
        else:
            return 404, {"error": "not_found"}
        if problem is not None:
            return problem
        self.issued += 1
        token = f"token-{self.issued}"
        if path == "/token":
            return 200, {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"}
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": token,
        }

    @staticmethod
    def _entra_problem(form: dict[str, str]) -> tuple[int, dict[str, object]] | None:
        if form.get("grant_type") != "client_credentials" or form.get("scope") != ENTRA_SCOPE:
            return 400, {"error": "invalid_request", "error_description": "AADSTS900144: bad grant or scope"}
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        return None

    def _google_problem(self, form: dict[str, str]) -> tuple[int, dict[str, object]] | None:
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}
        public = RSAKey.import_key(self.signing.as_pem(private=False))
        try:
            claims = jwt.decode(form.get("assertion", ""), public, algorithms=["RS256"]).claims
        except (JoseError, ValueError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        wanted = {"iss": SERVICE_ACCOUNT, "aud": self.google_url, "scope": GOOGLE_SCOPE}
        if any(claims.get(name) != value for name, value in wanted.items()) or "exp" not in claims:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: bad claims"}
        return None


@contextlib.asynccontextmanager
async def token_server() -> AsyncIterator[TokenServer]:
    server = TokenServer(RSAKey.generate_key(2048))
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listening.wait_closed(), 5)
