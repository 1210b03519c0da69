"""Process supervision for real: stand-in children for the supervisor, then `bastion up` itself.

"No orphan" is checked without trusting the code under test: every process we start carries a
unique BASTION_TEST_MARKER in its environment, and afterwards /proc must hold none of them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import nats
import pytest

from cli.stackfile import running_stack
from cli.supervisor import Backoff, ChildSpec, Supervisor
from libs.common.bus.nats import kv_names
from libs.common.contracts import subjects
from libs.common.contracts.messages import KeyRecord, ServerRecord
from tests.support.polling import poll_until_blocking
from tests.support.processes import (
    alive,
    assert_none_left,
    descendants,
    marked_processes,
    output,
    start_up,
    stop_up,
)

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")]

ROOT = Path(__file__).resolve().parents[2]
ECHO_SERVER = ROOT / "examples" / "servers" / "echo_server.py"

STANDIN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    from pathlib import Path

    role, out = sys.argv[1], Path(sys.argv[2])

    def record_term_and_exit(delay):
        def handler(*_):
            (out / f"{role}.term").write_text(repr(time.time()))
            time.sleep(delay)
            sys.exit(0)
        signal.signal(signal.SIGTERM, handler)

    if role == "crash":
        with (out / "starts").open("a") as fh:
            fh.write(f"{time.time()}\\n")
        print("boom: simulated crash", file=sys.stderr)
        sys.exit(3)
    if role == "ingress":
        record_term_and_exit(0.3)
    elif role == "executor":  # leaves a grandchild in its own session that ignores SIGTERM
        grandchild = subprocess.Popen(
            [sys.executable, "-c", "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); time.sleep(99)"],
            start_new_session=True,
        )
        (out / "grandchild.pid").write_text(str(grandchild.pid))
        record_term_and_exit(0.0)
    elif role == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (out / f"{role}.ready").touch()
    while True:
        time.sleep(1)
    """
)

DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cli.supervisor import ChildSpec, OrphanSweeper, StopSignals, Supervisor, set_child_subreaper

    standin, out = sys.argv[1], Path(sys.argv[2])
    assert set_child_subreaper()
    specs = [ChildSpec(r, [sys.executable, standin, r, str(out)], log_path=out / f"{r}.log")
             for r in ("ingress", "executor", "stubborn")]
    supervisor, sweeper = Supervisor(specs, grace=1.0, notify=print), OrphanSweeper(grace=0.5)
    with StopSignals() as stop:
        supervisor.start()
        while not stop.requested:
            supervisor.poll()
            sweeper.sweep(supervisor.pids())
            time.sleep(0.05)
        supervisor.stop([["ingress"], ["executor", "stubborn"]])
        sweeper.finish(set(), timeout=2.0)
    print("driver done")
    """
)


@pytest.fixture
def standin(tmp_path: Path) -> Path:
    path = tmp_path / "standin.py"
    path.write_text(STANDIN)
    return path


# ------------------------------------------------------------------ the supervisor with stand-ins


def test_crashed_child_is_restarted_with_doubling_backoff(tmp_path: Path, standin: Path) -> None:
    spec = ChildSpec("flaky", [sys.executable, str(standin), "crash", str(tmp_path)], log_path=tmp_path / "flaky.log")
    events: list[str] = []
    supervisor = Supervisor([spec], backoff=Backoff(initial=0.1, maximum=0.4, reset_after=60), notify=events.append)
    starts = tmp_path / "starts"

    def start_times() -> list[float]:
        return [float(x) for x in starts.read_text().split()] if starts.exists() else []

    supervisor.start()
    deadline = time.monotonic() + 15
    while len(start_times()) < 5 and time.monotonic() < deadline:
        supervisor.poll()
        time.sleep(0.01)
    supervisor.stop()

    times = start_times()
    assert len(times) >= 5, events
    gaps = [b - a for a, b in itertools.pairwise(times)][:4]
    for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True):  # doubling, capped at the maximum
        assert gap >= delay, (gaps, events)
    assert "flaky exited with code 3" in events[0]
    assert "boom: simulated crash" in events[0], "the restart message quotes the child's last log line"
    assert "restarting in 0.1s" in events[0] and "restarting in 0.4s" in events[3]
    assert supervisor.pids() == set()


HANDED = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from libs.common.settings import AuditSettings, IngressSettings

    out = Path(sys.argv[1])
    fd = int(os.environ["BASTION_SECRETS_FD"])
    settings = AuditSettings()  # reads the pipe once, and closes it
    again = IngressSettings()  # later settings read what was handed, too
    start = len(list(out.glob("start-*.json")))
    (out / f"start-{start}.json").write_text(json.dumps({
        "checkpoint_key": settings.checkpoint_key.get_secret_value(),
        "log_level": again.log_level,
        "environ": Path("/proc/self/environ").read_bytes().decode(errors="replace"),
        "fd_open": os.path.exists(f"/proc/self/fd/{fd}"),
    }))
    sys.exit(3 if start == 0 else 0)
    """
)


def test_a_child_gets_its_secrets_through_a_pipe_at_every_start_never_its_environment(tmp_path: Path) -> None:
    """Any process of the same user reads another's /proc/<pid>/environ. The child reads
    its secrets from an inherited pipe (once, then closes it), on its first start and on the restart
    after it died; its environment holds only the descriptor's number."""
    script = tmp_path / "handed.py"
    script.write_text(HANDED)
    secret = "checkpoint-key-" + uuid.uuid4().hex
    spec = ChildSpec(
        "audit",
        [sys.executable, str(script), str(tmp_path)],
        env={**os.environ, "BASTION_LOG_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)},
        log_path=tmp_path / "audit.log",
        secrets={"BASTION_CHECKPOINT_KEY": secret},
    )
    supervisor = Supervisor([spec], backoff=Backoff(initial=0.05, maximum=0.05), notify=lambda _m: None)
    supervisor.start()
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("start-*.json"))) < 2 and time.monotonic() < deadline:
        supervisor.poll()
        time.sleep(0.01)
    supervisor.stop()
    starts = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("start-*.json"))]
    assert len(starts) == 2, (tmp_path / "audit.log").read_text()
    for seen in starts:
        assert seen["checkpoint_key"] == secret and seen["log_level"] == "DEBUG"
        assert secret not in seen["environ"] and "BASTION_CHECKPOINT_KEY" not in seen["environ"]
        assert not seen["fd_open"], "the pipe stays open in the child"


def test_adopted_child_is_restarted_from_its_spec_with_its_own_backoff(tmp_path: Path, standin: Path) -> None:
    """NATS and Valkey are started before the supervisor (their first start picks the port): the
    supervisor adopts them, and restarts them from their spec (same port) on their own, shorter backoff."""
    spec = ChildSpec(
        "infra",
        [sys.executable, str(standin), "crash", str(tmp_path)],
        log_path=tmp_path / "infra.log",
        backoff=Backoff(initial=0.05, maximum=0.05),
    )
    events: list[str] = []
    supervisor = Supervisor([spec], backoff=Backoff(initial=30, maximum=30), notify=events.append)
    first = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(7)"])
    supervisor.adopt("infra", first)
    supervisor.start()  # an adopted child is not started a second time
    assert supervisor.pids() == {first.pid}
    starts = tmp_path / "starts"
    deadline = time.monotonic() + 15
    while not starts.exists() and time.monotonic() < deadline:
        supervisor.poll()
        time.sleep(0.01)
    supervisor.stop()
    assert starts.exists(), events
    assert "infra exited with code 7" in events[0] and "restarting in 0.05s" in events[0], events


def test_sigterm_stops_in_order_escalates_and_leaves_no_orphan(tmp_path: Path, standin: Path) -> None:
    marker = uuid.uuid4().hex
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    log = (tmp_path / "driver.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(standin), str(tmp_path)],
        env={**os.environ, "BASTION_TEST_MARKER": marker},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        poll_until_blocking(
            lambda: all(
                (tmp_path / f).exists() for f in ("ingress.ready", "executor.ready", "stubborn.ready", "grandchild.pid")
            ),
            "the stand-ins to start",
            within=20,
        )
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        assert alive(grandchild)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, (tmp_path / "driver.out").read_text()
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    ingress_t = float((tmp_path / "ingress.term").read_text())
    executor_t = float((tmp_path / "executor.term").read_text())
    assert executor_t - ingress_t >= 0.25, "executor must get SIGTERM only after ingress has exited"
    assert not (tmp_path / "stubborn.term").exists()
    assert elapsed < 10, "SIGKILL after the grace period, not an endless wait"
    assert not alive(grandchild), "the orphaned grandchild (own session, ignores SIGTERM) must be killed"
    assert_none_left(marker)


# ------------------------------------------------------------------ `bastion up` as a subprocess


def test_up_with_external_nats_and_redis_starts_no_embedded_server(
    tmp_path: Path, nats_url: str, redis_url: str
) -> None:
    marker = uuid.uuid4().hex
    secret = "bk_test_external_secret_0123456789"
    config = f"""
mcpServers:
  echo:
    command: python
    args: ["{ECHO_SERVER}"]
    env: {{BASTION_TEST_MARKER: "{marker}"}}
keys:
  - name: tester
    key: {secret}
    tools: ["echo/*"]
"""
    proc, _port, data_dir = start_up(
        tmp_path, config, marker, {"BASTION_NATS_URL": nats_url, "BASTION_REDIS_URL": redis_url}
    )
    try:
        poll_until_blocking(
            lambda: (data_dir / "stack.json").exists() or proc.poll() is not None, "stack.json", within=30
        )
        assert proc.poll() is None, output(tmp_path)
        info = json.loads((data_dir / "stack.json").read_text())
        assert info["nats_url"] == nats_url and info["redis_url"] == redis_url
        assert info["pid"] == proc.pid
        assert info["clickhouse_url"] == f"chdb://{data_dir.resolve() / 'clickhouse'}"
        every_service = {
            "services.policy",
            "services.executor",
            "services.audit",
            "services.codemode",
            "services.oauth",
            "services.ingress",
            "services.admin",
        }

        def started() -> set[str]:
            return {c.split(" -m ")[1].split()[0] for c in descendants(proc.pid).values() if " -m services." in c}

        # stack.json is written once the stores answer; the supervisor starts the services one after
        # another from there, so the last ones may not be running yet when it appears
        poll_until_blocking(lambda: every_service <= started(), "every service started", within=60)
        tree = descendants(proc.pid)
        assert not [c for c in tree.values() if "nats-server" in c or "valkey-server" in c], tree
        assert not (data_dir / "nats").exists() and not (data_dir / "valkey").exists()
        assert started() - {"services.codemode.worker"} == every_service, tree  # workers may still be starting

        async def read_kv() -> tuple[ServerRecord, KeyRecord, list[bytes]]:
            nc = await nats.connect(nats_url)
            try:
                js = nc.jetstream()
                servers, keys = await js.key_value(subjects.KV_SERVERS), await js.key_value(subjects.KV_KEYS)
                server = ServerRecord.model_validate_json((await servers.get("echo")).value)
                (key_id,) = await kv_names(js, subjects.KV_KEYS)
                raw = (await keys.get(key_id)).value
                return server, KeyRecord.model_validate_json(raw), [raw, (await servers.get("echo")).value]
            finally:
                await nc.close()

        server, key, raws = asyncio.run(read_kv())
        assert server.config.command == "python" and key.name == "tester" and key.grants == ["echo/*"]
        assert all(secret.encode() not in raw for raw in raws)
    finally:
        if proc.poll() is None:
            stop_up(proc, tmp_path)
    assert not (data_dir / "stack.json").exists()
    assert secret not in output(tmp_path)
    assert_none_left(marker)


def test_up_prints_the_mcp_url_and_sigterm_stops_every_child(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc, port, data_dir = start_up(tmp_path, "mcpServers: {}\n", marker)
    mcp_url = f"http://127.0.0.1:{port}/mcp"
    try:
        poll_until_blocking(
            lambda: "Ctrl-C to stop" in output(tmp_path) or proc.poll() is not None, "the whole banner", within=90
        )
        assert proc.poll() is None, output(tmp_path)
        assert f"MCP URL     {mcp_url}" in output(tmp_path)
        assert str(data_dir.resolve() / "logs") in output(tmp_path)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200
        assert json.loads((data_dir / "stack.json").read_text())["ready"] is True
        info = json.loads((data_dir / "stack.json").read_text())
        assert info["mcp_url"] == mcp_url and info["nats_url"].startswith("nats://127.0.0.1:")
        tree = descendants(proc.pid)
        assert any("nats-server" in c for c in tree.values()) and any("valkey-server" in c for c in tree.values())
    finally:
        if proc.poll() is None:
            stop_up(proc, tmp_path)
    assert not (data_dir / "stack.json").exists()
    assert_none_left(marker)
    assert not [pid for pid in tree if alive(pid)], "every child of bastion up has exited"


def test_nothing_survives_a_sigkilled_bastion_up(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc, _port, data_dir = start_up(tmp_path, "mcpServers: {}\n", marker)
    try:
        poll_until_blocking(
            lambda: (data_dir / "stack.json").exists() or proc.poll() is not None, "stack.json", within=30
        )
        assert proc.poll() is None, output(tmp_path)
        tree = descendants(proc.pid)
        assert any("nats-server" in c for c in tree.values()) and any(
            " -m services.ingress" in c for c in tree.values()
        )
    finally:
        proc.kill()
        proc.wait()
    # children get SIGTERM from the kernel (parent-death signal) and shut down on their own
    poll_until_blocking(lambda: not marked_processes(marker), "every child to exit", within=20)
    assert_none_left(marker)
    assert running_stack(data_dir) is None, "the stack.json left behind is recognized as stale"
