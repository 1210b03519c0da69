"""Tool exposure patterns, argument validation messages and the compiled-validator cache."""

from __future__ import annotations

from typing import Any

import pytest

from bastion_executor.tools import ExposurePolicy, ToolSet

pytestmark = pytest.mark.unit


def tool(name: str, schema: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {"name": name, **extra}
    if schema is not None:
        definition["inputSchema"] = schema
    return definition


ECHO = tool("echo", {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
NESTED = tool(
    "send",
    {
        "type": "object",
        "properties": {
            "to": {
                "type": "array",
                "items": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
            },
            "priority": {"enum": ["low", "high"]},
        },
        "required": ["to"],
        "additionalProperties": False,
    },
)


# ---------------------------------------------------------------- exposure


def test_no_patterns_expose_everything() -> None:
    assert ExposurePolicy(None).allows("anything")


def test_patterns_are_fnmatch_and_case_sensitive() -> None:
    policy = ExposurePolicy(["read_*", "search", "get_?"])
    assert policy.allows("read_file") and policy.allows("search") and policy.allows("get_x")
    assert not policy.allows("write_file")
    assert not policy.allows("Search")
    assert not policy.allows("get_xy")
    assert not policy.allows("research")


def test_an_empty_pattern_list_exposes_nothing() -> None:
    assert not ExposurePolicy([]).allows("echo")


def test_toolset_keeps_only_exposed_tools_in_listing_order() -> None:
    tools = ToolSet([tool("b"), tool("a"), tool("c")], ExposurePolicy(["a", "b"]))
    assert tools.names() == ["b", "a"]
    assert "c" not in tools
    assert [(t.tool, t.definition) for t in tools.catalog()] == [("b", {"name": "b"}), ("a", {"name": "a"})]


def test_toolset_skips_nameless_definitions() -> None:
    assert ToolSet([{"description": "no name"}, tool("ok")], ExposurePolicy(None)).names() == ["ok"]


# ---------------------------------------------------------------- validation


def check(definition: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    tools = ToolSet([definition], ExposurePolicy(None))
    return tools.check_arguments(definition["name"], arguments)


def test_valid_arguments_pass() -> None:
    assert check(ECHO, {"text": "hi"}) is None


def test_missing_property_names_it_in_the_path() -> None:
    assert check(ECHO, {}) == "arguments.text: 'text' is a required property"


def test_wrong_type_names_the_field() -> None:
    assert check(ECHO, {"text": 3}) == "arguments.text: 3 is not of type 'string'"


def test_nested_paths_use_dots_and_indexes() -> None:
    assert check(NESTED, {"to": [{"email": "a@b.c"}, {}]}) == "arguments.to[1].email: 'email' is a required property"
    message = check(NESTED, {"to": [], "priority": "urgent"})
    assert message == "arguments.priority: 'urgent' is not one of ['low', 'high']"


def test_unexpected_property_is_reported_at_the_top() -> None:
    message = check(NESTED, {"to": [], "cc": []})
    assert message is not None and message.startswith("arguments: ") and "'cc' was unexpected" in message


def test_draft_07_schemas_use_draft_07_rules() -> None:
    # draft-07 ignores `prefixItems` (2020-12 only), so the second item is not checked there
    schema = {"type": "object", "properties": {"pair": {"prefixItems": [{"type": "string"}, {"type": "integer"}]}}}
    modern = tool("t", schema)
    legacy = tool("t", {"$schema": "http://json-schema.org/draft-07/schema#", **schema})
    assert check(modern, {"pair": ["a", "b"]}) == "arguments.pair[1]: 'b' is not of type 'integer'"
    assert check(legacy, {"pair": ["a", "b"]}) is None


def test_an_invalid_schema_lets_the_upstream_judge() -> None:
    assert check(tool("t", {"type": "no-such-type"}), {"x": 1}) is None


def test_an_unresolvable_ref_lets_the_upstream_judge() -> None:
    schema = {"type": "object", "properties": {"x": {"$ref": "https://example.com/remote.json"}}}
    assert check(tool("t", schema), {"x": 1}) is None


def test_a_tool_without_schema_accepts_anything() -> None:
    assert check(tool("t"), {"anything": [1, 2]}) is None


# ---------------------------------------------------------------- validator cache


def validator_of(tools: ToolSet, name: str) -> object:
    return tools._tools[name].validator


def test_validator_is_compiled_on_first_use_and_then_kept() -> None:
    tools = ToolSet([ECHO], ExposurePolicy(None))
    assert validator_of(tools, "echo") is None
    tools.check_arguments("echo", {"text": "a"})
    first = validator_of(tools, "echo")
    tools.check_arguments("echo", {"text": "b"})
    assert first is not None and validator_of(tools, "echo") is first


def test_relisting_keeps_validators_of_unchanged_schemas_only() -> None:
    changed = tool("add", {"type": "object", "properties": {"a": {"type": "integer"}}})
    old = ToolSet([ECHO, changed], ExposurePolicy(None))
    old.check_arguments("echo", {"text": "x"})
    old.check_arguments("add", {"a": 1})
    # same schema with keys in another order: still the same schema
    reordered = tool("echo", {"required": ["text"], "properties": {"text": {"type": "string"}}, "type": "object"})
    new_add = tool("add", {"type": "object", "properties": {"a": {"type": "string"}}})
    new = ToolSet([reordered, new_add], ExposurePolicy(None), previous=old)
    assert validator_of(new, "echo") is validator_of(old, "echo")
    assert validator_of(new, "add") is None
    assert new.check_arguments("add", {"a": 1}) == "arguments.a: 1 is not of type 'string'"


def test_same_definitions_compares_the_catalog_content() -> None:
    a = ToolSet([ECHO], ExposurePolicy(None))
    assert a.same_definitions(ToolSet([dict(ECHO)], ExposurePolicy(None)))
    assert not a.same_definitions(ToolSet([ECHO, tool("x")], ExposurePolicy(None)))
    assert not a.same_definitions(None)
