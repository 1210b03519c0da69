"""The compiled argument predicate (`schema_fastpath`) agrees with jsonschema on every schema it
compiles, and declines the ones it does not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, Draft7Validator, Draft202012Validator
from jsonschema.validators import validator_for

from services.executor.schema_fastpath import compile_predicate
from services.executor.tools import ArgumentsValidator

pytestmark = pytest.mark.unit

_NAMES = st.sampled_from(["a", "b", "text", "n"])
_WORDS = st.sampled_from(["", "x", "low", "high", "hello", "1"])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([0.0, 1.0, 2.5, -1.0, 1e300]) | _WORDS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_NAMES, inner, max_size=4),
    max_leaves=12,
)

_TYPE_NAMES = st.sampled_from(["object", "array", "string", "integer", "number", "boolean", "null"])


def _schemas(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyword = st.one_of(
        st.tuples(st.just("type"), _TYPE_NAMES | st.lists(_TYPE_NAMES, min_size=1, max_size=3, unique=True)),
        st.tuples(st.just("properties"), st.dictionaries(_NAMES, inner, max_size=3)),
        st.tuples(st.just("additionalProperties"), inner),
        st.tuples(st.just("required"), st.lists(_NAMES, max_size=3, unique=True)),
        st.tuples(st.just("items"), inner),
        st.tuples(st.just("enum"), st.lists(_WORDS, min_size=1, max_size=3, unique=True)),
        st.tuples(st.just("const"), _WORDS),
        st.tuples(st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]), _BOUNDS),
        st.tuples(st.sampled_from(_SIZES), st.integers(0, 3)),
        st.tuples(st.sampled_from(["anyOf", "allOf", "oneOf"]), st.lists(inner, min_size=1, max_size=3)),
        st.tuples(st.sampled_from(["title", "format", "x-vendor"]), st.just("email")),
    )
    # few keywords per schema: with many, nearly every instance is invalid and agreement proves little
    return st.booleans() | st.lists(keyword, max_size=3).map(dict)


_BOUNDS = st.integers(-3, 3) | st.sampled_from([2.5, -0.5])
_SIZES = ["minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"]


schemas = st.recursive(st.booleans() | st.just({}), _schemas, max_leaves=6)


@settings(max_examples=1500, deadline=None)
@given(
    schema=schemas,
    instance=json_values,
    draft=st.sampled_from(["https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-07/schema#"]),
)
def test_the_predicate_agrees_with_jsonschema(schema: Any, instance: Any, draft: str) -> None:
    if isinstance(schema, dict):
        schema = {"$schema": draft, **schema}
    cls = validator_for(schema, default=Draft202012Validator)
    predicate = compile_predicate(schema, cls)
    assert predicate is not None  # every keyword generated here is compiled
    assert predicate(instance) is cls(schema).is_valid(instance)


_EDGES: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "integer"}, [1, 1.0, 1.5, True, "1", None]),
    ({"type": "number"}, [1, 1.5, True, "1"]),
    ({"type": "boolean"}, [True, 0, None]),
    ({"type": ["string", "null"]}, ["a", None, 0]),
    ({"exclusiveMinimum": 1}, [1, 1.0, 2, 0, True, "0"]),
    ({"exclusiveMaximum": 1}, [1, 0.5, 2]),
    ({"minimum": 1, "maximum": 2}, [1, 2, 2.5, 0.5, False]),
    ({"minLength": 2, "maxLength": 3}, ["a", "ab", "abcd", "é✓", 12345]),
    ({"minItems": 1, "maxItems": 2}, [[], [1], [1, 2, 3], "ab"]),
    ({"minProperties": 1, "maxProperties": 1}, [{}, {"a": 1}, {"a": 1, "b": 2}, []]),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, [1, 1.5, "a"]),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, [1, "a", None]),
    ({"allOf": [{"minimum": 1}, {"maximum": 2}]}, [1, 3]),
    ({"enum": ["a", "b"]}, ["a", "c", 1, None]),
    ({"const": "a"}, ["a", "b", 0]),
    ({"required": ["a", "b"]}, [{"a": 1}, {"a": 1, "b": 2}, [1], "a"]),
    (
        {"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
        [{"a": "x", "b": 1}, {"a": "x", "b": "y"}, {"a": 1}, {"b": 1.0}],
    ),
    ({"additionalProperties": False, "properties": {"a": True}}, [{"a": 1}, {"b": 1}, {}]),
    ({"items": {"type": "string"}}, [["a"], ["a", 1], [], {"0": 1}]),
    ({"items": False}, [[], [1]]),
]


@pytest.mark.parametrize(("schema", "instances"), _EDGES)
def test_the_predicate_agrees_with_jsonschema_at_the_edges(schema: dict[str, Any], instances: list[Any]) -> None:
    for cls in (Draft7Validator, Draft202012Validator):
        predicate = compile_predicate(schema, cls)
        assert predicate is not None
        assert [predicate(i) for i in instances] == [cls(schema).is_valid(i) for i in instances]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": "string"}}},
        {"type": "string", "pattern": "^a"},
        {"if": {"type": "string"}, "then": {"minLength": 2}},
        {"enum": [1, "a"]},  # 1 == 1.0 == True questions stay with jsonschema
        {"type": "array", "uniqueItems": True},
        {"type": "object", "patternProperties": {"^x": {}}, "additionalProperties": False},
        {"type": "currency"},
    ],
)
def test_what_is_not_compiled_is_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_predicate(schema, Draft202012Validator) is None


def test_draft_4_is_left_to_jsonschema() -> None:
    # draft 4: an integer is never 1.0, exclusiveMinimum is a boolean
    assert compile_predicate({"type": "integer"}, Draft4Validator) is None
    assert compile_predicate({"type": "integer"}, Draft7Validator) is not None


def test_a_refusal_is_worded_by_jsonschema_when_the_predicate_says_no() -> None:
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    validator = ArgumentsValidator(schema, b"", "echo")
    assert validator.check({"text": "hi"}) is None
    assert validator.check({"text": 3}) == 'arguments.text: must be of type "string"'
    assert validator.check({"text": 3}, values=True) == 'arguments.text: 3 is not of type "string"'
    assert validator.check({}) == "arguments.text: required, but missing"
