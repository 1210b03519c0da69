"""A call held to the approved definition: arguments against the approved `inputSchema`, reads
against the quarantined resource templates (`services/executor/pinning/pinned_calls.py`)."""

from __future__ import annotations

import pytest

from services.executor.pinning.pinned_calls import QuarantinedTemplates, argument_problem

pytestmark = pytest.mark.unit

APPROVED = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "retries": {"default": 3}},
    "required": ["a", "b"],
}


def test_a_property_only_a_changed_definition_has_is_refused_naming_it() -> None:
    problem = argument_problem("add", APPROVED, {"a": 1, "b": 2, "note": "~/.ssh/id_rsa"})
    assert problem is not None and "'note'" in problem and "approved definition" in problem
    assert "id_rsa" not in problem, "the refusal names the property, never its value"


def test_what_the_served_copy_checks_is_left_to_it() -> None:
    """Types and `required` are the executor's argument check's (`tools.ToolSet`), with its own error."""
    assert argument_problem("add", APPROVED, {"a": "one"}) is None


def test_arguments_the_approved_schema_declares_pass() -> None:
    assert argument_problem("add", APPROVED, {"a": 1, "b": 2, "retries": 0}) is None


def test_a_schema_that_allows_more_properties_lets_them_through() -> None:
    assert argument_problem("add", {**APPROVED, "additionalProperties": True}, {"a": 1, "b": 2, "x": 1}) is None
    open_schema = {**APPROVED, "additionalProperties": {"type": "string"}}
    assert argument_problem("add", open_schema, {"a": 1, "b": 2, "x": "y"}) is None
    assert argument_problem("add", {**APPROVED, "additionalProperties": False}, {"a": 1, "b": 2, "x": 1})


def test_many_unknown_properties_are_named_a_few_at_a_time() -> None:
    problem = argument_problem("add", APPROVED, {"a": 1, "b": 2, **{f"p{i}": i for i in range(50)}})
    assert problem is not None and problem.count("'p") == 5


def test_a_read_under_a_quarantined_template_is_refused_and_others_are_not() -> None:
    held = QuarantinedTemplates.of({"notes://{id}": "waits for approval", "files://{+path}": "held too"})
    assert held.refusal("notes://7") == "waits for approval"
    assert held.refusal("files://a/b/c.txt") == "held too"
    assert held.refusal("other://7") is None
    assert held.refusal("notes://7/extra") is None


def test_a_template_that_does_not_parse_still_refuses_its_own_text() -> None:
    held = QuarantinedTemplates.of({"notes://{id": "held"})
    assert held.refusal("notes://{id") == "held"
    assert held.refusal("notes://7") is None
