"""A slice of the graded Code Mode workload, end to end, so `bench/code_mode_tasks.py` keeps working.

Three tasks chosen to cover what the full run exercises: a stub read plus search and writes
checked in the upstream's world (gh-bugs-to-triage), `parallel` (gh-largest-pr), and a
transcript with two scripts (sqlite-top-customers). Beside them in the same run, two tasks that
must fail: a wrong expectation, and a script reaching a tool no meta-tool showed. The script starts
its own upstreams and `bastion up` on free ports (once for the module: the five tasks share them)
and runs every task in both modes; the full set is a benchmark (docs/benchmarks.md), not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["gh-bugs-to-triage", "gh-largest-pr", "sqlite-top-customers"]


@dataclass(frozen=True)
class Run:
    exit_code: int
    lines: list[str]
    stderr: str

    @property
    def summary(self) -> dict:
        return json.loads(self.lines[-1])

    def row(self, task: str) -> list[str]:
        """The task's row of the per-task table: id, then each mode's verdict, turns and tokens."""
        return next(line for line in self.lines if line.startswith(task + " ")).split()

    def shown(self) -> str:
        return "\n".join(self.lines)[-3000:] + self.stderr[-3000:]


def _failing_tasks() -> list[dict]:
    """A task with a wrong expectation (fails in both modes), and one whose script reaches a tool the
    transcript never showed through a name built at run time, invisible in its text (passes classic,
    fails Code Mode's honesty check from what the upstreams received)."""
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
    return [wrong, sneaky]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tool_schemas_dir: Path) -> Run:
    """One run of five tasks (`tool_schemas_dir` fails it loudly when the real schemas are missing)."""
    tasks = yaml.safe_load((ROOT / "bench" / "code_mode" / "tasks.yaml").read_text())
    chosen = [next(t for t in tasks if t["id"] == task) for task in TASKS] + _failing_tasks()
    path = tmp_path_factory.mktemp("workload") / "tasks.yaml"
    path.write_text(yaml.safe_dump(chosen))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "code_mode_tasks.py"), "--tasks", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    return Run(done.returncode, done.stdout.strip().splitlines(), done.stderr)


def test_three_tasks_pass_in_both_modes_with_far_fewer_input_tokens(run: Run) -> None:
    assert run.lines, run.shown()
    summary = run.summary
    assert list(summary) == [
        "tasks",
        "passed_classic",
        "passed_code_mode",
        "classic_input_tokens",
        "code_mode_input_tokens",
        "reduction",
    ]
    assert summary["tasks"] == len(TASKS) + 2, run.shown()
    assert summary["reduction"] == round(1 - summary["code_mode_input_tokens"] / summary["classic_input_tokens"], 4)
    assert summary["reduction"] >= 0.9
    for task in TASKS:  # the per-task table names every task with both verdicts
        row = run.row(task)
        assert row[1] == "pass" and row[4] == "pass", (row, run.shown())


def test_wrong_results_and_hidden_knowledge_fail_the_run(run: Run) -> None:
    """Exit code 1; only the two failing tasks' modes fail, each saying why."""
    assert run.exit_code == 1, run.shown()
    summary = run.summary
    assert (summary["passed_classic"], summary["passed_code_mode"]) == (len(TASKS) + 1, len(TASKS)), run.shown()
    assert run.row("git-authors")[1] == run.row("git-authors")[4] == "FAIL", run.shown()
    assert run.row("sneaky")[1] == "pass" and run.row("sneaky")[4] == "FAIL", run.shown()
    text = "\n".join(run.lines)
    assert "git-authors [classic]: result" in text and "git-authors [code mode]: result" in text
    assert "sneaky [code mode]: honesty: at run time: git.git_status was never shown by a meta-tool" in text, (
        run.shown()
    )
