"""AWS Bedrock's Converse wire as AWS speaks it: `POST /model/<modelId>/converse` and
`/converse-stream` (AWS event-stream frames), SigV4-signed for service `bedrock`.

Each request's signature is recomputed with botocore's signer from the test's credentials and the
request as received (`x-amz-date`, the signed headers, the body): a wrong region, service, path,
body or key is refused as AWS refuses it. Requests are checked against the `bedrock-runtime`
service model botocore ships (`ParamValidator`), and the conversation as Converse checks it.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ParamValidationError
from botocore.session import get_session
from botocore.validate import ParamValidator

from .base import Answer, Call, Reply, WireSpeaker, json_answer, turn_problem

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "BedrockSpeaker", "frame"]

ACCESS_KEY = "AKIAFAKEBEDROCKTEST01"
SECRET_KEY = "bedrock-secret-access-key-never-shown-0123"
REGION = "eu-west-3"
_ROUTE = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
}


@functools.cache
def _input_shape(operation: str) -> Any:
    return get_session().get_service_model("bedrock-runtime").operation_model(operation).input_shape


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths, CRC), string headers, payload, message CRC."""
    encoded = b"".join(
        len(name).to_bytes(1, "big") + name.encode() + b"\x07" + len(value.encode()).to_bytes(2, "big") + value.encode()
        for name, value in headers.items()
    )
    prelude = (16 + len(encoded) + len(payload)).to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps({**payload, "p": "abcdefgh"}))  # AWS pads events with `p`


def signature_problem(path: str, headers: dict[str, str], raw: bytes) -> str | None:
    found = _AUTH.match(headers.get("authorization", ""))
    if found is None:
        return "Missing Authentication Token"
    if found["key"] != ACCESS_KEY:
        return "The security token included in the request is invalid."
    if found["region"] != REGION or found["service"] != "bedrock":
        scope = f"{found['region']}/{found['service']}"
        return f"Credential should be scoped to region {REGION} and service bedrock, not {scope}"
    signed = found["signed"].split(";")
    if "x-amz-date" not in signed or any(name not in headers for name in signed):
        return "The request signature does not cover x-amz-date, or names headers the request lacks"
    request = AWSRequest(
        method="POST", url=f"http://{headers['host']}{path}", data=raw, headers={h: headers[h] for h in signed}
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", REGION)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if expected != found["signature"]:
        return "The request signature we calculated does not match the signature you provided."
    return None


def conversation_problem(messages: list[dict[str, Any]]) -> str | None:
    return turn_problem(
        messages,
        lambda blocks: {b["toolUse"]["toolUseId"] for b in blocks if "toolUse" in b},
        lambda blocks: {b["toolResult"]["toolUseId"] for b in blocks if "toolResult" in b},
        "A conversation must alternate between user and assistant roles (messages.{i})",
        "The number of toolResult blocks in messages.{i} exceeds or falls short of the toolUse blocks "
        "of the previous turn.",
    )


class BedrockSpeaker(WireSpeaker):
    prefix = ""
    overload_event = frame(
        {
            ":exception-type": "serviceUnavailableException",
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps({"message": "Bedrock is unable to process your request."}),
    )

    def route(self, path: str, body: dict[str, Any]) -> tuple[str, bool] | None:
        found = _ROUTE.match(urlsplit(path).path)
        return None if found is None else (unquote(found["model"]), found["op"] == "converse-stream")

    @staticmethod
    def _error(status: int, message: str) -> Answer:
        kind = _ERRORS.get(status, "InternalServerException")
        return json_answer(
            status, {"message": message}, {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/"}
        )

    def refusal(self, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any]) -> Answer | None:
        # a Bedrock API key goes as bearer; without one, requests are SigV4-signed
        bearer = headers.get("authorization", "").startswith("Bearer ")
        problem = signature_problem(path, headers, raw) if not bearer else None
        if bearer and headers.get("authorization") != f"Bearer {self._key}":
            problem = "Invalid API Key format: Must start with pre-defined prefix"
        if problem is not None:
            return self._error(403, problem)
        model, streaming = self.route(path, body) or ("", False)
        try:
            ParamValidator().validate(
                {**body, "modelId": model}, _input_shape("ConverseStream" if streaming else "Converse")
            )
        except ParamValidationError as exc:
            return self._error(400, str(exc).splitlines()[0])
        problem = conversation_problem(body["messages"])
        return None if problem is None else self._error(400, problem)

    def call_ids(self, count: int) -> list[str]:
        return [f"tooluse_{next(self._ids):022d}" for _ in range(count)]

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        prompt, completion = reply.usage
        usage = {"inputTokens": prompt - reply.cached, "outputTokens": completion, "totalTokens": prompt + completion}
        if reply.cached:
            usage["cacheReadInputTokens"] = reply.cached
        return usage

    def completion(self, reply: Reply, calls: list[Call], model: str) -> Answer:
        content: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
        content += [{"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in calls]
        return json_answer(
            200,
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": "tool_use" if calls else "end_turn",
                "usage": self._usage(reply),
                "metrics": {"latencyMs": 42},
            },
        )

    def stream(self, reply: Reply, calls: list[Call], model: str, body: dict[str, Any], whole: bool) -> Answer:
        frames = [_event("messageStart", {"role": "assistant"})]
        text = reply.text or ""
        for i in range(0, len(text), 4):
            frames.append(_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text[i : i + 4]}}))
        if whole:
            frames += self._tail(reply, calls, 1 if text else 0)
        return Answer(200, "application/vnd.amazon.eventstream", frames, streamed=True)

    def _tail(self, reply: Reply, calls: list[Call], first: int) -> list[bytes]:
        frames = [_event("contentBlockStop", {"contentBlockIndex": 0})] if first else []
        for index, call in enumerate(calls, start=first):
            use = {"toolUseId": call.id, "name": call.name}
            frames.append(_event("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": use}}))
            arguments = orjson.dumps(call.arguments).decode()
            for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
                frames.append(_event("contentBlockDelta", delta))
            frames.append(_event("contentBlockStop", {"contentBlockIndex": index}))
        frames.append(_event("messageStop", {"stopReason": "tool_use" if calls else "end_turn"}))
        frames.append(_event("metadata", {"usage": self._usage(reply), "metrics": {"latencyMs": 42}}))
        return frames

    def error(self, status: int, message: str, retry_after: float | None) -> Answer:
        return self._error(status, message)

    def overload(self) -> Answer:
        return self._error(503, "Bedrock is unable to process your request.")

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        return [tool["toolSpec"]["name"] for tool in (body.get("toolConfig") or {}).get("tools", [])]

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        return [
            block["toolResult"]["content"][0]["text"]
            for message in body.get("messages", [])
            for block in message["content"]
            if "toolResult" in block
        ]
