"""The executor's `input_required` loop for handshake-era agents: what it sends back upstream, and
when it gives up. The agent and the upstream are plain functions here; the real round trip through
the gateway is tests/integration/test_input_required.py."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest

from libs.common.contracts.errors import ErrorKind
from services.executor.error_mapping import InputUnanswered, error_from_exception
from services.executor.upstreams.mcp.input_required import MAX_ROUNDS, needs_bridge, resolve_input_required

pytestmark = pytest.mark.unit

_ASK_ROOTS = {"resultType": "input_required", "inputRequests": {"r": {"method": "roots/list"}}, "requestState": "s1"}


async def _roots(_request: types.InputRequest) -> Any:
    return types.ListRootsResult(roots=[types.Root(uri="file:///a")])


def test_only_handshake_era_agents_need_the_bridge() -> None:
    assert needs_bridge(_ASK_ROOTS, ["sampling"])
    assert not needs_bridge(_ASK_ROOTS, ["input_required"])  # a 2026-07-28 agent resolves it itself
    assert not needs_bridge({"content": []}, [])


async def test_answers_and_the_echoed_state_go_back_upstream() -> None:
    sent: list[dict[str, Any]] = []

    async def resend(extra: dict[str, Any]) -> dict[str, Any]:
        sent.append(extra)
        return {"resultType": "input_required", "requestState": "s2"} if len(sent) == 1 else {"content": []}

    assert await resolve_input_required(_ASK_ROOTS, what="tool 't'", ask=_roots, resend=resend) == {"content": []}
    assert sent == [
        {"requestState": "s1", "inputResponses": {"r": {"roots": [{"uri": "file:///a"}]}}},
        {"requestState": "s2"},  # a state-only round carries no responses
    ]


async def test_a_server_that_keeps_asking_is_given_up_on() -> None:
    rounds = 0

    async def resend(_extra: dict[str, Any]) -> dict[str, Any]:
        nonlocal rounds
        rounds += 1
        return _ASK_ROOTS

    with pytest.raises(InputUnanswered, match=f"after {MAX_ROUNDS} rounds"):
        await resolve_input_required(_ASK_ROOTS, what="tool 't'", ask=_roots, resend=resend)
    assert rounds == MAX_ROUNDS


async def test_an_unanswerable_or_malformed_request_fails_as_an_upstream_error() -> None:
    async def refuse(_request: types.InputRequest) -> Any:
        return types.ErrorData(code=-32603, message="no stream")

    async def never(_extra: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("nothing is sent upstream without every answer")

    with pytest.raises(InputUnanswered) as refused:
        await resolve_input_required(_ASK_ROOTS, what="tool 't'", ask=refuse, resend=never)
    assert str(refused.value) == "tool 't' needs the agent to answer roots/list, and it could not: no stream"
    assert error_from_exception(refused.value, server="s", timeout=1).kind is ErrorKind.UPSTREAM_ERROR

    with pytest.raises(InputUnanswered, match="malformed input_required"):
        await resolve_input_required({"resultType": "input_required"}, what="tool 't'", ask=_roots, resend=never)
