"""A slice of the graded Code Mode workload, end to end, so `bench/code_mode_tasks.py` keeps working.

Three tasks chosen to cover what the full run exercises: a stub read plus search and writes
checked in the upstream's world (gh-bugs-to-triage), `parallel` (gh-largest-pr), and a
transcript with two scripts (sqlite-top-customers). The script starts its own upstreams and
`bastion up` on free ports and runs every task in both modes; the full set is a benchmark
(docs/benchmarks.md), not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["gh-bugs-to-triage", "gh-largest-pr", "sqlite-top-customers"]


def test_three_tasks_pass_in_both_modes_with_far_fewer_input_tokens(tool_schemas_dir):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "code_mode_tasks.py"), "--only", ",".join(TASKS)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert list(summary) == [
        "tasks",
        "passed_classic",
        "passed_code_mode",
        "classic_input_tokens",
        "code_mode_input_tokens",
        "reduction",
    ]
    assert summary["tasks"] == summary["passed_classic"] == summary["passed_code_mode"] == len(TASKS)
    assert summary["reduction"] == round(1 - summary["code_mode_input_tokens"] / summary["classic_input_tokens"], 4)
    assert summary["reduction"] >= 0.9
    for task in TASKS:  # the per-task table names every task with both verdicts
        row = next(line for line in lines if line.startswith(task))
        assert row.split()[1] == "pass" and row.split()[4] == "pass", row


def test_wrong_results_and_hidden_knowledge_fail_the_run(tmp_path):
    """A task with a wrong expectation fails in both modes; a script that reaches a tool the
    transcript never showed, through a name built at run time (invisible in its text), passes
    classic but fails Code Mode's honesty check from what the upstreams received. Exit code 1."""
    tasks = yaml.safe_load((ROOT / "bench" / "code_mode" / "tasks.yaml").read_text())
    wrong = next(t for t in tasks if t["id"] == "git-authors")
    wrong["expect"]["result"] = {"Nobody": 1}
    sneaky = {
        "id": "sneaky",
        "task": "Show the git log of /srv/repos/api.",
        "discover": [{"search_tools": {"query": "git log", "limit": 1}}],
        "code": 'calls = parallel([("git.git_" + "status", {"repo_path": "/srv/repos/api"})])\nresult = 1\n',
        "expect": {"result": 1},
    }
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump([wrong, sneaky]))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "code_mode_tasks.py"), "--tasks", str(tmp_path / "tasks.yaml")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["tasks"], summary["passed_classic"], summary["passed_code_mode"]) == (2, 1, 0)
    assert "git-authors [classic]: result" in done.stdout and "git-authors [code mode]: result" in done.stdout
    assert "sneaky [code mode]: honesty: at run time: git.git_status was never shown by a meta-tool" in done.stdout, (
        done.stdout[-3000:]
    )
