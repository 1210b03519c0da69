"""`/v1`: the model side of the gateway, for applications that call a model API.

- `GET /v1/models`: the models of every configured provider.
- `POST /v1/chat/completions`, `POST /v1/messages` (Anthropic), `POST /v1/responses` (OpenAI
  Responses): each front (`fronts`) translates its request to a chat completion, the format on the
  bus; one pipeline then injects the key's MCP tools as function tools (the application's own tools
  win a name clash), sends it through policy (key, budgets) to the executor (the provider call), runs
  agent mode, and answers through the front's writer (whole, or streamed as the front streams).
  Tool calls the model proposes come back to the application: outside agent mode Bastion runs none.
- `POST /v1/messages/count_tokens`: Anthropic's token count, estimated here (`messages_in`).
- `/v1beta/models/<model>:generateContent` / `:streamGenerateContent` (Gemini, `gemini_in`), and
  Gemini's model list and `countTokens` (`gemini_routes`).
- `POST /v1/mcp/tool/execute`: one proposed call (an OpenAI `tool_call`, an Anthropic `tool_use`
  block, a Responses `function_call` item or a Gemini `functionCall` part) run as an MCP
  `tools/call` (policy, then the executor), answered with the result to append, in the same form;
  audited with the completion that proposed it as its parent.

Errors use the front's shape (`wire` for OpenAI's, `messages_out` for Anthropic's, `gemini_out` for
Google's) so SDKs raise their usual exceptions. Every completion or execution that reaches its handler
ends in one audit event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from cachetools import LRUCache

from libs.common.contracts.codemode import CODE_MODE_HEADER
from libs.common.contracts.llm import (
    LLM_CHUNK,
    LlmOutcome,
    LlmRequest,
    max_cost_usd,
)
from libs.common.contracts.llm_config import AgentMode
from libs.common.contracts.messages import AuditEvent, Caller, GatewayError, new_id
from libs.common.runtime.refusals import RefusalLog
from services.ingress.auth.access_tokens import Authenticator
from services.ingress.auth.keys import AuthFailure, KeyDirectory
from services.ingress.auth.refused_credentials import note_refusal
from services.ingress.context import RequestContext
from services.ingress.field_limits import FieldLimits, Oversized, header_patterns
from services.ingress.handlers import Handlers
from services.ingress.llm import gemini_in, gemini_routes, messages_in
from services.ingress.llm.agent import (
    agent_summary,
    assistant_message,
    auto_executable,
    call_ids,
    call_name,
    stop_reason,
)
from services.ingress.llm.chat_round import Chat, error_kind, failed, listing_error
from services.ingress.llm.fronts import GEMINI, Front, Writer, front_of
from services.ingress.llm.models import ModelDirectory
from services.ingress.llm.response_store import ResponseStore
from services.ingress.llm.responses_out import ResponsesWriter
from services.ingress.llm.tools import (
    ToolCallProblem,
    answer_in_form,
    as_tool_call,
    function_tool,
    merged_tools,
    parse_tool_call,
    tool_message,
)
from services.ingress.llm.wire import (
    STATUS,
    Receive,
    Refused,
    Scope,
    Send,
    json_object,
    read_body,
    send_error,
    send_json,
)
from services.ingress.protocol import DEFAULT_LEGACY_VERSION, result_object
from services.ingress.sending.request_path import RequestPath as Gateway
from services.ingress.sessions.streams import CallStreams

__all__ = ["LlmEndpoint", "ModelDirectory"]

log = logging.getLogger(__name__)


_PARENT_HEADER = "x-bastion-parent-id"
_MAX_AUDITED_CALLS = 64
_REMEMBERED_CALLS = 100_000
"""Tool call ids remembered with the completion that proposed them (for `parent_id`), least recent dropped."""
_TIMEOUT_MARGIN = 5.0
"""Seconds ingress waits beyond the provider's own timeout (retries and the hops in between)."""
_NO_PROVIDER = (
    "No LLM provider is configured: add one under `llm: providers:` in the config file (then `bastion config "
    "apply`), or while the gateway runs with POST /admin/v1/llm-providers or `bastion llm-providers add` "
    "(docs/llm.md#configure-providers)."
)
_NAMED_MODELS = 20
"""Served models a 404 names at most."""
_CONVERTED_LISTINGS = 256
"""Tool listings (one per key and narrowing, as the handlers cache them) kept converted to function tools."""


class LlmEndpoint:
    def __init__(
        self,
        handlers: Handlers,
        keys: KeyDirectory,
        models: ModelDirectory,
        streams: CallStreams,
        emit_audit: Callable[[AuditEvent], object],
        max_body_bytes: int,
        fields: FieldLimits | None = None,
        authenticator: Authenticator | None = None,
        refusals: RefusalLog | None = None,
        responses: ResponseStore | None = None,
    ) -> None:
        self.handlers, self.keys, self.models, self.streams = handlers, keys, models, streams
        self.authenticator: KeyDirectory | Authenticator = authenticator or keys
        """Virtual keys and, with an `Authenticator`, OAuth access tokens: exactly as on `/mcp`."""
        self.refusals = refusals
        """Where a 401 is counted and audited (`libs.common.runtime.refusals`)."""
        self.emit_audit = emit_audit
        self.responses = responses or ResponseStore(None)
        """Where `/v1/responses` keeps conversations (None: nowhere; `previous_response_id` finds none)."""
        self.max_body_bytes = max_body_bytes
        self.fields = fields or FieldLimits()
        self._parents: LRUCache[str, str] = LRUCache(maxsize=_REMEMBERED_CALLS)
        self._function_tools: dict[int, tuple[orjson.Fragment, list[dict[str, Any]]]] = {}
        """A cached `tools/list` encoding (held, so its id stays its own) -> its tools as function tools."""

    @property
    def gateway(self) -> Gateway:
        return self.handlers.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        route = (scope["method"], scope["path"].rstrip("/"))
        query = scope.get("query_string") or b""
        front, completion = front_of(route[1], query, headers)
        google_key = gemini_in.api_key(route[1], query, headers)
        credential = headers.get("authorization") or _api_key(headers.get("x-api-key") or google_key)
        caller = self.authenticator.authenticate(credential)
        if isinstance(caller, AuthFailure):
            note_refusal(self.refusals, "llm", caller, credential, scope)
            challenge = [(b"www-authenticate", caller.challenge.encode())] if caller.challenge else []
            body = front.error_body(401, caller.message, "authentication_error", caller.error)
            await send_json(send, 401, body, challenge)
            return
        try:
            if route[0] == "POST" and completion:
                await self.chat(front, caller, headers, await read_body(receive, self.max_body_bytes), send)
            elif front is GEMINI:  # its model list, one model, countTokens
                raw = await read_body(receive, self.max_body_bytes) if route[0] == "POST" else b""
                await send_json(send, 200, gemini_routes.answer(*route, raw, self.list_models(caller)))
            elif route == ("GET", "/v1/models"):
                await send_json(send, 200, self.list_models(caller))
            elif route == ("POST", "/v1/messages/count_tokens"):
                body = json_object(await read_body(receive, self.max_body_bytes))
                await send_json(send, 200, {"input_tokens": messages_in.count_tokens(body)})
            elif route == ("POST", "/v1/mcp/tool/execute"):
                await self.execute(caller, headers, await read_body(receive, self.max_body_bytes), send)
            else:
                raise Refused(404, f"no route {scope['method']} {scope['path']}", code="unknown_url")
        except Refused as refused:
            body = front.error_body(refused.status, str(refused), refused.kind, refused.code)
            await send_json(send, refused.status, body)

    def list_models(self, caller: Caller | None = None) -> dict[str, Any]:
        """The models served here, only those the caller's model grants allow when it has some."""
        grants = self.models.grants.grants(self.keys.record(caller.key_id), caller.user_id) if caller else None
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": provider}
            for model, (provider, _, _) in sorted(self.models.models.items())
            if grants is None or grants.allows(model)
        ]
        if not data:  # the same list shape, and what to do about it
            return {
                "object": "list",
                "data": data,
                "bastion": {"hint": _NO_PROVIDER},
            }
        return {"object": "list", "data": data}

    def _unknown_model(self, model: str) -> Refused:
        served = sorted(self.models.models)
        if not served:
            why = _NO_PROVIDER
        else:
            more = f" and {len(served) - _NAMED_MODELS} more" if len(served) > _NAMED_MODELS else ""
            why = f"This gateway serves {', '.join(served[:_NAMED_MODELS])}{more} (GET /v1/models lists them)."
        return Refused(404, f"The model {model!r} does not exist or is not served here. {why}", code="model_not_found")

    # ------------------------------------------------------------------ chat completions

    async def chat(self, front: Front, caller: Caller, headers: dict[str, str], raw: bytes, send: Send) -> None:
        """One request of any front.

        Translated to a chat completion, then the shared pipeline (tool injection, policy, the executor,
        agent mode, audit), answered through the front's writer."""
        request = json_object(raw)
        body = front.chat_request(request)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise Refused(400, "'model' must be a model name (a string)", code="invalid_model")
        if not isinstance(messages, list) or not messages:
            raise Refused(400, "'messages' must be a non-empty array", code="invalid_messages")
        served = self.models.models.get(model)
        if served is None:
            raise self._unknown_model(model)
        app_tools = body.get("tools") or []
        if not isinstance(app_tools, list):
            raise Refused(400, "'tools' must be an array", code="invalid_tools")
        provider, price, provider_timeout = served
        chat = Chat(caller, headers, provider, model, price, provider_timeout, len(raw), self.handlers.journal)
        chat.deployments = self.models.deployments(model)
        chat.front = front.name
        ctx = self._context(caller, headers, "tools", 0)  # a malformed narrowing header is refused up front
        record = self.keys.record(caller.key_id)
        agent = record.agent if record is not None else None
        writer = front.writer(send, body, agent is not None)
        if isinstance(writer, ResponsesWriter):  # `previous_response_id`, and this answer kept for the next
            await self.responses.prepare(caller.key_id, request, writer, body)
        # From here on the request has reached its handler: each provider round trip ends in one audit event.
        first = chat.audit()
        try:
            visible = await self._visible_tools(ctx)
        except BaseException:
            first.error = "the gateway stopped handling this request"
            self.emit_audit(first)
            raise
        if isinstance(visible, GatewayError):
            failed(first, visible)
            writer.request_id = first.event_id
            await writer.close(LlmOutcome(id=first.event_id, error=visible))
            first.response_bytes = writer.sent
            self.emit_audit(first)
            return
        tools, chat.injected = merged_tools(app_tools, visible)
        if tools:
            body["tools"] = tools
        if agent is None:
            outcome = await self._round(chat, body, writer, first)
            await writer.close(outcome)
            return
        await self._agent_loop(chat, body, writer, first, agent)

    def _context(self, caller: Caller, headers: dict[str, str], request_id: str, request_bytes: int) -> RequestContext:
        """The MCP request context of this HTTP request.

        The same narrowing headers (`X-Bastion-Include-Servers/-Tools`) and Code Mode override
        (`X-Bastion-Code-Mode`) as on `/mcp`."""
        include_servers = header_patterns(
            "X-Bastion-Include-Servers", headers.get("x-bastion-include-servers"), self.fields
        )
        include_tools = header_patterns("X-Bastion-Include-Tools", headers.get("x-bastion-include-tools"), self.fields)
        for narrowing in (include_servers, include_tools):
            if isinstance(narrowing, Oversized):
                raise Refused(400, narrowing.describe(), code="invalid_header")
        assert not isinstance(include_servers, Oversized) and not isinstance(include_tools, Oversized)
        return RequestContext(
            caller=caller,
            version=DEFAULT_LEGACY_VERSION,
            request_id=request_id,
            request_bytes=request_bytes,
            trace_id=headers.get("x-bastion-trace-id"),
            include_servers=include_servers,
            include_tools=include_tools,
            code_mode=headers.get(CODE_MODE_HEADER),
        )

    async def _visible_tools(self, ctx: RequestContext) -> list[dict[str, Any]] | GatewayError:
        """The tools an MCP client with this key would list.

        (Every filter layer, or the Code Mode meta-tools), by the very `tools/list` route `/mcp` takes,
        as function tools."""
        payload, _ = await self.handlers.dispatch(ctx, "tools/list", {})
        if "error" in payload:
            return listing_error(payload["error"])
        tools = payload["result"]["tools"]
        if not isinstance(tools, orjson.Fragment):
            return [function_tool(tool) for tool in tools]
        # the handlers' cached encoding of a listing: converted once while the listing stays the same
        cached = self._function_tools.get(id(tools))
        if cached is not None and cached[0] is tools:
            return cached[1]
        converted = [function_tool(tool) for tool in orjson.loads(orjson.dumps(tools))]
        if len(self._function_tools) >= _CONVERTED_LISTINGS:
            self._function_tools.clear()
        self._function_tools[id(tools)] = (tools, converted)
        return converted

    async def _round(self, chat: Chat, body: dict[str, Any], writer: Writer, audit: AuditEvent) -> LlmOutcome:
        """One provider round trip, relayed through `writer`, audited as one `llm_request`."""
        started = time.perf_counter()
        outcome: LlmOutcome | None = None
        sent_before = writer.sent
        try:
            request = LlmRequest(
                trace_id=chat.trace_id,
                caller=chat.caller,
                provider=chat.provider,
                model=chat.model,
                body=body,
                max_cost_usd=_max_cost(chat, body),
                timeout=chat.timeout + _TIMEOUT_MARGIN,
                deployments=chat.deployments,
            )
            request.id = audit.event_id
            writer.request_id = request.id
            outcome = await (self._streamed(request, writer) if writer.streaming else self.gateway.llm(request))
            self._record(audit, outcome, chat.injected)
            return outcome
        finally:
            if outcome is None:
                audit.error = "the gateway stopped handling this request"
            audit.latency_ms = (time.perf_counter() - started) * 1000
            audit.response_bytes = writer.sent - sent_before
            self.emit_audit(audit)

    async def _streamed(self, request: LlmRequest, writer: Writer) -> LlmOutcome:
        """Relay the provider's chunks as they arrive.

        (The HTTP status goes with the first one, so a request refused before any chunk still gets its
        error status)."""

        async def emit(message: dict[str, Any]) -> None:
            if message.get("method") == LLM_CHUNK:
                await writer.chunk(message.get("params") or {})

        stream = self.streams.open(request.caller.key_id, emit)
        request.stream = stream.subject
        return await self.streams.relay(stream, self.gateway.llm(request))

    def _record(self, audit: AuditEvent, outcome: LlmOutcome, injected: set[str]) -> None:
        if outcome.error is not None:
            failed(audit, outcome.error)
        else:
            audit.status = "ok"
        audit.upstream_ms = outcome.upstream_ms
        if outcome.usage is not None:
            audit.prompt_tokens = outcome.usage.prompt_tokens
            audit.completion_tokens = outcome.usage.completion_tokens
        audit.cost_usd = outcome.cost_usd
        audit.llm_attempts = [attempt.line() for attempt in outcome.attempts]
        if outcome.error is None and outcome.attempts:
            audit.server = outcome.attempts[-1].provider  # the deployment that answered
        audit.execution = "not_run" if outcome.error is not None and outcome.decided_by == "policy" else "ran"
        names = []
        for call in outcome.tool_calls[:_MAX_AUDITED_CALLS]:
            name = call_name(call)
            names.append(name[:128])
            if isinstance(call.get("id"), str) and name in injected:
                self._parents[call["id"]] = audit.event_id
        audit.tool_calls = names

    # ------------------------------------------------------------------ agent mode

    async def _agent_loop(
        self, chat: Chat, body: dict[str, Any], writer: Writer, audit: AuditEvent, agent: AgentMode
    ) -> None:
        """Run the auto-executable calls.

        (Concurrently), feed their results back, until the model stops, proposes a call Bastion may not
        run on its own, or `max_depth` rounds were made."""
        transcript: list[dict[str, Any]] = []
        messages = list(body["messages"])
        taken = call_ids(messages)
        for depth in range(1, agent.max_depth + 1):
            outcome = await self._round(chat, {**body, "messages": [*messages, *transcript]}, writer, audit)
            calls = outcome.tool_calls
            if outcome.error is not None or not calls:
                await writer.close(outcome, agent_summary(transcript, depth, None, []))
                return
            self._own_ids(calls, taken, audit.event_id, chat.injected)
            auto = [c for c in calls if auto_executable(agent, call_name(c), chat.injected)]
            if depth == agent.max_depth or not auto:
                await writer.close(outcome, agent_summary(transcript, depth, stop_reason(depth, agent, auto), calls))
                return
            results = await asyncio.gather(*(self._auto_execute(chat, call, audit.event_id) for call in auto))
            pending = [c for c in calls if c not in auto]
            # a mixed round is split: what ran (its calls, their results) goes in the transcript, what is
            # pending (and the round's text) in the answer's message, so each call is answered once, in order
            transcript += [assistant_message(outcome, auto, with_text=not pending), *results]
            if pending:
                await writer.close(outcome, agent_summary(transcript, depth, "pending_tool_calls", pending))
                return
            audit = chat.audit()

    def _own_ids(self, calls: list[dict[str, Any]], taken: set[str], parent: str, injected: set[str]) -> None:
        """A fresh id for each call whose id is missing or already used in the conversation.

        (Some providers number calls per answer, or leave ids out): a transcript repeating an id is
        refused."""
        for call in calls:
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id or call_id in taken:
                call_id = call["id"] = f"call_{new_id()}"
                if call_name(call) in injected:
                    self._parents[call_id] = parent
            taken.add(call_id)

    async def _auto_execute(self, chat: Chat, call: dict[str, Any], parent: str) -> dict[str, Any]:
        """One auto-executable call, run like `/v1/mcp/tool/execute`.

        Its `tool` message (a failure becomes an error text the model can read)."""
        call_id = str(call.get("id") or "")
        try:
            _, name, arguments = parse_tool_call(call)
        except ToolCallProblem as exc:
            return {"role": "tool", "tool_call_id": call_id, "content": f"Error: {exc}"}
        ctx = self._context(chat.caller, chat.headers, call_id, 0)
        payload = await self._run_tool(ctx, name, arguments, parent)
        if "error" in payload:
            return {"role": "tool", "tool_call_id": call_id, "content": f"Error: {payload['error'].get('message', '')}"}
        return tool_message(call_id, result_object(payload["result"]))

    # ------------------------------------------------------------------ explicit execution

    async def execute(self, caller: Caller, headers: dict[str, str], raw: bytes, send: Send) -> None:
        try:
            form, tool_call = as_tool_call(json_object(raw))
            call_id, name, arguments = parse_tool_call(tool_call)
        except ToolCallProblem as exc:
            raise Refused(400, str(exc), code="invalid_tool_call") from None
        parent = headers.get(_PARENT_HEADER) or self._parents.get(call_id)
        ctx = self._context(caller, headers, call_id, len(raw))
        await self._run_tool(ctx, name, arguments, parent, send, form)

    async def _run_tool(
        self,
        ctx: RequestContext,
        name: str,
        arguments: dict[str, Any],
        parent: str | None,
        send: Send | None = None,
        form: str = "chat",
    ) -> dict[str, Any]:
        """An MCP `tools/call` by the route `/mcp` takes.

        (Policy and the executor, or the codemode service for a Code Mode meta-tool), audited with
        `parent` as its parent; answered on `send` when given. The JSON-RPC answer."""
        call_id = str(ctx.request_id)
        audit: AuditEvent | None = None
        sent = 0
        try:
            payload, audit = await self.handlers.dispatch(ctx, "tools/call", {"name": name, "arguments": arguments})
            if send is None:
                return payload
            if "error" in payload:
                error = payload["error"]
                kind = (
                    error_kind((error.get("data") or {}).get("kind")) if isinstance(error.get("data"), dict) else None
                )
                status, kind_name = STATUS.get(kind, (502, "api_error")) if kind else (400, "invalid_request_error")
                message = str(error.get("message", ""))
                sent = await send_error(send, status, message, kind_name, kind.value if kind else None)
            else:
                result = result_object(payload["result"])
                answer = answer_in_form(form, tool_message(call_id, result), result.get("isError") is True, name)
                sent = await send_json(send, 200, answer)
            return payload
        finally:
            if audit is not None:
                audit.parent_id = parent[:64] if parent else None
                audit.response_bytes = sent
                self.emit_audit(audit)


def _max_cost(chat: Chat, body: dict[str, Any]) -> float:
    """What the request may cost at most; nothing when no price applies (no estimate worth making)."""
    prices = [d.price for d in chat.deployments] or [chat.price]
    if all(price is None for price in prices):
        return 0.0
    return max_cost_usd(prices, body, len(orjson.dumps(body)))


def _api_key(value: str | None) -> str | None:
    """Anthropic's clients send their key as `x-api-key`, Google's as `x-goog-api-key` (or `?key=`).

    A Bastion key there works as a bearer does."""
    return f"Bearer {value}" if value else None
