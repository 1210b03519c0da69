"""Chat completions against model providers: one HTTP client, circuit breaker and wire per provider.

Providers arrive through KV `bastion_llm` (a watch, like servers). A request is the OpenAI body
ingress built (tools injected), sent through the provider's wire (`llm_wires`, chosen by its
`kind`: OpenAI-compatible as it is, or translated to Azure, Anthropic, Gemini, Vertex, Bedrock); a
streamed answer is relayed chunk by chunk, as OpenAI chunks, to the request's stream subject as it
arrives, and summed up (text, tool calls, usage) in the final `LlmOutcome`.
Transport errors (connection refused, reset, timed out before an answer, a stream ended before its
finish reason and `[DONE]`) are retried, but only before any chunk went to the agent: after that a
retry would repeat text it has already seen. Provider keys live only here (opened from the sealed
record or read from the executor's environment) and never appear in an outcome, a log line or an
error message; errors name the URL tried without its userinfo or query string. A provider is
reached as an upstream is, through the egress rules (`libs.common.contracts.egress`): its `base_url` may not be
loopback, private or a cloud's metadata address unless an owner allowed that host
(`egress.allow_private_hosts`), so whoever may point a provider somewhere cannot make the executor
send its key (or a variable of its environment) into the deployment's own network.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson
from opentelemetry.trace import Span
from pydantic import ValidationError

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LLM_CHUNK, LlmOutcome, LlmRequest, ProviderRecord, Usage, cost_usd
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.contracts.messages import GatewayError, StreamEvent
from libs.common.runtime import semconv, tracing
from libs.common.runtime.sealing import Sealer, SealingError
from libs.common.web.egress_rules import EgressRules

from .breaker import CircuitBreaker
from .error_mapping import scrub_urls
from .llm_http import Answer, Broken, ProviderHttp, Unreachable
from .llm_tokens import CredentialProblem, TokenAuthWire, access_tokens
from .llm_wires import Decoder, Wire, WireFailure, usage_of, wire_for

__all__ = ["LlmProviders"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]

_RETRY_BASE = 0.2
"""Seconds before the first retry of a transport error; doubled per retry."""
_MAX_ERROR_CHARS = 2000
_CHUNK_EVENT = StreamEvent(method=LLM_CHUNK).model_dump_json().encode().removesuffix(b',"params":null}') + b',"params":'
"""A chunk's `StreamEvent` up to its params: the chunk is encoded once, into the event, not as a model."""


class _Transport(Exception):
    """The provider could not be reached, the connection broke, or the stream ended unfinished."""


@dataclass
class _Provider:
    name: str
    config: ProviderConfig
    api_key: str | None
    http: ProviderHttp
    breaker: CircuitBreaker
    wire: Wire
    url: httpx2.URL
    """Where the wire sends (`<base_url>/chat/completions` for OpenAI's; a query string in `base_url` kept)."""
    label: str
    """"provider 'name' at <url>" for error messages: the URL without userinfo, query or key."""


@dataclass
class _Stream:
    """What the deltas of a streamed answer add up to."""

    content: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    events: int = 0

    def add(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.content.append(delta["content"])
            for part in delta.get("tool_calls") or []:
                call = self.tool_calls.setdefault(
                    int(part.get("index", 0)), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                call["id"] = part.get("id") or call["id"]
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""


def _wire(config: ProviderConfig, api_key: str | None, http: ProviderHttp) -> Wire:
    """The provider's wire; where its key is exchanged for access tokens, the tokens go as bearer, never the key."""
    tokens = access_tokens(config, api_key, http.post)
    if tokens is None:
        return wire_for(config, api_key)
    return TokenAuthWire(wire_for(config, None), tokens)


class LlmProviders:
    def __init__(self, sealer: Sealer, publish: Publish, egress: EgressRules | None = None) -> None:
        self._sealer = sealer
        self._publish = publish
        self._egress = egress or EgressRules()
        self._providers: dict[str, _Provider] = {}

    # ------------------------------------------------------------------ configuration (KV watch)

    async def put(self, name: str, value: bytes, _revision: int = 0) -> None:
        try:
            record = ProviderRecord.model_validate_json(value)
            config = record.config
            api_key = self._key(config)
            current = self._providers.get(name)
            if current is not None and current.config == config and current.api_key == api_key:
                return
            http = ProviderHttp(self._egress, config.timeout)
            wire = _wire(config, api_key, http)
        except CredentialProblem as exc:  # its message names what is wrong, never the credential
            log.error("llm provider %s: unusable credential (%s); not serving it", name, exc)
            await self.delete(name)
            return
        except (ValidationError, SealingError, httpx2.InvalidURL) as exc:
            log.error("llm provider %s: unusable configuration (%s); not serving it", name, type(exc).__name__)
            await self.delete(name)
            return
        await self.delete(name)
        self._providers[name] = _Provider(
            name=name,
            config=config,
            api_key=api_key,
            http=http,
            breaker=CircuitBreaker(config.failure_threshold, config.reset_timeout),
            wire=wire,
            url=wire.endpoint,
            label=_redact(f"provider {name!r} at {scrub_urls(str(wire.endpoint))}", api_key),
        )
        log.info("llm provider %s: serving %d model(s) over the %s wire", name, len(config.models), config.kind)

    async def delete(self, name: str) -> None:
        provider = self._providers.pop(name, None)
        if provider is not None:
            await provider.http.aclose()

    async def close(self) -> None:
        for name in list(self._providers):
            await self.delete(name)

    def _key(self, config: ProviderConfig) -> str | None:
        if config.api_key is not None:
            return self._sealer.open_value(config.api_key)
        if config.api_key_env is not None:
            return os.environ.get(config.api_key_env) or None
        return None

    # ------------------------------------------------------------------ requests

    async def run(self, request: LlmRequest) -> LlmOutcome:
        provider = self._providers.get(request.provider)
        # a routed request names its deployment's upstream model, which the provider need not list
        if provider is None or (not request.deployments and request.model not in provider.config.models):
            return _failed(request, ErrorKind.UPSTREAM_UNAVAILABLE, f"no provider serves model {request.model!r}")
        if not provider.breaker.allow():
            wait = provider.breaker.seconds_to_probe()
            return _failed(
                request,
                ErrorKind.CIRCUIT_OPEN,
                f"provider {provider.name!r} failed repeatedly; calls are refused for {wait:.0f}s more",
                retry_after=wait,
            )
        if not tracing.enabled():
            return await self._measured(None, provider, request)
        name, attributes = semconv.llm_started(provider.name, request.model, str(provider.url))
        with tracing.client_span("executor", name, attributes) as span:
            return await self._measured(span, provider, request)

    async def _measured(self, span: Span | None, provider: _Provider, request: LlmRequest) -> LlmOutcome:
        """The completion, recorded as `gen_ai.client.*` metrics (and on `span`) by `semconv`."""
        started = time.perf_counter()
        outcome = await self._sent(provider, request)
        usage, error = outcome.usage, outcome.error
        semconv.llm_finished(
            span,
            provider.name,
            request.model,
            None if error is None else error.kind.value,
            None if usage is None else usage.prompt_tokens,
            None if usage is None else usage.completion_tokens,
            outcome.finish_reason,
            time.perf_counter() - started,
        )
        return outcome

    async def _sent(self, provider: _Provider, request: LlmRequest) -> LlmOutcome:
        started = time.perf_counter()
        stream = _Stream()
        outcome: LlmOutcome
        try:
            outcome = await self._attempts(provider, request, stream)
        except _Transport as exc:
            provider.breaker.failure()
            outcome = _failed(request, ErrorKind.UPSTREAM_UNAVAILABLE, _redact(str(exc), provider.api_key))
        except TimeoutError:
            provider.breaker.failure()
            message = f"{provider.label} did not answer within {provider.config.timeout:g}s"
            outcome = _failed(request, ErrorKind.UPSTREAM_TIMEOUT, message)
        except BaseException:
            provider.breaker.release()
            raise
        outcome.upstream_ms = (time.perf_counter() - started) * 1000
        outcome.events = stream.events
        outcome.started_streaming = stream.events > 0
        price = provider.config.prices.get(request.model)
        if outcome.usage is not None:
            outcome.cost_usd = cost_usd(price, outcome.usage)
        return outcome

    async def _attempts(self, provider: _Provider, request: LlmRequest, stream: _Stream) -> LlmOutcome:
        # a routed request's retry is its next deployment (`llm_routing`), not the same one again
        retries = 0 if request.deployments else provider.config.retries
        for attempt in range(retries + 1):
            try:
                return await self._once(provider, request, stream)
            except _Transport as exc:
                if stream.events or attempt == retries or time.time() + _RETRY_BASE * 2**attempt >= request.deadline:
                    raise
                log.info("llm provider %s: %s; retrying (%d/%d)", provider.name, exc, attempt + 1, retries)
                await asyncio.sleep(_RETRY_BASE * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _once(self, provider: _Provider, request: LlmRequest, stream: _Stream) -> LlmOutcome:
        streaming = request.body.get("stream") is True
        try:
            outgoing = await provider.wire.request(request.body, streaming)
        except WireFailure as exc:  # what this provider's wire cannot say, or no credentials to sign with
            provider.breaker.release()
            return _failed(
                request, exc.kind, _redact(f"{provider.label} cannot take this request: {exc}", provider.api_key)
            )
        model = str(request.body.get("model") or request.model)
        try:
            async with provider.http.post(str(outgoing.url), outgoing.content, outgoing.headers) as response:
                if response.status >= 400:
                    failure = provider.wire.failure(response.status, await response.read(), response.headers)
                    return self._wire_error(provider, request, failure)
                if not streaming:
                    return self._answered(provider, request, orjson.loads(await response.read()), model)
                if not await self._relay(request, response, stream, provider.wire.decoder(model)):
                    unfinished = "before the answer was complete (no finish reason, no end of stream)"
                    raise _Transport(f"{provider.label} ended its stream {unfinished}")
        except WireFailure as exc:  # an error event mid-stream, or an answer not of the wire's shape
            return self._wire_error(provider, request, exc)
        except Broken as exc:
            if stream.events:
                raise _Transport(f"the connection to {provider.label} broke mid-answer ({exc})") from None
            raise _Transport(f"{provider.label} is unreachable ({exc})") from None
        except Unreachable as exc:
            raise _Transport(f"{provider.label} is unreachable ({exc})") from None
        except orjson.JSONDecodeError:
            provider.breaker.success()
            return _failed(request, ErrorKind.UPSTREAM_ERROR, f"{provider.label} answered with invalid JSON")
        provider.breaker.success()
        return LlmOutcome(
            id=request.id,
            usage=stream.usage,
            finish_reason=stream.finish_reason,
            content="".join(stream.content),
            tool_calls=[stream.tool_calls[i] for i in sorted(stream.tool_calls)],
        )

    def _answered(self, provider: _Provider, request: LlmRequest, payload: Any, model: str) -> LlmOutcome:
        provider.breaker.success()  # it answered, even if not in its wire's shape
        try:
            return _completed(request, provider.wire.completion(payload, model))
        except WireFailure as exc:
            return _failed(request, exc.kind, f"{provider.label} answered unexpectedly: {exc.detail}")

    async def _relay(self, request: LlmRequest, response: Answer, stream: _Stream, decoder: Decoder) -> bool:
        """Publish each chunk as the wire's decoder makes it.

        Whether the stream ended as a finished answer does (as its wire says one ends), not just stopped."""
        async for data in response.pieces():
            await self._publish_chunks(request, stream, decoder.feed(data))
            if decoder.failure is not None:
                raise decoder.failure
        await self._publish_chunks(request, stream, decoder.end())
        return decoder.finished

    async def _publish_chunks(self, request: LlmRequest, stream: _Stream, chunks: list[dict[str, Any]]) -> None:
        for chunk in chunks:
            stream.add(chunk)
            if request.stream is not None:
                await self._publish(request.stream, _CHUNK_EVENT + orjson.dumps(chunk) + b"}")
                stream.events += 1

    def _wire_error(self, provider: _Provider, request: LlmRequest, failure: WireFailure) -> LlmOutcome:
        if failure.retryable:
            provider.breaker.failure()  # the provider is unwell or overloaded
        else:
            provider.breaker.success()  # it answered: the request was at fault
        said = f"answered HTTP {failure.status}" if failure.status else "reported an error mid-stream"
        message = f"{provider.label} {said}: {_redact(failure.detail, provider.api_key)}"
        outcome = _failed(request, failure.kind, message[:_MAX_ERROR_CHARS], failure.retry_after)
        assert outcome.error is not None
        outcome.error.code = failure.status
        if failure.retryable:  # another attempt, here or on another deployment, may succeed
            outcome.error.data = {**(outcome.error.data or {}), "retryable": True}
        # the provider's words may quote the prompt: the audit row's error column keeps only the status
        outcome.error.logged = f"{provider.label} {said}"
        return outcome


def _completed(request: LlmRequest, payload: Any) -> LlmOutcome:
    if not isinstance(payload, dict):
        return _failed(request, ErrorKind.UPSTREAM_ERROR, "the provider's answer is not a chat completion")
    usage = usage_of(payload.get("usage"))
    choices = payload.get("choices") or [{}]
    message = choices[0].get("message") or {} if isinstance(choices[0], dict) else {}
    return LlmOutcome(
        id=request.id,
        response=payload,
        usage=usage,
        finish_reason=choices[0].get("finish_reason") if isinstance(choices[0], dict) else None,
        tool_calls=message.get("tool_calls") or [],
    )


def _failed(request: LlmRequest, kind: ErrorKind, message: str, retry_after: float | None = None) -> LlmOutcome:
    data = {"retry_after": round(retry_after, 3)} if retry_after is not None else None
    return LlmOutcome(id=request.id, error=GatewayError(kind=kind, message=message, data=data))


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text
