"""The official MCP SDK's OAuth client (`mcp.client.auth.OAuthClientProvider`) wired to a `Browser`.

`sdk_auth(mcp_url, browser, storage)` is the httpx auth a real agent uses: on the gateway's 401 it
discovers the metadata, registers itself, sends the browser to the authorization URL (our `Browser`
logs in like a person), and exchanges the code with PKCE. `MemoryStorage` keeps what it obtained.
"""

from __future__ import annotations

from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.support.oauth_browser import Browser

__all__ = ["REDIRECT", "MemoryStorage", "sdk_auth"]

REDIRECT = "http://127.0.0.1:33418/callback"
"""The client's redirect URI; nothing listens there: the browser reads the redirect instead."""


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def sdk_auth(mcp_url: str, browser: Browser, storage: MemoryStorage) -> OAuthClientProvider:
    redirected: list[AuthorizationCodeResult] = []

    async def redirect_handler(url: str) -> None:
        params = (await browser.login(url)).params
        redirected.append(
            AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))
        )

    async def callback_handler() -> AuthorizationCodeResult:
        return redirected.pop()

    return OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="sdk test client", redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"]
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
