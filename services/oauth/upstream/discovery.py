"""Find an upstream's authorization server the way the MCP authorization spec says a client must.

The 401's `WWW-Authenticate` names the protected resource metadata (RFC 9728, else its well-known URLs),
whose `authorization_servers` lead to RFC 8414 metadata. The SDK's helpers build the candidate URLs and
its models parse the documents."""

from __future__ import annotations

import httpx2
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
)
from mcp.shared.auth import OAuthMetadata, ProtectedResourceMetadata
from pydantic import BaseModel, ValidationError

from ..fetch import why_unreachable
from .errors import DiscoveryError

__all__ = ["Discovered", "discover"]

_PROBE = {"jsonrpc": "2.0", "id": 0, "method": "ping"}
_MAX_DOCUMENT = 256 * 1024


class Discovered(BaseModel):
    """What a client needs to know about an upstream's authorization, cached per server."""

    resource: str
    """The resource indicator (RFC 8707) tokens are asked for: the metadata's `resource`."""
    metadata: OAuthMetadata
    scope: str | None = None

    @property
    def supports_token_exchange(self) -> bool:
        return "urn:ietf:params:oauth:grant-type:token-exchange" in (self.metadata.grant_types_supported or [])


async def _document(http: httpx2.AsyncClient, url: str, refused: list[str]) -> bytes | None:
    """The document at `url`, or None; a connection the SSRF guard refused is noted in `refused`."""
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx2.HTTPError as exc:
        if (why := why_unreachable(exc)).startswith("refused"):
            refused.append(why)
        return None
    if response.status_code != 200 or len(response.content) > _MAX_DOCUMENT:
        return None
    return response.content


async def discover(http: httpx2.AsyncClient, server_url: str, transport: str = "http") -> Discovered:
    """Probe `server_url` without credentials and follow its 401 to the authorization server."""
    try:
        if transport == "sse":
            probe = await http.get(server_url, headers={"Accept": "text/event-stream"})
        elif transport == "rest":
            probe = await http.get(server_url, headers={"Accept": "application/json"})
        else:
            probe = await http.post(server_url, json=_PROBE, headers={"Accept": "application/json, text/event-stream"})
    except httpx2.HTTPError as exc:
        raise DiscoveryError(f"cannot reach the server: {why_unreachable(exc)}") from None
    if probe.status_code != 401:
        raise DiscoveryError(f"the server answered HTTP {probe.status_code} without credentials, not 401")
    resource: ProtectedResourceMetadata | None = None
    refused: list[str] = []
    for url in build_protected_resource_metadata_discovery_urls(
        extract_resource_metadata_from_www_auth(probe), server_url
    ):
        body = await _document(http, url, refused)
        if body is None:
            continue
        try:
            resource = ProtectedResourceMetadata.model_validate_json(body)
            break
        except ValidationError:
            continue
    issuer = str(resource.authorization_servers[0]) if resource else None
    for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, server_url):
        body = await _document(http, url, refused)
        if body is None:
            continue
        try:
            metadata = OAuthMetadata.model_validate_json(body)
        except ValidationError:
            continue
        if issuer is not None and str(metadata.issuer).rstrip("/") != issuer.rstrip("/"):
            raise DiscoveryError("the authorization server metadata names another issuer than the resource does")
        if "S256" not in (metadata.code_challenge_methods_supported or []):
            raise DiscoveryError("the authorization server does not offer PKCE with S256")
        scope = extract_scope_from_www_auth(probe) or (
            " ".join(resource.scopes_supported) if resource and resource.scopes_supported else None
        )
        return Discovered(resource=str(resource.resource) if resource else server_url, metadata=metadata, scope=scope)
    if refused:
        raise DiscoveryError(f"no usable OAuth authorization server metadata: {'; '.join(dict.fromkeys(refused))}")
    raise DiscoveryError("no OAuth authorization server metadata found for this server")
