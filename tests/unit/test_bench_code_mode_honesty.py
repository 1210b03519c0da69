"""The Code Mode workload's honesty check: a script may only use tools and arguments the transcript showed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from libs.common.settings import CodeModeSettings
from services.codemode.searcher import Searcher
from services.codemode.stubs import render_docs, render_file, signature, summary
from services.codemode.toolset import Toolset

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "code_mode"))
from honesty import Shown, check, check_calls, check_fields, tool_uses  # noqa: E402

MODULES = {"github_legacy", "slack_legacy"}
SEARCH = Shown(
    "search_tools",
    {"query": "issues"},
    "github_legacy.list_issues(owner: str, repo: str, labels: list[str] = None) — List issues",
)
STUB = Shown(
    "read_tool_file",
    {"path": "servers/slack_legacy.py"},
    '  5  def slack_post_message(channel_id: str, text: str) -> dict:\n  6      """Post a new message"""',
)


def test_a_script_using_only_what_was_shown_passes():
    code = (
        'issues = github_legacy.list_issues(owner="acme", repo="api", labels=["bug"])\n'
        'slack_legacy.slack_post_message(channel_id="C1", text=str(len(issues)))\n'
    )
    assert check(code, [SEARCH, STUB], MODULES) == []


def test_a_tool_never_shown_fails_naming_it():
    code = 'github_legacy.create_issue(owner="acme", repo="api", title="x")'
    assert check(code, [SEARCH, STUB], MODULES) == [
        "line 1: github_legacy.create_issue was never shown by a meta-tool earlier in the transcript"
    ]


def test_an_argument_never_shown_fails_naming_it():
    code = 'github_legacy.list_issues(owner="acme", repo="api", state="open")'
    assert check(code, [SEARCH], MODULES) == ["line 1: argument 'state' of github_legacy.list_issues was never shown"]


def test_a_stub_of_another_module_is_no_evidence():
    wrong_file = Shown("read_tool_file", {"path": "servers/github_legacy.py"}, STUB.output)
    code = 'slack_legacy.slack_post_message(channel_id="C1", text="hi")'
    assert check(code, [wrong_file], MODULES) != []


def test_parallel_entries_are_checked_like_direct_calls():
    good = 'parallel([("github_legacy.list_issues", {"owner": "a", "repo": "b"})])'
    bad = 'parallel([("github_legacy.list_issues", {"owner": "a", "repo": "b", "sort": "updated"})])'
    assert check(good, [SEARCH], MODULES) == []
    assert check(bad, [SEARCH], MODULES) == ["line 1: argument 'sort' of github_legacy.list_issues was never shown"]


def test_calls_the_upstreams_received_are_checked_too():
    """Run-time names escape the static reading; the calls that really happened cannot."""
    hidden = 'parallel([("github_legacy." + "create_issue", {"owner": "a"})])'
    assert check(hidden, [SEARCH], MODULES) == []
    assert check_calls([("github_legacy.create_issue", ["owner"])], [SEARCH]) == [
        "at run time: github_legacy.create_issue was never shown by a meta-tool earlier in the transcript"
    ]
    assert check_calls([("github_legacy.list_issues", ["owner", "state"])], [SEARCH]) == [
        "at run time: argument 'state' of github_legacy.list_issues was never shown"
    ]
    assert check_calls([("github_legacy.list_issues", ["owner", "repo"])] * 2, [SEARCH]) == []


def test_fields_read_from_results_must_have_been_seen():
    code = 'issues = github_legacy.list_issues(owner="a", repo="b")\nresult = [i["number"] for i in issues]\n'
    assert check_fields(code, "List the issues.", []) == [
        "line 2: reads the field 'number', which the transcript never showed"
    ]
    assert check_fields(code, "List the issues.", ['[{"number": 1, "title": "x"}]']) == []
    assert check_fields(code, "Return each issue's number.", []) == []  # named by the task itself


def test_a_key_of_the_scripts_own_dict_is_no_evidence_but_its_own_sql_alias_is():
    own_dict = 'r = {"total": 1}\nx = github_legacy.list_issues(owner="a", repo="b")[0]["total"]\n'
    assert check_fields(own_dict, "", []) == ["line 2: reads the field 'total', which the transcript never showed"]
    alias = 'rows = sqlite.read_query(query="SELECT SUM(amount) AS total FROM t")\nresult = rows[0]["total"]\n'
    assert check_fields(alias, "", []) == []


def test_method_calls_on_values_are_not_tool_calls():
    uses = tool_uses('x = ", ".join(["a"])\ny = {}.get("k")\nz = slack_legacy.slack_post_message(text="t")', MODULES)
    assert [use.name for use in uses] == ["slack_legacy.slack_post_message"]


def test_docs_show_every_parameter_of_their_tool():
    toolset = Toolset(
        [
            (
                "github-legacy",
                {
                    "name": "get_issue",
                    "inputSchema": {
                        "type": "object",
                        "properties": {"owner": {"type": "string"}, "issue_number": {"type": "number"}},
                    },
                },
            )
        ]
    )
    docs = Shown(
        "get_tool_docs", {"name": "github_legacy.get_issue"}, render_docs(toolset.by_name["github_legacy.get_issue"])
    )
    assert check('github_legacy.get_issue(owner="a", issue_number=1)', [docs], MODULES) == []


def test_positional_arguments_are_refused():
    assert check('github_legacy.list_issues("acme", repo="api")', [SEARCH], MODULES) == [
        "line 1: github_legacy.list_issues is called with positional arguments"
    ]


async def test_every_task_of_the_workload_passes_against_the_real_stubs_and_search(tool_schemas_dir):
    """The shipped task set is honest against what the meta-tools really answer (stubs and search
    computed here as the codemode service computes them), from the first search of a fresh start."""
    sys.path.insert(0, str(ROOT / "bench"))
    from runner import load_tasks

    toolset = Toolset(
        (path.stem, tool)
        for path in sorted(tool_schemas_dir.glob("*.json"))
        for tool in json.loads(path.read_text())["tools"]
    )
    # a new replica without a cache file, which must not wait: the transcripts hold from its first search
    searcher = Searcher(CodeModeSettings(search_warmup_wait=0))
    await searcher.start()
    index = await searcher.index(toolset, None)
    assert index.engine == "hybrid"
    assert searcher.store is not None and searcher.store.computed == 0  # the shipped vectors, none embedded
    await searcher.close()
    tasks = load_tasks(yaml.safe_load((ROOT / "bench" / "code_mode" / "tasks.yaml").read_text()))
    assert len(tasks) >= 30
    assert {server for server in toolset.servers.values()} == {
        server
        for task in tasks
        for script in task.scripts
        for use in tool_uses(script, toolset.modules)
        for server in [toolset.by_name[use.name].server]
    }, "every one of the 16 servers is used by some task"
    for task in tasks:
        shown = []
        for tool, arguments in task.discover:
            if tool == "execute_code":  # an exploratory script: its tools must have been shown too
                assert check(arguments["code"], shown, toolset.modules) == [], task.id
                output = ""
            elif tool == "search_tools":
                found = index.search(arguments["query"], arguments.get("limit", 10))
                output = "\n".join(f"{s.qualified}{signature(s)} — {summary(s.description)}" for s in found)
            elif tool == "read_tool_file":
                output = render_file(toolset, arguments["path"].removeprefix("servers/").removesuffix(".py"))
            else:
                output = render_docs(toolset.by_name[arguments["name"]])
            shown.append(Shown(tool, arguments, output))
        for script in task.scripts:
            assert check(script, shown, toolset.modules) == [], task.id
