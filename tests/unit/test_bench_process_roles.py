"""The benchmarks' reading of a running stack (bench/gateway_stack.py): which role a process is, and what
each role spent between two snapshots. A wrong role moves one service's CPU onto another in every
table the benchmarks print."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from gateway_stack import _role as role_of  # noqa: E402
from gateway_stack import costs_between  # noqa: E402

pytestmark = pytest.mark.unit


def _exec_done(pid: int, name: str) -> None:
    """Wait until `pid` runs under `name` (bash's `exec -a` runs after bash itself has started, and the
    command line reads empty while the exec is under way)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    for _ in range(1000):
        if cmdline.read_bytes().split(b"\0")[0].endswith(name.encode()):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} does not run as {name} after 10 s")


@pytest.fixture
def checkout_named_ingress(tmp_path: Path) -> Iterator[Path]:
    """A folder named `ingress` holding an interpreter and a `services.policy` that waits: a checkout at
    /work/ingress, say, whose every command line names that folder."""
    folder = tmp_path / "ingress"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python3").symlink_to(sys.executable)
    package = folder / "services" / "policy"
    package.mkdir(parents=True)
    (folder / "services" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import sys\nsys.stdin.read()\n")
    yield folder


def test_a_process_is_the_role_of_the_module_it_runs_not_of_the_paths_it_names(checkout_named_ingress: Path) -> None:
    python = str(checkout_named_ingress / "bin" / "python3")
    service = subprocess.Popen([python, "-m", "services.policy"], stdin=subprocess.PIPE, cwd=checkout_named_ingress)
    server = subprocess.Popen(
        ["bash", "-c", f"exec -a {checkout_named_ingress}/nats-server cat"], stdin=subprocess.PIPE
    )
    try:
        _exec_done(server.pid, "/nats-server")
        assert role_of(service.pid) == "policy"
        assert role_of(server.pid) == "nats-server"
    finally:
        for child in (service, server):
            child.communicate(b"", timeout=10)


def test_a_process_gone_between_two_snapshots_costs_nothing_rather_than_less_than_nothing() -> None:
    before = ({10: ("ingress", 500), 11: ("other", 300), 12: ("codemode", 40)}, (100, 100))
    after = ({10: ("ingress", 700), 13: ("codemode", 20)}, (300, 320))  # 11 and 12 ended, 13 began
    costs = costs_between(before, after, calls=100)
    assert set(costs.cpu_us) == {"ingress", "codemode"}
    assert all(us > 0 for us in costs.cpu_us.values())
    assert costs.cpu_us["ingress"] == pytest.approx(costs.cpu_us["codemode"] * 10)
    assert (costs.nats_in, costs.nats_out) == (2.0, 2.2)
