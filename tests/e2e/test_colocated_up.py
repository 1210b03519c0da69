"""`bastion up` with `stack.colocate: true`: ingress and the executor as one process whose hop between
them never crosses nats-server, with everything else (policy, audit, the example upstreams, both
protocol eras, restarts, Ctrl-C leaving nothing behind) as in the separate-process layout."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from cli.stack import nats_monitoring_url
from tests.e2e.test_bastion_up import DEMO, _client
from tests.support.polling import poll_until_blocking
from tests.support.processes import assert_none_left, audit_tail, marked_processes, output, stop_up, up_with_example

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("colocated")
    marker = uuid.uuid4().hex
    proc, port, data_dir = up_with_example(tmp_path, marker, {"colocate": True}, {"BASTION_NATS_MONITOR": "1"})
    yield proc, port, data_dir, marker
    stop_up(proc, tmp_path)
    assert_none_left(marker)


def _services(marker: str) -> dict[str, list[int]]:
    """This stack's processes by the module they run, with its arguments (`bastion_policy`,
    `cli.colocated executor ingress`, ...)."""
    found: dict[str, list[int]] = {}
    for pid in marked_processes(marker):
        with contextlib.suppress(OSError):
            argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            if "-m" in argv:
                found.setdefault(" ".join(argv[argv.index("-m") + 1 :]), []).append(pid)
    return found


def _nats_messages(data_dir: Path) -> int:
    monitoring = nats_monitoring_url(data_dir / "nats")
    assert monitoring, "nats-server serves no monitoring port"
    return int(httpx.get(f"{monitoring}/varz", timeout=5).json()["in_msgs"])


def test_ingress_and_the_executor_are_one_process(stack):
    _, _, data_dir, marker = stack
    poll_until_blocking(lambda: "Ctrl-C to stop" in output(data_dir.parent), "the whole banner", within=30)
    assert "ingress and executor in one process" in output(data_dir.parent)
    services = _services(marker)
    assert list(services.get("cli.colocated executor ingress", [])) != [], services
    assert not any(s.startswith(("services.ingress", "services.executor")) for s in services), services
    for alone in ("services.policy", "services.audit", "services.codemode", "services.oauth", "services.admin"):
        assert alone in services, (alone, services)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_calls_prompts_and_resources_work_in_both_eras(stack, mode):
    _, port, _, _ = stack
    async with _client(port, DEMO, mode) as client:
        assert (await client.call_tool("echo__add", {"a": 20, "b": 22})).structured_content == {"result": 42}
        await client.call_tool("notes__add_note", {"title": "colocated", "text": f"via {mode}"})
        listed = await client.call_tool("notes__list_notes", {})
        assert f"via {mode}" in json.dumps(listed.structured_content)
        assert (await client.list_prompts()).prompts
        assert (await client.list_resources()).resources
        failed = await client.call_tool("echo__fail", {"message": "on purpose"})
        assert failed.is_error


async def test_repeated_calls_do_not_cross_nats_server(stack):
    """A granted call goes ingress -> executor -> ingress in memory; only audit batches reach the bus."""
    _, port, data_dir, _ = stack
    async with _client(port, DEMO, "auto") as client:
        await client.call_tool("echo__echo", {"text": "warm up: policy decides and grants"})
        before = _nats_messages(data_dir)
        for n in range(40):
            assert (await client.call_tool("echo__echo", {"text": f"call {n}"})).content[0].text.endswith(f"call {n}")
        published = _nats_messages(data_dir) - before
    # over the bus each call is at least 2 messages (the call, its answer): 80 or more. On the lane
    # only audit batches remain (a few; one per call at worst on a machine slower than the batches'
    # 50 ms linger) and a grant's renewal through policy (3 messages) should one expire
    assert published < 60, published


async def test_the_process_is_restarted_and_serves_again(stack):
    """Killing the shared process takes both services down together; the supervisor restarts it."""
    proc, port, _, marker = stack
    [pid] = _services(marker)["cli.colocated executor ingress"]
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        now = _services(marker).get("cli.colocated executor ingress", [])
        try:
            healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("tools", 0) >= 9
        except (httpx.HTTPError, ValueError):
            return False
        return bool(now) and now != [pid] and healthy

    poll_until_blocking(back, "the co-located process to be restarted and serve", within=90)
    assert proc.poll() is None
    async with _client(port, DEMO, "auto") as client:
        assert (await client.call_tool("echo__add", {"a": 1, "b": 2})).structured_content == {"result": 3}


async def test_every_call_ends_in_an_audit_row(stack):
    _, port, data_dir, _ = stack
    async with _client(port, DEMO, "auto") as client:
        for _ in range(5):
            await client.call_tool("echo__stats", {})  # a tool no other test here calls

    def rows() -> int:
        done = audit_tail(data_dir, limit=500)
        assert done.returncode == 0, done.stderr
        return len(re.findall(r"\becho +stats +ok\b", done.stdout))  # server, tool, status columns

    poll_until_blocking(lambda: rows() == 5, "five rows in `bastion audit tail`", within=30)
