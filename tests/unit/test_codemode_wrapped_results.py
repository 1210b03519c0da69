"""Tool values in scripts: the SDKs' `{"result": ...}` wrapper is unwrapped, and stubs say what comes back."""

from __future__ import annotations

import json

import pytest

from services.codemode.metatool_answers import tool_value
from services.codemode.stubs import render_docs, render_file, returns
from services.codemode.toolset import Toolset, ToolSpec

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


def test_without_the_flag_the_lone_result_is_unwrapped_as_it_is():
    """The official SDK's MCPServer wraps a non-object return value without a flag: a script gets the
    value (a string stays a string: only FastMCP's flag says it may hold JSON)."""
    unflagged = {k: v for k, v in WRAPPED.items() if k != "x-fastmcp-wrap-result"}
    assert tool_value(_result({"result": "[1]"}), unflagged) == "[1]"
    assert tool_value(_result({"result": 42}), {"type": "object", "properties": {"result": {"type": "integer"}}}) == 42


def test_without_a_lone_result_schema_structured_content_is_returned_whole():
    assert tool_value(_result({"result": "[1]"})) == {"result": "[1]"}
    two = {"type": "object", "properties": {"result": {"type": "string"}, "more": {"type": "string"}}}
    assert tool_value(_result({"result": "[1]"}), two) == {"result": "[1]"}


def _spec(output: dict | None) -> ToolSpec:
    definition = {"name": "t", "inputSchema": {"type": "object"}} | ({"outputSchema": output} if output else {})
    return Toolset([("srv", definition)]).by_name["srv.t"]


def test_stubs_say_what_a_call_gives_the_script():
    assert returns(_spec({"type": "object", "properties": {"result": {"type": "integer"}}})) == "int"
    assert returns(_spec(WRAPPED)) == "str"
    assert returns(_spec(None)) == "Any"
    assert returns(_spec({"type": "object", "properties": {"a": {"type": "string"}}})) == '{"a?": str}'
    wide = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(9)}}
    assert returns(_spec(wide)) == "dict" and returns(_spec(wide), short=False).startswith('{"field_0?": str')
    listed = {"type": "object", "properties": {"result": {"type": "array", "items": wide}}}
    assert returns(_spec(listed)) == "list"
    counted = {"name": "t", "outputSchema": {"type": "object", "properties": {"result": {"type": "integer"}}}}
    assert "def t() -> int:" in render_file(Toolset([("srv", counted)]), "srv")
    assert "no output schema" in render_docs(_spec(None))


def test_a_flagged_schema_with_more_than_the_wrapper_is_not_unwrapped():
    assert tool_value(_result({"result": "[1]", "extra": 1}), WRAPPED) == {"result": "[1]", "extra": 1}
