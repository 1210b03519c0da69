"""Helpers for tests that run real processes: start `bastion up`, and prove nothing survives.

"No orphan" is checked without trusting the code under test: every process a test starts carries
a unique BASTION_TEST_MARKER in its environment, and afterwards /proc must hold none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from cli.ports import hold_ports
from tests.support.polling import poll_until_blocking

__all__ = [
    "alive",
    "assert_none_left",
    "descendants",
    "environ",
    "fake_bastion_up",
    "marked_processes",
    "output",
    "run_json_client",
    "serving_process",
    "start_up",
    "stop_up",
    "terminate",
]


def marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries BASTION_TEST_MARKER=marker."""
    needle = f"BASTION_TEST_MARKER={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def environ(pid: int) -> dict[str, str]:
    """The environment process `pid` was started with, as any process of the same user reads it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def descendants(root: int) -> dict[int, str]:
    """pid -> cmdline of every live descendant of `root`."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                frontier.append(pid)
    return found


def assert_none_left(marker: str, within: float = 2.0) -> None:
    """No process carrying `marker` is alive (after `within` seconds for the last ones to exit)."""
    try:
        poll_until_blocking(lambda: not marked_processes(marker), "every marked process to exit", within=within)
    except AssertionError:
        left = marked_processes(marker)
        details = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in left if alive(pid)}
        raise AssertionError(f"processes survived: {details}") from None


def start_up(
    tmp_path: Path, config: str, marker: str, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`bastion up` (with further command-line `args`) on a free port, data under `tmp_path`; returned
    once it holds its ports (or has exited)."""
    cfg = tmp_path / "bastion.yaml"
    cfg.write_text(config)
    data_dir = tmp_path / "data"
    env = {**os.environ, "BASTION_TEST_MARKER": marker, **(extra_env or {})}
    for var in ("BASTION_NATS_URL", "BASTION_REDIS_URL", "BASTION_CLICKHOUSE_URL"):
        if var not in (extra_env or {}):
            env.pop(var, None)
    # Held (`cli.ports`) until `up` holds them itself, which it has done once it says it is starting.
    # Released at the pick, either could be another test's server's by the time up checks it.
    with hold_ports(2) as held:
        port, admin_port = held.ports
        flags = ["--port", str(port), "--admin-port", str(admin_port), "--data-dir", str(data_dir), *args]
        with (tmp_path / "up.out").open("wb") as out, (tmp_path / "up.err").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "up", "--config", str(cfg), *flags],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=err,
            )
        poll_until_blocking(
            lambda: proc.poll() is not None or "bastion: starting from" in output(tmp_path),
            "bastion up to hold its ports",
            within=60,
        )
    return proc, port, data_dir


def up_with_example(
    tmp_path: Path,
    marker: str,
    stack: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`bastion up` with the bundled example config (its `stack` section updated with `stack`, further
    command-line `args`), returned once it serves the example catalog."""
    root = Path(__file__).resolve().parents[2]
    config = (root / "examples" / "bastion.yaml").read_text().replace("servers/", f"{root}/examples/servers/")
    if stack:
        loaded = yaml.safe_load(config)
        loaded.setdefault("stack", {}).update(stack)
        config = yaml.safe_dump(loaded)
    proc, port, data_dir = start_up(tmp_path, config, marker, extra_env, args)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("tools", 0) >= 9
        except (httpx.HTTPError, ValueError):
            assert proc.poll() is None, output(tmp_path)
            return False

    try:
        poll_until_blocking(ready, "bastion up to serve the example catalog", within=90)
    except AssertionError as exc:  # stop what was started: left running, it outlives the suite
        terminate(proc)
        raise AssertionError(f"{exc}\n{output(tmp_path)[-4000:]}") from None
    return proc, port, data_dir


def audit_tail(data_dir: Path, limit: int = 50) -> subprocess.CompletedProcess[str]:
    """`bastion audit tail` of the stack in `data_dir` (found through its stack file), wide enough
    that no column is cut."""
    env = {k: v for k, v in os.environ.items() if k != "BASTION_NATS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "cli", "audit", "tail", "--limit", str(limit), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "COLUMNS": "200"},
    )


def output(tmp_path: Path) -> str:
    return (tmp_path / "up.out").read_text() + (tmp_path / "up.err").read_text()


def terminate(proc: subprocess.Popen[Any], grace: float = 40) -> int | None:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit code if it stopped on SIGTERM, else None."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def stop_up(proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    code = terminate(proc)
    assert code is not None, f"bastion up did not stop on SIGTERM:\n{output(tmp_path)}"
    assert code == 0, output(tmp_path)


def fake_bastion_up() -> subprocess.Popen[bytes]:
    """A live process whose command line mentions bastion, as a running `bastion up` has."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "bastion", "up"])
    poll_until_blocking(  # until exec has replaced the forked copy of pytest
        lambda: b"bastion" in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), "the stand-in to exec", within=5
    )
    return proc


@contextlib.contextmanager
def serving_process(argv: list[str], what: str, **popen: Any) -> Iterator[str]:
    """Run a test server that prints `READY <url>` once it accepts connections; yields the URL and
    stops the process (and closes its pipe) afterwards."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, **popen)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), f"{what} did not start: {line!r}"
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def run_json_client(argv: list[str], what: str, within: float = 120) -> dict[str, Any]:
    """Run a test client that prints one JSON object and exit 0: that object. Its stderr is the
    failure's message; a client still running after `within` seconds is killed and fails."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{what} did not finish in {within:g} s") from None
    assert proc.returncode == 0, f"{what} failed:\n{err.decode()}"
    run: dict[str, Any] = json.loads(out)
    return run
