"""Discovery documents: protected resource metadata (RFC 9728) and authorization server metadata (RFC 8414).

Everything is derived from the gateway's public base URL that ingress forwards with each request,
so the issuer, the resource and the endpoints always agree with what ingress verifies.
"""

from __future__ import annotations

from typing import Any, Final

from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse

from ..http import json_response

__all__ = ["SCOPES", "authorization_server_metadata", "issuer_of", "protected_resource_metadata", "resource_of"]

SCOPES: Final = ("mcp",)
"""The one scope: use this gateway's MCP endpoint (what a user may do there is policy's business)."""


def issuer_of(request: HttpExchangeRequest) -> str:
    return request.base_url.rstrip("/")


def resource_of(request: HttpExchangeRequest) -> str:
    """The protected resource (RFC 8707 audience of every access token)."""
    return issuer_of(request) + "/mcp"


def server_metadata(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "registration_endpoint": f"{issuer}/oauth/register",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "jwks_uri": f"{issuer}/oauth/jwks",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
    }


async def authorization_server_metadata(request: HttpExchangeRequest) -> HttpExchangeResponse:
    return json_response(server_metadata(issuer_of(request)))


async def protected_resource_metadata(request: HttpExchangeRequest) -> HttpExchangeResponse:
    return json_response(
        {
            "resource": resource_of(request),
            "authorization_servers": [issuer_of(request)],
            "bearer_methods_supported": ["header"],
            "scopes_supported": list(SCOPES),
            "resource_name": "Bastion MCP gateway",
        }
    )
