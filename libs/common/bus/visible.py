"""Asking policy which of a list of (server, tool) pairs a caller may use (`bastion.policy.list`).

As ingress (`tools/list`, prompts, resources) and codemode (every meta-tool call) do.

The question names the list by its digest; only a policy replica that does not hold it yet
answers `unknown_list`, and the list itself follows in a second question. So a catalog's ~40 kB
of pairs crosses the bus once per policy replica and catalog revision, not on every list.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, GatewayError, PairList, VisibleTools, VisibleToolsQuery

__all__ = ["ask_visible"]

_NO_POLICY = "no policy service is running behind this gateway; retry shortly or check `bastion up`"


async def ask_visible(
    nc: NATS,
    caller: Caller,
    pairs: PairList,
    include_servers: list[str] | None,
    include_tools: list[str] | None,
    timeout: float,  # noqa: ASYNC109 - a NATS deadline per question, not a scope
) -> VisibleTools:
    """Policy's answer (with `error` set when there is none). An empty list needs no question."""
    if not pairs.pairs:
        return VisibleTools()
    query = VisibleToolsQuery(
        caller=caller, tools_digest=pairs.digest, include_servers=include_servers, include_tools=include_tools
    )
    answer = await _ask(nc, query, timeout)
    if answer.unknown_list:
        answer = await _ask(nc, query.model_copy(update={"tools": pairs.pairs}), timeout)
    return answer


async def _ask(nc: NATS, query: VisibleToolsQuery, timeout: float) -> VisibleTools:  # noqa: ASYNC109
    try:
        reply = await nc.request(subjects.POLICY_LIST, query.model_dump_json().encode(), timeout=timeout)
    except NoRespondersError:
        return VisibleTools(error=GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=_NO_POLICY))
    except NatsTimeout:
        message = f"the policy service did not answer within {timeout:g}s"
        return VisibleTools(error=GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT, message=message))
    return VisibleTools.model_validate_json(reply.data)
