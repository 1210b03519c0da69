"""What a lean call does with an upstream's JSON-RPC answer: its result or its error.

And the checks the SDK's `ClientSession.send_request` makes on a result before handing it over (shared by
the HTTP and stdio links)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mcp.client.session import _clamp_inbound_ttl, _later_revision_fields
from mcp.shared.exceptions import MCPError
from mcp_types import PARSE_ERROR
from mcp_types import methods as _methods
from pydantic import TypeAdapter

__all__ = ["answer_of", "checked", "error_of", "result_checks"]


def answer_of(message: Any) -> dict[str, Any]:
    """The result of a JSON-RPC response, or the MCPError of an error response."""
    if isinstance(message, dict):
        if isinstance(error := message.get("error"), dict):
            raise error_of(error)
        if isinstance(result := message.get("result"), dict):
            return result
    raise MCPError(PARSE_ERROR, "Failed to parse JSON response: not a JSON-RPC response")


def error_of(error: dict[str, Any]) -> MCPError:
    """The MCPError of a JSON-RPC error object (a malformed one: a parse error)."""
    code, text = error.get("code"), error.get("message")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(text, str):
        return MCPError(PARSE_ERROR, "Failed to parse JSON response: malformed JSON-RPC error")
    return MCPError(code, text, error.get("data"))


def checked(method: str, version: str, raw: dict[str, Any]) -> dict[str, Any]:
    """What `ClientSession.send_request` does to a result before handing it over."""
    if "ttlMs" in raw:  # all the clamp looks at: most results have none, and skip its three calls
        _clamp_inbound_ttl(raw)
    if (validate := _result_validator(method, version)) is not None:
        validate(raw, by_name=False)
    if not (foreign := _later_revision_fields(method, version)).isdisjoint(raw):
        raw = {key: value for key, value in raw.items() if key not in foreign}
    return raw


def result_checks(method: str, version: str) -> tuple[Callable[..., Any] | None, frozenset[str]]:
    """`checked`'s validator and the later revisions' fields it drops, for a caller that keeps them.

    (`lean_plan`): a result with no `ttlMs` and none of those fields is only validated."""
    return _result_validator(method, version), _later_revision_fields(method, version)


@functools.cache
def _result_validator(method: str, version: str) -> Callable[..., Any] | None:
    """The validator `mcp_types.methods.validate_server_result` uses for `method`'s result in `version`.

    (None when that version's surface has no such result: nothing to check). Called directly because that
    function also dumps what it validated, which a check throws away (~5 µs of a tools/call result's
    ~13); its core validator's method, as the adapter's own `validate_python` only adds a call around it."""
    target = _methods.SERVER_RESULTS.get((method, version))
    return None if target is None else TypeAdapter(target).validator.validate_python  # type: ignore[arg-type]
