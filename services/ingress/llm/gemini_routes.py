"""Gemini's routes beside `generateContent`: the models a key may use, one of them, and `countTokens`.

`GET /v1beta/models` lists the models `GET /v1/models` lists, in Gemini's shape (`models/<id>`);
`POST /v1beta/models/<model>:countTokens` answers an **estimate** made without asking any provider,
as `/v1/messages/count_tokens` does."""

from __future__ import annotations

from typing import Any

from services.ingress.llm import gemini_in
from services.ingress.llm.translate import estimated_tokens
from services.ingress.llm.wire import Refused, json_object

__all__ = ["answer"]

_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


def _model(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"models/{entry['id']}",
        "baseModelId": entry["id"],
        "version": "bastion",
        "displayName": entry["id"],
        "description": f"Served through Bastion by {entry['owned_by']}",
        "supportedGenerationMethods": _METHODS,
    }


def answer(method: str, path: str, raw: bytes, listing: dict[str, Any]) -> dict[str, Any]:
    """The answer of a Gemini route other than a completion (`listing`: the caller's `/v1/models` list).

    Raises `Refused` for a route that is none of them."""
    served = {entry["id"]: entry for entry in listing["data"]}
    if method == "GET" and path in ("/v1beta/models", "/v1/models"):
        return {"models": [_model(entry) for entry in served.values()]}
    found = gemini_in.MODEL_ROUTE.match(path)
    if method == "GET" and path.startswith(("/v1beta/models/", "/v1/models/")):
        name = path.split("/models/", 1)[1]
        if name not in served:
            raise Refused(404, f"models/{name} is not found, or not served to this key (GET /v1beta/models lists them)")
        return _model(served[name])
    if method == "POST" and found is not None and found["method"] == "streamGenerateContent":
        raise Refused(400, "streamGenerateContent is served as server-sent events only: add ?alt=sse")
    if method == "POST" and found is not None and found["method"] == "countTokens":
        body = json_object(raw)
        inner = body.get("generateContentRequest")
        request: dict[str, Any] = inner if isinstance(inner, dict) else body
        return {"totalTokens": estimated_tokens(gemini_in.chat_request({**request, "model": found["model"]}))}
    raise Refused(404, f"no route {method} {path}", code="unknown_url")
