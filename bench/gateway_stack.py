"""What the benchmarks run and read: upstream servers, `bastion up` (this checkout's or a baseline's),
and what the gateway's processes cost (CPU time from /proc, NATS messages from nats-server's /varz).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from baseline_env import CLI_PATH, PYTHON, export_baseline
from mcp_clients import ECHO

__all__ = [
    "DENIED_KEY",
    "KEY",
    "POLICIES",
    "ROLES",
    "Costs",
    "Gateway",
    "costs_between",
    "cpu_ticks",
    "export_baseline",
    "nats_counts",
    "pid_ticks",
    "snapshot",
    "start_gateway",
    "start_server",
    "start_upstream",
]

ROOT = Path(__file__).resolve().parent.parent
KEY, DENIED_KEY = "bk_bench_allowed_key_0123456789", "bk_bench_denied_key_0123456789"
POLICIES: dict[str, str | None] = {
    "none": None,
    "static": '@id("no-delete")\nforbid (principal, action, resource in Server::"echo")\n'
    'when { resource.tool like "delete_*" };',
    "argument": '@id("no-secret")\nforbid (principal, action, resource == Tool::"echo/echo")\n'
    'when { context.arguments.text == "forbidden" };',
}
"""`--policy`: no Cedar policy, one that does not read the call (decided once per key and tool), one
that reads its arguments (decided per call); neither forbids the benchmark's calls."""
LOOPBACK_EGRESS = '{"allow_private_hosts": ["127.0.0.1", "localhost"]}'
"""`BASTION_EGRESS` for the executor: the benchmark's upstreams run on this machine (loopback is
refused otherwise); an environment variable, which an older commit's executor ignores."""


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    url: str
    workdir: Path

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


@dataclass
class Costs:
    """Resources the gateway spent per call during a phase."""

    cpu_us: dict[str, float]
    """Bastion process (ingress, policy, executor, audit, nats-server, ...) -> CPU µs per call."""
    nats_in: float
    """Messages published into nats-server per call (`/varz` in_msgs)."""
    nats_out: float
    """Messages nats-server delivered per call (`/varz` out_msgs)."""
    upstream_us: float | None = None
    """The upstream server's own CPU µs per call in the same phase (HTTP and SSE upstreams): the
    gateway's CPU divided by it is a figure this machine's speed, which drifts from day to day by
    more than the changes measured, mostly cancels out of."""


def start_upstream(kind: str = "http") -> tuple[subprocess.Popen[str], str]:
    """The echo server over streamable HTTP (`kind` "http") or HTTP+SSE ("sse") on a free port; its URL."""
    return start_server(str(ECHO), f"--{kind}", "--port", "0")


def start_server(*argv: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """A Python server script (`argv`) that prints `READY <url>` once it serves; that URL. `env`: its
    environment, if not this process's."""
    proc = subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        raise SystemExit(f"upstream did not start: {line!r}")
    return proc, line.split()[1]


_CLI = (
    "import os, runpy, sys; own = sys.argv.pop(1); theirs = os.environ.get('PYTHONPATH', '');"
    "sys.path[:] = [*filter(None, [own]), *(p for p in sys.path if not theirs or not p.startswith(theirs))];"
    "sys.argv[0] = 'bastion'; runpy.run_module('cli', run_name='__main__', alter_sys=True)"
)
"""Runs `bastion up` from the folder given as its first argument ("": this checkout), whatever
PYTHONPATH says: PYTHONPATH is for the services it starts (a baseline's code, `export_baseline`)."""


def start_gateway(
    servers: dict[str, dict],
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    tools: int = 1,
    stack: dict[str, object] | None = None,
    policies: str | None = None,
) -> Gateway:
    """`bastion up` with `servers` (`mcpServers` entries), every one of whose tools `KEY` may call
    (`DENIED_KEY` none), its NATS monitoring port on; ready once `tools` tools are listed. `stack`:
    settings of the config's `stack` section (e.g. `{"colocate": True}`); `policies`: a Cedar text."""
    keys = [
        {"name": "bench", "key": KEY, "tools": [f"{name}/*" for name in servers]},
        {"name": "denied", "key": DENIED_KEY, "tools": []},
    ]
    config: dict[str, object] = {"mcpServers": servers, "keys": keys, "stack": stack or {}}
    if policies:
        config["policies"] = policies
    return launch(
        config,
        workdir,
        {"BASTION_NATS_MONITOR": "1", **(extra_env or {})},
        tools,
    )


def launch(config: dict, workdir: Path, extra_env: dict[str, str], tools: int = 1) -> Gateway:
    """`bastion up` with `config` (its state under `workdir`), `extra_env` on top of this process's
    (`CLI_PATH` names where `bastion up` itself comes from); ready once `tools` tools are listed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = workdir / "bench.yaml"
    path.write_text(json.dumps({**config, "stack": {**config.get("stack", {}), "data_dir": str(workdir / "data")}}))
    env = {**os.environ, "BASTION_LOG_LEVEL": "WARNING", "BASTION_EGRESS": LOOPBACK_EGRESS, **extra_env}
    proc = subprocess.Popen(
        [
            env.pop(PYTHON, sys.executable),
            "-c",
            _CLI,
            env.pop(CLI_PATH, ""),
            "up",
            "--config",
            str(path),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{base}/healthz", timeout=1)
            if health.status_code == 200 and health.json().get("tools", 0) >= tools:
                return Gateway(proc, f"{base}/mcp", workdir)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("bastion up exited; run it by hand to see why")
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    raise SystemExit(f"the gateway did not list {tools} tools within 120s")


_CLK_TCK = os.sysconf("SC_CLK_TCK")
ROLES = (
    "ingress",
    "policy",
    "executor",
    "ingress+executor",
    "audit",
    "codemode",
    "oauth",
    "nats-server",
    "valkey",
    "cli",
)
_UPSTREAMS = ("echo_server", "upstreams.py")
"""Command lines of upstream servers (a stdio one is the executor's child): not the gateway's cost."""


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _role(pid: int) -> str | None:
    """The role of a process under `bastion up`, from the module or program it runs; never from the paths
    its command line names (a checkout at /work/ingress would make every process "ingress")."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    if any(upstream in arg for arg in argv for upstream in _UPSTREAMS):
        return None
    program = Path(argv[0]).name
    if not program.startswith("python"):  # nats-server, valkey-server
        return next((role for role in ROLES if program.startswith(role)), "other")
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        if module == "cli.colocated":
            return "ingress+executor"
        role = "cli" if module == "cli" else module.removeprefix("services.").split(".")[0]
        return role if role in ROLES else "other"
    if "-c" in argv and any("run_module('cli'" in arg for arg in argv):
        return "cli"
    return "other"


def process_ticks(pid: int) -> int:
    """CPU clock ticks (user + system) one process has used so far."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def ticks_to_us(ticks: int, calls: int) -> float:
    return ticks * 1e6 / _CLK_TCK / calls


def cpu_ticks(root: int) -> dict[str, int]:
    """CPU clock ticks (user + system) used so far by each Bastion process under `root`, by role."""
    ticks: dict[str, int] = {}
    for role, used in pid_ticks(root).values():
        ticks[role] = ticks.get(role, 0) + used
    return ticks


def pid_ticks(root: int) -> dict[int, tuple[str, int]]:
    """Each Bastion process under `root`: its role and the CPU clock ticks it has used so far."""
    found = {}
    for pid in _descendants(root):
        role = _role(pid)
        if role is None:
            continue
        try:
            found[pid] = (role, process_ticks(pid))
        except OSError:
            continue
    return found


def nats_counts(workdir: Path) -> tuple[int, int]:
    """nats-server's (in_msgs, out_msgs) from /varz (its monitoring port is in the ports file)."""
    for ports in (workdir / "data" / "nats" / "ports").glob("*.ports"):
        monitoring = json.loads(ports.read_text()).get("monitoring") or []
        if monitoring:
            varz = httpx.get(f"{monitoring[0]}/varz", timeout=5).json()
            return varz["in_msgs"], varz["out_msgs"]
    return 0, 0


Snapshot = tuple[dict[int, tuple[str, int]], tuple[int, int]]
"""Per process its role and CPU ticks so far, and nats-server's message counters."""


def snapshot(gateway: Gateway) -> Snapshot:
    return pid_ticks(gateway.proc.pid), nats_counts(gateway.workdir)


def costs_between(before: Snapshot, after: Snapshot, calls: int) -> Costs:
    """What the gateway spent per call between two `snapshot`s `calls` calls apart.

    Counted per process: one that ended in between (a recycled worker) takes its ticks with it, and
    summed by role its loss would read as negative CPU; one started in between counts whole."""
    (ticks, msgs), (after_ticks, after_msgs) = before, after
    spent: dict[str, int] = {}
    for pid, (role, used) in after_ticks.items():
        spent[role] = spent.get(role, 0) + used - ticks.get(pid, (role, 0))[1]
    return Costs(
        cpu_us={role: ticks_to_us(delta, calls) for role, delta in sorted(spent.items()) if delta},
        nats_in=(after_msgs[0] - msgs[0]) / calls,
        nats_out=(after_msgs[1] - msgs[1]) / calls,
    )
