"""Code Mode's pure parts: the `module.function` rewrite, limit messages, answers, tool values."""

from __future__ import annotations

import pytest

from libs.common.contracts.codemode import code_mode_choice
from services.codemode.metatool_answers import run_result, tool_value
from services.codemode.rewrite import DOT, restore, rewrite
from services.codemode.sandbox import RunOutcome
from services.codemode.sandbox_limits import Limits, limit_message
from services.codemode.toolset import Toolset

pytestmark = pytest.mark.unit

TOOLSET = Toolset(
    [
        ("github", {"name": "create_issue", "inputSchema": {}}),
        ("github", {"name": "list_issues", "inputSchema": {}}),
        ("slack", {"name": "post_message", "inputSchema": {}}),
    ]
)


def _text(result: dict) -> str:
    return result["content"][0]["text"]


def test_rewrite_turns_module_calls_into_globals_and_keeps_every_column():
    code = 'x = github.create_issue(title="github.x")  # github.y\ny = z.github.q\nfor i in github . list_issues():\n'
    out = rewrite(code, {"github"})
    assert out.splitlines()[0] == f'x = github{DOT}create_issue(title="github.x")  # github.y'
    assert out.splitlines()[1] == "y = z.github.q"  # an attribute of something else
    assert out.splitlines()[2] == "for i in github . list_issues():"  # not written as one name
    assert [len(line) for line in out.splitlines()] == [len(line) for line in code.splitlines()]
    assert restore(out) == code


def test_rewrite_leaves_code_it_cannot_tokenize_to_starlark():
    assert rewrite('s = """open\n', {"github"}) == 's = """open\n'


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("wall", "wall-clock time limit of 30 s per run"),
        ("cpu", "CPU time limit of 10 s per run"),
        ("memory", "memory limit of 256 MiB per run"),
        ("calls", "tool call limit of 100 per run"),
        ("code", "script size limit of 100000 bytes"),
        ("result", "result size limit of 16384 bytes"),
        ("output", "printed output limit of 16384 bytes"),
    ],
)
def test_each_limit_names_itself_and_its_value(limit, message):
    assert limit_message(limit, Limits()) == message


def test_limit_values_follow_the_settings():
    assert limit_message("wall", Limits(wall_seconds=2.5)) == "wall-clock time limit of 2.5 s per run"
    with pytest.raises(ValueError, match="unknown limit"):
        limit_message("stack", Limits())


def test_an_answer_is_printed_output_then_the_result():
    outcome = RunOutcome(output="a\nb", result='{"n":1}')
    assert _text(run_result(outcome, "", TOOLSET, 100)) == 'a\nb\nresult: {"n":1}'
    assert _text(run_result(RunOutcome(), "", TOOLSET, 100)).startswith("(no output")
    cut = run_result(RunOutcome(output="x", truncated=True), "", TOOLSET, 100)
    assert _text(cut) == "x\n[printed output cut at the limit of 100 bytes]"


def test_an_unknown_tool_is_named_with_the_closest_allowed_names():
    error = {"type": "name", "message": f"undefined: github{DOT}create_isue", "line": 2, "column": 5}
    result = run_result(RunOutcome(output="hi", error=error), "x = 1\ny = github.create_isue()\n", TOOLSET, 100)
    assert result["isError"] is True
    assert _text(result).splitlines() == [
        "hi",
        "NameError at line 2, column 5: no tool github.create_isue for this key; "
        "closest: github.create_issue, github.list_issues",
        "  2 | y = github.create_isue()",
        "    |     ^",
    ]


def test_meta_tools_and_modules_that_do_not_exist_are_explained():
    for name, expected in [
        ("execute_code", "execute_code is a meta-tool of the agent; a script cannot call it"),
        ("os", "undefined: os (the sandbox has no modules besides the tool modules, and no files, network or clock)"),
        ("slak", "undefined: slak; tool modules like it: slack"),
    ]:
        error = {"type": "name", "message": f"undefined: {name}", "line": 1, "column": 1}
        assert (
            _text(run_result(RunOutcome(error=error), "", TOOLSET, 10)) == f"NameError at line 1, column 1: {expected}"
        )


def test_a_runtime_error_shows_the_line_and_a_short_trace():
    error = {
        "type": "runtime",
        "message": "boom",
        "line": 2,
        "column": 3,
        "trace": [{"line": 4, "column": 1, "function": "<toplevel>"}, {"line": 2, "column": 3, "function": "f"}],
    }
    text = _text(run_result(RunOutcome(error=error), "def f():\n  fail('boom')\n\nf()\n", TOOLSET, 10))
    assert text.splitlines() == [
        "Error at line 2, column 3: boom",
        "  2 |   fail('boom')",
        "    |   ^",
        "trace: line 4 in <toplevel>, line 2 in f",
    ]


def test_a_limit_answer_says_which_limit():
    error = {"type": "limit", "limit": "cpu", "message": limit_message("cpu", Limits())}
    assert _text(run_result(RunOutcome(error=error), "", TOOLSET, 10)) == (
        "LimitExceeded: CPU time limit of 10 s per run"
    )


def test_tool_values_prefer_structured_content_then_json_text_then_text():
    assert tool_value({"structuredContent": {"a": 1}, "content": [{"type": "text", "text": "x"}]}) == {"a": 1}
    assert tool_value({"content": [{"type": "text", "text": "[1, 2]"}]}) == [1, 2]
    assert tool_value({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}) == "a\nb"
    assert tool_value({"content": [{"type": "image", "data": "AAAA", "mimeType": "image/png"}]}) == [
        {"type": "image", "mimeType": "image/png"}
    ]


def test_the_header_overrides_the_key_setting_and_other_values_are_refused():
    assert code_mode_choice(None, True) is True
    assert code_mode_choice("OFF", True) is False
    assert code_mode_choice(" on", False) is True
    assert "must be 'on' or 'off'" in str(code_mode_choice("yes", False))
