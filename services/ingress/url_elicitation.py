""" "Connect your account" as a URL-mode elicitation (MCP 2025-11-25).

A call refused because the calling user has not yet authorized a per-user upstream carries Bastion's
authorization link (`oauth_upstream.AUTHORIZE_URL`); to an agent that declared
`capabilities.elicitation.url` it is answered as `URLElicitationRequiredError` (`-32042`), whose
`data.elicitations` holds the link in the form its client shows a user, rather than as a refusal whose
message holds it (docs/oauth.md). Other agents keep the refusal with the link."""

from __future__ import annotations

import secrets
from typing import Any, Final

from mcp_types.jsonrpc import URL_ELICITATION_REQUIRED

from libs.common.contracts.messages import GatewayError
from libs.common.contracts.oauth_upstream import AUTHORIZE_URL
from services.ingress.protocol import error_body

__all__ = ["ELICITS_URLS", "declares_url_elicitation", "url_elicitation"]

ELICITS_URLS: Final = "elicitation_url"
"""How a session's client capabilities (`RequestContext.client`) say its agent takes URL elicitations."""


def declares_url_elicitation(capabilities: Any) -> bool:
    elicitation = capabilities.get("elicitation") if isinstance(capabilities, dict) else None
    return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)


def url_elicitation(request_id: Any, error: GatewayError, server: str) -> dict[str, Any] | None:
    """The `-32042` answer for a refusal carrying an authorization link, or None when it carries none."""
    link = error.data.get(AUTHORIZE_URL) if isinstance(error.data, dict) else None
    if not isinstance(link, str):
        return None
    message = f"Connect your account: authorize {server} for your user, then call again"
    elicitation = {"mode": "url", "elicitationId": secrets.token_urlsafe(16), "url": link, "message": message}
    return error_body(request_id, URL_ELICITATION_REQUIRED, message, {"elicitations": [elicitation]})
