"""The graded Code Mode workload: realistic multi-step tasks, classic against Code Mode, input tokens counted.

    .venv/bin/python bench/code_mode_tasks.py                    # every task in bench/code_mode/tasks.yaml
    .venv/bin/python bench/code_mode_tasks.py --only gh-bugs-to-triage,k8s-crashloop

It starts what it needs: the 16 deterministic upstream servers built from
`tests/data/tool-schemas` (`bench/code_mode/upstreams.py`, worlds in `bench/code_mode/world/`),
and `bastion up` in front of them with one key that may use every tool, on free ports. Each task
runs twice through that gateway from a freshly reset world:
  classic    every tool definition on every turn, one tool call per turn, every result in context
  Code Mode  the meta-tools; the task's discovery calls, then one execute_code script
The script must only use tools and arguments an earlier meta-tool answer showed (the honesty
check), and both modes must return the expected result and leave the expected world state.
Input tokens are o200k_base tokens of every turn's input (`bench/code_mode/transcript.py`).
Prints a per-task table, then, last, one JSON line:
  {"tasks": N, "passed_classic": N, "passed_code_mode": N, "classic_input_tokens": N,
   "code_mode_input_tokens": N, "reduction": 0.xx}
and exits non-zero if any task fails in either mode.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "code_mode"))
from runner import Outcome, Workbench, load_tasks  # noqa: E402
from tokens import count_json, definition  # noqa: E402
from tool_dumps import CODE_MODE_SET, dump_files  # noqa: E402

ROOT = HERE.parent
SCHEMAS = CODE_MODE_SET
TASKS = HERE / "code_mode" / "tasks.yaml"
KEY = "bk_bench_code_mode_key_0123456789"
STARTUP_TIMEOUT = 120.0
LOOPBACK_EGRESS = '{"allow_private_hosts": ["127.0.0.1", "localhost"]}'
"""`BASTION_EGRESS` for the executor: the benchmark's upstreams run on this machine (loopback is
refused otherwise); an environment variable, which an older commit's executor ignores."""

__all__ = ["main", "run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def upstreams(schemas: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "code_mode" / "upstreams.py"), "--schemas", str(schemas), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints READY once it accepts connections, or exits
        if not line.startswith("READY "):
            raise SystemExit(f"the benchmark upstreams did not start: {line!r}")
        yield line.split()[1]
    finally:
        _stop(proc)


@contextlib.contextmanager
def gateway(upstreams_url: str, servers: list[str], tools: int, workdir: Path) -> Iterator[str]:
    """`bastion up` (every service its own process) with the upstreams and one all-tools key."""
    port = _free_port()
    config = workdir / "code-mode-bench.yaml"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {server: {"url": f"{upstreams_url}/{server}/mcp"} for server in servers},
                "keys": [{"name": "bench", "key": KEY, "tools": ["*"]}],
                "stack": {"data_dir": str(workdir / "data")},
            }
        )
    )
    log = (workdir / "bastion.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--config", str(config), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "BASTION_LOG_LEVEL": "WARNING", "BASTION_EGRESS": LOOPBACK_EGRESS},
        cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"{base}/healthz", timeout=2)
                if health.status_code == 200 and health.json().get("tools", 0) >= tools:
                    break
            if proc.poll() is not None:
                raise SystemExit(f"bastion up exited with {proc.returncode}; see {workdir / 'bastion.log'}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not list all {tools} tools within {STARTUP_TIMEOUT:.0f}s")
            time.sleep(0.2)
        yield f"{base}/mcp"
    finally:
        _stop(proc)
        log.close()


def listings(schemas: Path) -> dict[str, list[dict[str, Any]]]:
    return {path.stem: json.loads(path.read_text())["tools"] for path in dump_files(schemas)}


def run(schemas: Path, tasks_file: Path, only: set[str] | None = None) -> tuple[list[Outcome], dict[str, Any]]:
    tasks = load_tasks(yaml.safe_load(tasks_file.read_text()))
    if only:
        unknown = only - {t.id for t in tasks}
        if unknown:
            raise SystemExit(f"no such task: {', '.join(sorted(unknown))}")
        tasks = [t for t in tasks if t.id in only]
    servers = listings(schemas)
    total = sum(len(tools) for tools in servers.values())
    with tempfile.TemporaryDirectory(prefix="bastion-code-mode-bench-") as tmp, upstreams(schemas) as up:
        with gateway(up, sorted(servers), total, Path(tmp)) as url:
            bench = Workbench(url, KEY, up, servers)
            try:
                classic_tokens = count_json([definition(t) for t in bench.classic_tools])
                code_mode_tokens = count_json([definition(t) for t in bench.meta_tools])
                outcomes = [bench.run(task, classic_tokens, code_mode_tokens) for task in tasks]
            finally:
                bench.close()
    classic = sum(o.classic.transcript.input_tokens() for o in outcomes)
    code_mode = sum(o.code_mode.transcript.input_tokens() for o in outcomes)
    summary = {
        "tasks": len(outcomes),
        "passed_classic": sum(o.classic.passed for o in outcomes),
        "passed_code_mode": sum(o.code_mode.passed for o in outcomes),
        "classic_input_tokens": classic,
        "code_mode_input_tokens": code_mode,
        "reduction": round(1 - code_mode / classic, 4) if classic else 0.0,
    }
    return outcomes, summary


def report(outcomes: list[Outcome], summary: dict[str, Any]) -> None:
    header = (
        f"{'task':30} {'classic':>7} {'turns':>5} {'tokens':>10}   "
        f"{'code mode':>9} {'turns':>5} {'tokens':>8} {'saved':>6}"
    )
    print(header)
    print("-" * len(header))
    for o in outcomes:
        c, m = o.classic.transcript, o.code_mode.transcript
        saved = 1 - m.input_tokens() / c.input_tokens() if c.input_tokens() else 0.0
        classic, code_mode = ("pass" if r.passed else "FAIL" for r in (o.classic, o.code_mode))
        print(
            f"{o.task.id:30} {classic:>7} {len(c.turn_inputs()):5} {c.input_tokens():10,}   "
            f"{code_mode:>9} {len(m.turn_inputs()):5} {m.input_tokens():8,} {saved:6.1%}"
        )
    for mode, side in (("classic", "classic"), ("Code Mode", "code_mode")):
        transcripts = [getattr(o, side).transcript for o in outcomes]
        total = sum(t.input_tokens() for t in transcripts)
        definitions = sum(t.definition_tokens() for t in transcripts)
        turns = sum(len(t.steps) + 1 for t in transcripts)
        print(
            f"{mode:10} {turns:4} turns, {total:12,} input tokens: {definitions:12,} tool definitions, "
            f"{total - definitions:10,} prompt, calls and results"
        )
    for o in outcomes:
        for mode, problems in (("classic", o.classic.problems), ("code mode", o.code_mode.problems)):
            for problem in problems:
                print(f"  {o.task.id} [{mode}]: {problem}")
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--schemas", type=Path, default=SCHEMAS, help="folder of tools/list results (*.json), or a .txt list of them"
    )
    parser.add_argument("--tasks", type=Path, default=TASKS, help="the task set (YAML)")
    parser.add_argument("--only", help="comma-separated task ids to run (default: all)")
    args = parser.parse_args()
    only = {t.strip() for t in args.only.split(",") if t.strip()} if args.only else None
    outcomes, summary = run(args.schemas, args.tasks, only)
    report(outcomes, summary)
    ok = summary["passed_classic"] == summary["passed_code_mode"] == summary["tasks"] > 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
