"""Tool exposure patterns, argument validation messages and the compiled-validator cache."""

from __future__ import annotations

from typing import Any

import pytest

from services.executor.tools import MAX_VIOLATIONS, ExposurePolicy, ToolSet

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


@pytest.mark.parametrize(
    ("definition", "arguments", "message"),
    [
        (ECHO, {}, "arguments.text: required, but missing"),
        (ECHO, {"text": 3}, 'arguments.text: 3 is not of type "string"'),
        (ECHO, {"text": None}, 'arguments.text: null is not of type "string"'),  # JSON terms, not None
        (ECHO, {"text": True}, 'arguments.text: true is not of type "string"'),
        (NESTED, {"to": [{"email": "a@b.c"}, {}]}, "arguments.to[1].email: required, but missing"),
        (NESTED, {"to": [], "priority": "urgent"}, 'arguments.priority: "urgent" is not one of ["low","high"]'),
        (NESTED, {"to": [], "cc": []}, 'arguments: Additional properties are not allowed ("cc" was unexpected)'),
    ],
    ids=["missing", "wrong-type", "null", "true", "nested-index", "enum", "unexpected"],
)
def test_a_violation_names_where_and_what_in_json_terms(
    definition: dict[str, Any], arguments: dict[str, Any], message: str
) -> None:
    assert check(definition, arguments) == message


def test_every_violation_is_listed_not_just_the_first() -> None:
    message = check(NESTED, {"to": [{}, {"email": 5}], "priority": None, "cc": 1})
    assert message == (
        "4 problems with the arguments:\n"
        '- arguments.priority: null is not one of ["low","high"]\n'
        "- arguments.to[0].email: required, but missing\n"
        '- arguments.to[1].email: 5 is not of type "string"\n'
        '- arguments: Additional properties are not allowed ("cc" was unexpected)'
    )


def test_a_flood_of_violations_is_cut_with_its_count() -> None:
    many = tool("t", {"type": "object", "additionalProperties": {"type": "integer"}})
    message = check(many, {f"p{i:03}": "x" for i in range(MAX_VIOLATIONS + 5)})
    assert message is not None
    assert message.startswith(f"{MAX_VIOLATIONS + 5} problems with the arguments:\n")
    assert message.count("\n- ") == MAX_VIOLATIONS and message.endswith("… and 5 more")


def test_a_long_value_is_cut_in_the_message() -> None:
    message = check(ECHO, {"text": ["word"] * 100})
    assert message is not None and len(message) < 120 and "…" in message


def test_draft_07_schemas_use_draft_07_rules() -> None:
    # draft-07 ignores `prefixItems` (2020-12 only), so the second item is not checked there
    schema = {"type": "object", "properties": {"pair": {"prefixItems": [{"type": "string"}, {"type": "integer"}]}}}
    modern = tool("t", schema)
    legacy = tool("t", {"$schema": "http://json-schema.org/draft-07/schema#", **schema})
    assert check(modern, {"pair": ["a", "b"]}) == 'arguments.pair[1]: "b" is not of type "integer"'
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
    assert new.check_arguments("add", {"a": 1}) == 'arguments.a: 1 is not of type "string"'


def test_same_definitions_compares_the_catalog_content() -> None:
    a = ToolSet([ECHO], ExposurePolicy(None))
    assert a.same_definitions(ToolSet([dict(ECHO)], ExposurePolicy(None)))
    assert not a.same_definitions(ToolSet([ECHO, tool("x")], ExposurePolicy(None)))
    assert not a.same_definitions(None)
