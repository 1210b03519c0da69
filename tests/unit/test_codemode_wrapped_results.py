"""Tool values in scripts: FastMCP's `{"result": ...}` wrapper (flagged `x-fastmcp-wrap-result`) is unwrapped."""

from __future__ import annotations

import json

import pytest

from services.codemode.answers import tool_value

pytestmark = pytest.mark.unit

WRAPPED = {"type": "object", "properties": {"result": {"type": "string"}}, "x-fastmcp-wrap-result": True}


def _result(structured: dict) -> dict:
    return {"structuredContent": structured, "content": [{"type": "text", "text": json.dumps(structured)}]}


def test_a_wrapped_json_string_becomes_the_value_it_holds():
    issues = {"total": 1, "issues": [{"key": "OPS-1"}]}
    assert tool_value(_result({"result": json.dumps(issues)}), WRAPPED) == issues


def test_a_wrapped_plain_string_or_value_is_returned_as_is():
    assert tool_value(_result({"result": "Issue OPS-1 deleted"}), WRAPPED) == "Issue OPS-1 deleted"
    assert tool_value(_result({"result": [1, 2]}), WRAPPED) == [1, 2]


def test_without_the_flag_structured_content_is_returned_whole():
    unflagged = {k: v for k, v in WRAPPED.items() if k != "x-fastmcp-wrap-result"}
    assert tool_value(_result({"result": "[1]"}), unflagged) == {"result": "[1]"}
    assert tool_value(_result({"result": "[1]"})) == {"result": "[1]"}


def test_a_flagged_schema_with_more_than_the_wrapper_is_not_unwrapped():
    assert tool_value(_result({"result": "[1]", "extra": 1}), WRAPPED) == {"result": "[1]", "extra": 1}
