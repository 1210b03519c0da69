"""'Connect your account' in each revision's form: `-32042` (2025-11-25), `input_required` (2026-07-28)."""

from __future__ import annotations

import pytest
from mcp_types import InputRequiredResult
from mcp_types.jsonrpc import URL_ELICITATION_REQUIRED

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError
from libs.common.contracts.oauth_upstream import AUTHORIZE_URL
from services.ingress.url_elicitation import CONNECT_INPUT, request_declares_url_elicitation, url_elicitation

pytestmark = pytest.mark.unit

LINK = "http://bastion.test/oauth/upstream/authorize?ticket=t0k"
REFUSAL = GatewayError(kind=ErrorKind.FORBIDDEN, message="authorize first", data={AUTHORIZE_URL: LINK})


def test_a_handshake_era_agent_gets_the_link_as_url_elicitation_required() -> None:
    answer = url_elicitation(7, REFUSAL, "crm", "2025-11-25")
    assert answer is not None and answer["error"]["code"] == URL_ELICITATION_REQUIRED
    assert answer["error"]["data"]["elicitations"][0]["url"] == LINK


def test_a_2026_agent_gets_an_input_required_result_holding_a_url_elicitation() -> None:
    answer = url_elicitation(7, REFUSAL, "crm", "2026-07-28", {"name": "crm__whoami"})
    assert answer is not None and "error" not in answer
    parsed = InputRequiredResult.model_validate(answer["result"])  # the SDK's own model of the form
    assert parsed.input_requests is not None
    ask = parsed.input_requests[CONNECT_INPUT]
    assert ask.method == "elicitation/create" and ask.params.mode == "url" and ask.params.url == LINK
    assert "crm" in ask.params.message and "ticket" not in ask.params.message


@pytest.mark.parametrize(("action", "asked_again"), [("decline", False), ("cancel", False), ("accept", True)])
def test_a_retry_asks_again_unless_the_user_said_no(action: str, asked_again: bool) -> None:
    params = {"name": "crm__whoami", "inputResponses": {CONNECT_INPUT: {"action": action}}}
    assert (url_elicitation(7, REFUSAL, "crm", "2026-07-28", params) is not None) is asked_again


def test_a_refusal_without_a_link_is_left_as_it_is() -> None:
    plain = GatewayError(kind=ErrorKind.FORBIDDEN, message="no")
    assert url_elicitation(7, plain, "crm", "2026-07-28", {}) is None
    assert url_elicitation(7, plain, "crm", "2025-11-25") is None


def test_a_2026_request_declares_url_elicitation_in_its_envelope() -> None:
    meta = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}}
    assert request_declares_url_elicitation({"_meta": meta})
    assert not request_declares_url_elicitation({"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}})
    assert not request_declares_url_elicitation({})
