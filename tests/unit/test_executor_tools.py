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


def check(definition: dict[str, Any], arguments: dict[str, Any], values: bool = False) -> str | None:
    tools = ToolSet([definition], ExposurePolicy(None))
    return tools.check_arguments(definition["name"], arguments, values)


def test_valid_arguments_pass() -> None:
    assert check(ECHO, {"text": "hi"}) is None


@pytest.mark.parametrize(
    ("definition", "arguments", "message"),
    [
        (ECHO, {}, "arguments.text: required, but missing"),
        (ECHO, {"text": 3}, 'arguments.text: must be of type "string"'),
        (ECHO, {"text": None}, 'arguments.text: must be of type "string"'),
        (NESTED, {"to": [{"email": "a@b.c"}, {}]}, "arguments.to[1].email: required, but missing"),
        (NESTED, {"to": [], "priority": "urgent"}, 'arguments.priority: must be one of ["low","high"]'),
        (NESTED, {"to": [], "cc": []}, "arguments.cc: not allowed (the schema lists no such property)"),
    ],
    ids=["missing", "wrong-type", "null", "nested-index", "enum", "unexpected"],
)
def test_a_violation_names_the_field_and_the_rule(
    definition: dict[str, Any], arguments: dict[str, Any], message: str
) -> None:
    assert check(definition, arguments) == message


SECRET = "ghp_9f8e7d6c5b4a39281706f5e4d3c2b1a0zzzz"


@pytest.mark.parametrize(
    ("schema", "rule"),
    [
        ({"type": "integer"}, 'must be of type "integer"'),
        ({"type": ["integer", "null"]}, 'must be of type "integer" or "null"'),
        ({"enum": ["a", "b"]}, 'must be one of ["a","b"]'),
        ({"const": "x"}, 'must be exactly "x"'),
        ({"maxLength": 8}, "must be at most 8 characters long"),
        ({"minLength": 80}, "must be at least 80 characters long"),
        ({"pattern": "^[0-9]+$"}, 'must match the pattern "^[0-9]+$"'),
        ({"not": {"type": "string"}}, 'must not match the schema its "not" names'),
        (
            {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
            "must match at least one of the 2 schemas its anyOf allows",
        ),
        ({"oneOf": [{"type": "string"}, {"minLength": 1}]}, "must match exactly one of the 2 schemas its oneOf allows"),
        ({"type": "array", "maxItems": 0}, 'must be of type "array"'),
        (False, "arguments: not allowed here (the schema accepts no value)"),  # jsonschema keeps no path here
        ({"dependentSchemas": {"x": False}, "type": "string"}, None),
    ],
)
def test_no_rule_quotes_the_value_it_refused(schema: Any, rule: str | None) -> None:
    definition = tool("t", {"type": "object", "properties": {"token": schema}})
    message = check(definition, {"token": SECRET})
    expected = rule if rule is None or rule.startswith("arguments") else f"arguments.token: {rule}"
    assert message == expected
    assert SECRET[:12] not in (message or "")


def test_a_secret_in_a_property_name_refused_by_property_names_is_not_quoted() -> None:
    definition = tool("t", {"type": "object", "propertyNames": {"maxLength": 8}})
    message = check(definition, {SECRET: 1})
    assert message == "arguments: must be at most 8 characters long" and SECRET[:12] not in message


def test_the_values_are_quoted_only_when_asked_in_json_terms() -> None:
    assert check(ECHO, {"text": 3}, values=True) == 'arguments.text: 3 is not of type "string"'
    assert check(ECHO, {"text": None}, values=True) == 'arguments.text: null is not of type "string"'
    assert check(ECHO, {"text": True}, values=True) == 'arguments.text: true is not of type "string"'
    priority = check(NESTED, {"to": [], "priority": "urgent"}, values=True)
    assert priority == 'arguments.priority: "urgent" is not one of ["low","high"]'
    extra = check(NESTED, {"to": [], "cc": []}, values=True)
    assert extra == 'arguments: Additional properties are not allowed ("cc" was unexpected)'
    long = check(ECHO, {"text": ["word"] * 100}, values=True)
    assert long is not None and len(long) < 120 and "…" in long


def test_every_violation_is_listed_not_just_the_first() -> None:
    message = check(NESTED, {"to": [{}, {"email": 5}], "priority": None, "cc": 1})
    assert message == (
        "4 problems with the arguments:\n"
        "- arguments.cc: not allowed (the schema lists no such property)\n"
        '- arguments.priority: must be one of ["low","high"]\n'
        "- arguments.to[0].email: required, but missing\n"
        '- arguments.to[1].email: must be of type "string"'
    )


def test_a_flood_of_violations_is_cut_with_its_count() -> None:
    many = tool("t", {"type": "object", "additionalProperties": {"type": "integer"}})
    message = check(many, {f"p{i:03}": "x" for i in range(MAX_VIOLATIONS + 5)})
    assert message is not None
    assert message.startswith(f"{MAX_VIOLATIONS + 5} problems with the arguments:\n")
    assert message.count("\n- ") == MAX_VIOLATIONS and message.endswith("… and 5 more")


def test_draft_07_schemas_use_draft_07_rules() -> None:
    # draft-07 ignores `prefixItems` (2020-12 only), so the second item is not checked there
    schema = {"type": "object", "properties": {"pair": {"prefixItems": [{"type": "string"}, {"type": "integer"}]}}}
    modern = tool("t", schema)
    legacy = tool("t", {"$schema": "http://json-schema.org/draft-07/schema#", **schema})
    assert check(modern, {"pair": ["a", "b"]}) == 'arguments.pair[1]: must be of type "integer"'
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
    assert new.check_arguments("add", {"a": 1}) == 'arguments.a: must be of type "string"'


def test_same_definitions_compares_the_catalog_content() -> None:
    a = ToolSet([ECHO], ExposurePolicy(None))
    assert a.same_definitions(ToolSet([dict(ECHO)], ExposurePolicy(None)))
    assert not a.same_definitions(ToolSet([ECHO, tool("x")], ExposurePolicy(None)))
    assert not a.same_definitions(None)
