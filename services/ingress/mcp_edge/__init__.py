"""`/mcp`, the MCP streamable HTTP endpoint, as a pipeline of small steps.

The order is one list, in the composition root (`services.ingress.service.mcp_endpoint`): HTTP
checks (`http_steps`), the JSON-RPC message (`jsonrpc_steps`), its context, era and session
(`era_steps`), streams of notifications (`stream_steps`), then the handler and what surrounds it:
audit, answer, session issue, cancellation, trace (`handler_steps`). Each step is a small class
that answers the request or passes it on (`chain.Step`), those around the handler as hooks with a
`before` and an `after` run in one loop (`chain.Hook`); nothing here raises into the server:
every failure is an answer. Written against ASGI directly because it is the hot path.
"""

from services.ingress.mcp_edge.chain import Exchange, McpEndpoint, Step
from services.ingress.mcp_edge.era_steps import BuildContext, EndSession, ResolveEra
from services.ingress.mcp_edge.handler_steps import Audit, CancelOnDisconnect, Dispatch, IssueSession, Reply, Trace
from services.ingress.mcp_edge.http_steps import Authenticate, CheckHeaders, ChooseAnswer, ReadBody, RouteMethod
from services.ingress.mcp_edge.jsonrpc_steps import ReadMessage, TakeNotification
from services.ingress.mcp_edge.stream_steps import Listen, ListenSubscriptions, StandaloneStream

__all__ = [
    "Audit",
    "Authenticate",
    "BuildContext",
    "CancelOnDisconnect",
    "CheckHeaders",
    "ChooseAnswer",
    "Dispatch",
    "EndSession",
    "Exchange",
    "IssueSession",
    "Listen",
    "ListenSubscriptions",
    "McpEndpoint",
    "ReadBody",
    "ReadMessage",
    "Reply",
    "ResolveEra",
    "RouteMethod",
    "StandaloneStream",
    "Step",
    "TakeNotification",
    "Trace",
]
