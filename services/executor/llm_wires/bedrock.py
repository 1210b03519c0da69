"""AWS Bedrock's Converse and ConverseStream.

`POST <base_url>/model/<model>/converse[-stream]`, signed with SigV4 by botocore's signer with
credentials from botocore's standard chain (environment, shared files, SSO, container and instance
roles), or sent with a Bedrock API key as bearer when the provider sets `api_key`/`api_key_env`.

Translated: system and developer messages to `system`; text and base64 images (png, jpeg, gif,
webp); tool calls to `toolUse` blocks and tool messages to `toolResult` blocks; tools as `toolSpec`s
with their JSON schema, `tool_choice` (`none` cannot be said to Bedrock: tools stay offered);
`max_tokens`, `temperature`, `top_p`, `stop` in `inferenceConfig`. Answers: text and `toolUse`
blocks (reasoning blocks left out), stop reasons, usage with the cache's tokens. ConverseStream's
binary event-stream framing is decoded by botocore's own parser.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx2
import orjson

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import Usage
from libs.common.contracts.llm_config import ProviderConfig

from . import messages as chat
from .base import ChunkMaker, Outgoing, WireFailure, chat_completion, failure_of, token_count

__all__ = ["BedrockWire"]

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
_OVERLOADED = frozenset({"ServiceUnavailableException", "ModelNotReadyException"})


def _usage(usage: Any) -> Usage | None:
    """Bedrock's usage: `inputTokens` leaves the cache's tokens out, OpenAI's prompt counts them."""
    if not isinstance(usage, dict):
        return None
    count = functools.partial(token_count, usage)

    read = count("cacheReadInputTokens")
    prompt = count("inputTokens") + read + count("cacheWriteInputTokens")
    completion = count("outputTokens")
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion, cached_tokens=read
    )


class BedrockWire:
    def __init__(self, config: ProviderConfig, credential: str | None) -> None:
        base = httpx2.URL(config.base_url)
        self._base = base.copy_with(path=base.path.rstrip("/") + "/model")
        self.endpoint = self._base
        self._region = config.region or ""
        self._bearer = credential
        self._credentials: Any = None
        # each model's URL made once per wire (an httpx URL costs ~0.1 ms to build)
        self._url = functools.lru_cache(maxsize=256)(self._make_url)

    async def request(self, body: dict[str, Any], streaming: bool) -> Outgoing:
        url = self._url(str(body.get("model") or ""), streaming)
        content = orjson.dumps(translated(body))
        headers = {"content-type": "application/json"}
        if streaming:
            headers["accept"] = "application/vnd.amazon.eventstream"
        if self._bearer:
            return Outgoing(url, {**headers, "authorization": f"Bearer {self._bearer}"}, content)
        return Outgoing(url, await self._signed(url, headers, content), content)

    def _make_url(self, model: str, streaming: bool) -> httpx2.URL:
        operation = "converse-stream" if streaming else "converse"
        return self._base.copy_with(path=f"{self._base.path}/{quote(model, safe='')}/{operation}")

    async def _signed(self, url: httpx2.URL, headers: dict[str, str], content: bytes) -> dict[str, str]:
        from botocore.auth import SigV4Auth  # botocore loads in a quarter second: only for Bedrock
        from botocore.awsrequest import AWSRequest

        if self._credentials is None:
            self._credentials = await asyncio.to_thread(_chain_credentials)
        if self._credentials is None:
            raise WireFailure(
                ErrorKind.UPSTREAM_UNAVAILABLE,
                "no AWS credentials: botocore's chain (environment, shared files, roles) found none",
            )
        # a refresh of role credentials is a network call: off the event loop (only then: a thread
        # hop costs more than the signature)
        refreshing = getattr(self._credentials, "refresh_needed", None)
        if refreshing is not None and refreshing():
            frozen = await asyncio.to_thread(self._credentials.get_frozen_credentials)
        else:
            frozen = self._credentials.get_frozen_credentials()
        signed = AWSRequest(method="POST", url=str(url), data=content, headers=headers)
        SigV4Auth(frozen, "bedrock", self._region).add_auth(signed)
        return {name.lower(): str(value) for name, value in signed.headers.items()}

    def completion(self, payload: Any, model: str) -> dict[str, Any]:
        message = ((payload or {}).get("output") or {}).get("message") if isinstance(payload, dict) else None
        if not isinstance(message, dict):
            raise WireFailure(ErrorKind.UPSTREAM_ERROR, "the provider's answer is not a Converse response")
        texts, calls = [], []
        for block in message.get("content") or []:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif isinstance(block, dict) and isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                function = {"name": use.get("name") or "", "arguments": orjson.dumps(use.get("input") or {}).decode()}
                calls.append({"id": use.get("toolUseId") or "", "type": "function", "function": function})
        answer: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            answer["tool_calls"] = calls
        finish = STOP_REASONS.get(payload.get("stopReason") or "", "stop")
        request_id = str((payload.get("ResponseMetadata") or {}).get("RequestId") or "")
        return chat_completion(request_id, model, answer, finish, _usage(payload.get("usage")))

    def decoder(self, model: str) -> BedrockDecoder:
        return BedrockDecoder(model)

    def failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> WireFailure:
        error_type = (headers.get("x-amzn-errortype") or "").split(":", 1)[0]
        try:
            found = orjson.loads(body)
            detail = str(found.get("message") or found.get("Message") or body.decode(errors="replace"))
        except (orjson.JSONDecodeError, AttributeError):
            detail = body.decode(errors="replace")
        detail = f"{error_type}: {detail}" if error_type else detail
        return failure_of(status, detail, headers, error_type in _OVERLOADED)


def _chain_credentials() -> Any:
    import botocore.session

    return botocore.session.get_session().get_credentials()


def translated(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    request: dict[str, Any] = {
        "messages": [
            {"role": role, "content": blocks}
            for role, blocks in chat.turns(messages, "Bedrock", _blocks, _call, _result)
        ]
    }
    system = chat.system_text(messages)
    if system:
        request["system"] = [{"text": system}]
    inference: dict[str, Any] = {}
    if chat.max_tokens_of(body):
        inference["maxTokens"] = chat.max_tokens_of(body)
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
        if isinstance(body.get(ours), int | float):
            inference[theirs] = body[ours]
    if chat.stop_list(body):
        inference["stopSequences"] = chat.stop_list(body)
    if inference:
        request["inferenceConfig"] = inference
    functions = chat.functions_of(body)
    if functions:
        specs = [
            {
                "toolSpec": {
                    "name": f["name"],
                    "description": f["description"] or f["name"],
                    "inputSchema": {"json": f["parameters"]},
                }
            }
            for f in functions
        ]
        request["toolConfig"] = {"tools": specs}
        mode, name = chat.tool_choice_of(body)
        if mode == "required":
            request["toolConfig"]["toolChoice"] = {"any": {}}
        elif mode == "function":
            request["toolConfig"]["toolChoice"] = {"tool": {"name": name}}
    return request


def _call(call: dict[str, Any]) -> dict[str, Any]:
    name = (call.get("function") or {}).get("name") or ""
    return {"toolUse": {"toolUseId": call.get("id") or "", "name": name, "input": chat.arguments_of(call)}}


def _result(message: dict[str, Any]) -> dict[str, Any]:
    content = [{"text": chat.text_of(message.get("content"))}]
    return {"toolResult": {"toolUseId": message.get("tool_call_id") or "", "content": content}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in chat.parts_of(content):
        if part["type"] == "text":
            if part.get("text"):
                blocks.append({"text": part["text"]})
            continue
        image = chat.data_image((part.get("image_url") or {}).get("url") or "", "bedrock")
        if image.format not in _IMAGE_FORMATS:
            raise chat.refuse(f"Bedrock takes png, jpeg, gif and webp images, not {image.mime}")
        blocks.append({"image": {"format": image.format, "source": {"bytes": image.data}}})
    return blocks


class BedrockDecoder:
    """Bedrock ConverseStream's events and exceptions, framed as AWS event-stream messages, as OpenAI chunks.

    The events: `messageStart`, `contentBlockStart`/`Delta`/`Stop`, `messageStop`, `metadata`."""

    def __init__(self, model: str) -> None:
        from botocore.eventstream import EventStreamBuffer

        self._buffer = EventStreamBuffer()
        self._chunks = ChunkMaker("", model)
        self._tool_blocks: set[int] = set()
        self.finished = False
        self.failure: WireFailure | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        from botocore.eventstream import ParserError

        self._buffer.add_data(data)
        out: list[dict[str, Any]] = []
        try:
            for message in self._buffer:
                headers = message.headers
                payload = orjson.loads(message.payload) if message.payload else {}
                if headers.get(":message-type") == "event":
                    out += self._event(str(headers.get(":event-type")), payload if isinstance(payload, dict) else {})
                else:
                    self.failure = _stream_failure(headers, payload)
                    break
        except ParserError as exc:
            raise WireFailure(
                ErrorKind.UPSTREAM_ERROR, f"the event stream is malformed ({type(exc).__name__})"
            ) from None
        return out

    def _event(self, kind: str, event: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = self._chunks
        if kind == "messageStart":
            return [chunks.role()]
        if kind == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                self._tool_blocks.add(event.get("contentBlockIndex", -1))
                return [chunks.tool_start(use.get("toolUseId") or "", use.get("name") or "")]
            return []
        if kind == "contentBlockDelta":
            delta = event.get("delta") or {}
            if isinstance(delta.get("text"), str):
                return [chunks.text(delta["text"])]
            use = delta.get("toolUse")
            if isinstance(use, dict) and event.get("contentBlockIndex", -1) in self._tool_blocks:
                return [chunks.tool_arguments(use.get("input") or "")]
            return []  # reasoning deltas are not translated
        if kind == "messageStop":
            return [chunks.finish(STOP_REASONS.get(event.get("stopReason") or "", "stop"))]
        if kind == "metadata":
            self.finished = True
            return [chunks.usage(_usage(event.get("usage")) or Usage())]
        return []

    def end(self) -> list[dict[str, Any]]:
        return []


def _stream_failure(headers: dict[str, Any], payload: Any) -> WireFailure:
    """An exception (or error) message in the stream: throttling and unavailability are retryable."""
    name = str(headers.get(":exception-type") or headers.get(":error-code") or "error")
    detail = payload.get("message") if isinstance(payload, dict) else None
    detail = str(detail or headers.get(":error-message") or "the provider reported an error mid-stream")
    if name == "throttlingException":
        return WireFailure(ErrorKind.RATE_LIMITED, f"{name}: {detail}")
    if name in ("serviceUnavailableException", "modelNotReadyException"):
        return WireFailure(ErrorKind.UPSTREAM_UNAVAILABLE, f"{name}: {detail}")
    return WireFailure(ErrorKind.UPSTREAM_ERROR, f"{name}: {detail}")
