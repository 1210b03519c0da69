""" "Connect your account" as a URL-mode elicitation (MCP 2025-11-25, and 2026-07-28's `input_required`).

A call refused because the calling user has not yet authorized a per-user upstream carries Bastion's
authorization link (`oauth_upstream.AUTHORIZE_URL`); to an agent that declared
`capabilities.elicitation.url` it is answered, rather than as a refusal whose message holds it
(docs/oauth.md):

- handshake era (2025-11-25, declared at `initialize`): `URLElicitationRequiredError` (`-32042`), whose
  `data.elicitations` holds the link in the form its client shows a user;
- 2026-07-28 (declared in the request's `_meta` capabilities): an `input_required` result whose one
  input request (under `CONNECT_INPUT`) is that URL-mode `elicitation/create`. The agent shows it and
  retries the call with its answer: a retry whose answer is not `accept` gets the refusal with the
  link (the user said no: asking again would loop); any other retry is a call like the first.

Other agents keep the refusal with the link."""

from __future__ import annotations

import secrets
from typing import Any, Final

from mcp_types.jsonrpc import URL_ELICITATION_REQUIRED
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.contracts.messages import GatewayError
from libs.common.contracts.oauth_upstream import AUTHORIZE_URL
from services.ingress.protocol import error_body, ok_body

__all__ = [
    "CONNECT_INPUT",
    "ELICITS_URLS",
    "declares_url_elicitation",
    "request_declares_url_elicitation",
    "url_elicitation",
]

ELICITS_URLS: Final = "elicitation_url"
"""How a session's client capabilities (`RequestContext.client`) say its agent takes URL elicitations."""
CONNECT_INPUT: Final = "bastion_connect_account"
"""The key of the input request a 2026-07-28 agent answers under when it retries the call."""
_CAPABILITIES_META: Final = "io.modelcontextprotocol/clientCapabilities"


def declares_url_elicitation(capabilities: Any) -> bool:
    elicitation = capabilities.get("elicitation") if isinstance(capabilities, dict) else None
    return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)


def request_declares_url_elicitation(params: Any) -> bool:
    """Whether a 2026-07-28 request's `_meta` capabilities declare URL-mode elicitation."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and declares_url_elicitation(meta.get(_CAPABILITIES_META))


def _declined(params: Any) -> bool:
    """Whether this call is a retry whose answer to the connect request is not `accept`."""
    answers = params.get("inputResponses") if isinstance(params, dict) else None
    answer = answers.get(CONNECT_INPUT) if isinstance(answers, dict) else None
    return isinstance(answer, dict) and answer.get("action") != "accept"


def url_elicitation(
    request_id: Any, error: GatewayError, server: str, version: str = "", params: Any = None
) -> dict[str, Any] | None:
    """The answer asking the agent's user to connect their account, in the form of the agent's revision.

    None when the refusal carries no authorization link, or the user already declined (`params` being
    the call's, 2026-07-28): the refusal with the link is the answer then."""
    link = error.data.get(AUTHORIZE_URL) if isinstance(error.data, dict) else None
    if not isinstance(link, str):
        return None
    message = f"Connect your account: authorize {server} for your user, then call again"
    elicitation = {"mode": "url", "elicitationId": secrets.token_urlsafe(16), "url": link, "message": message}
    if version not in MODERN_PROTOCOL_VERSIONS:
        return error_body(request_id, URL_ELICITATION_REQUIRED, message, {"elicitations": [elicitation]})
    if _declined(params):
        return None
    ask = {"method": "elicitation/create", "params": elicitation}
    return ok_body(request_id, version, {"resultType": "input_required", "inputRequests": {CONNECT_INPUT: ask}})
