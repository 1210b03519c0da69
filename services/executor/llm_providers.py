"""Chat completions against OpenAI-compatible providers: one HTTP client and circuit breaker per provider.

Providers arrive through KV `bastion_llm` (a watch, like servers). A request is sent as the body
ingress built (tools injected); a streamed answer is relayed chunk by chunk to the request's stream
subject as it arrives, and summed up (text, tool calls, usage) in the final `LlmOutcome`.
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
from .upstreams.egress_guard import guarded_transport, proxied_hooks, refusal_in

__all__ = ["LlmProviders"]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]

_RETRY_BASE = 0.2
"""Seconds before the first retry of a transport error; doubled per retry."""
_MAX_ERROR_CHARS = 2000


class _Transport(Exception):
    """The provider could not be reached, the connection broke, or the stream ended unfinished."""


@dataclass
class _Provider:
    name: str
    config: ProviderConfig
    api_key: str | None
    client: httpx2.AsyncClient
    breaker: CircuitBreaker
    url: httpx2.URL
    """`<base_url>/chat/completions` (a query string in `base_url` kept after the path)."""
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
            self.usage = Usage.model_validate(chunk["usage"])
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
            api_key = self._key(record.config)
            url = _endpoint(record.config.base_url)
        except (ValidationError, SealingError, httpx2.InvalidURL) as exc:
            log.error("llm provider %s: unusable configuration (%s); not serving it", name, type(exc).__name__)
            await self.delete(name)
            return
        current = self._providers.get(name)
        if current is not None and current.config == record.config and current.api_key == api_key:
            return
        await self.delete(name)
        config = record.config
        self._providers[name] = _Provider(
            name=name,
            config=config,
            api_key=api_key,
            client=httpx2.AsyncClient(
                timeout=httpx2.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
                transport=guarded_transport(self._egress),
                event_hooks={"request": proxied_hooks(self._egress, blocking=False)},
            ),
            breaker=CircuitBreaker(config.failure_threshold, config.reset_timeout),
            url=url,
            label=_redact(f"provider {name!r} at {scrub_urls(str(url))}", api_key),
        )
        log.info("llm provider %s: serving %d model(s)", name, len(config.models))

    async def delete(self, name: str) -> None:
        provider = self._providers.pop(name, None)
        if provider is not None:
            await provider.client.aclose()

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
        except httpx2.TimeoutException:
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
        body = dict(request.body)
        streaming = body.get("stream") is True
        if streaming:
            # usage arrives in a last chunk only when asked for; audit and budgets need it
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = {"content-type": "application/json"}
        if provider.api_key:
            headers["authorization"] = f"Bearer {provider.api_key}"
        try:
            async with provider.client.stream(
                "POST", provider.url, content=orjson.dumps(body), headers=headers
            ) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode(errors="replace")
                    outcome = self._http_error(provider, request, response.status_code, text)
                    return _with_retry_after(outcome, response.headers.get("retry-after"))
                if not streaming:
                    payload = orjson.loads(await response.aread())
                    provider.breaker.success()
                    return _completed(request, payload)
                if not await self._relay(request, response, stream):
                    unfinished = "before the answer was complete (no finish reason, no [DONE])"
                    raise _Transport(f"{provider.label} ended its stream {unfinished}")
        except (httpx2.ConnectError, httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError) as exc:
            if stream.events:
                raise _Transport(
                    f"the connection to {provider.label} broke mid-answer ({type(exc).__name__})"
                ) from None
            refused = refusal_in(exc)  # the egress rules' reason says how an owner allows the host
            why = str(refused) if refused is not None else type(exc).__name__
            raise _Transport(f"{provider.label} is unreachable ({why})") from None
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

    async def _relay(self, request: LlmRequest, response: httpx2.Response, stream: _Stream) -> bool:
        """Publish each chunk as it comes; whether the stream ended as a finished answer does (with
        `[DONE]` or at least a finish reason), not just stopped."""
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, `event:` lines
            data = line[5:].strip()
            if data == "[DONE]":
                return True
            chunk = orjson.loads(data)
            if not isinstance(chunk, dict):
                continue
            stream.add(chunk)
            if request.stream is not None:
                event = StreamEvent(method=LLM_CHUNK, params=chunk)
                await self._publish(request.stream, event.model_dump_json().encode())
                stream.events += 1
        return stream.finish_reason is not None

    def _http_error(self, provider: _Provider, request: LlmRequest, status: int, text: str) -> LlmOutcome:
        if status >= 500 or status == 429:
            provider.breaker.failure()  # the provider is unwell or overloaded
        else:
            provider.breaker.success()  # it answered: the request was at fault
        try:
            detail = orjson.loads(text)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            detail = text
        message = f"{provider.label} answered HTTP {status}: {_redact(str(detail), provider.api_key)}"
        kind = ErrorKind.RATE_LIMITED if status == 429 else ErrorKind.UPSTREAM_ERROR
        outcome = _failed(request, kind, message[:_MAX_ERROR_CHARS])
        assert outcome.error is not None
        outcome.error.code = status
        # the provider's words may quote the prompt: the audit row's error column keeps only the status
        outcome.error.logged = f"{provider.label} answered HTTP {status}"
        return outcome


def _with_retry_after(outcome: LlmOutcome, header: str | None) -> LlmOutcome:
    """The provider's `Retry-After` (seconds) in the error's data, so no request is routed to it before."""
    try:
        seconds = float(header) if header else None
    except ValueError:
        seconds = None  # an HTTP date: rare from model providers; the route's cool-down applies
    if outcome.error is not None and seconds is not None and 0 <= seconds <= 86_400:
        outcome.error.data = {**(outcome.error.data or {}), "retry_after": seconds}
    return outcome


def _completed(request: LlmRequest, payload: Any) -> LlmOutcome:
    if not isinstance(payload, dict):
        return _failed(request, ErrorKind.UPSTREAM_ERROR, "the provider's answer is not a chat completion")
    usage = Usage.model_validate(payload["usage"]) if isinstance(payload.get("usage"), dict) else None
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


def _endpoint(base_url: str) -> httpx2.URL:
    url = httpx2.URL(base_url)
    return url.copy_with(path=url.path.rstrip("/") + "/chat/completions")


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text
