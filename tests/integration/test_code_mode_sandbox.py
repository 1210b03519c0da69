"""The sandbox pool with real worker processes: every abuse is stopped by its limit, with a clear
error, and the pool recovers (a killed worker is replaced; the next run works)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libs.common.runtime.walls.confine import abi_version
from services.codemode.rewrite import global_name, rewrite
from services.codemode.sandbox import RunOutcome, WorkerPool, _worker_box
from services.codemode.sandbox_limits import Limits
from services.codemode.worker import WORKER_NICENESS
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

LIMITS = Limits(
    wall_seconds=60,  # far above the CPU limit: on a loaded machine a spinning worker gets little CPU
    cpu_seconds=1,
    memory_bytes=128 * 1024 * 1024,
    max_output_bytes=1000,
    max_result_bytes=1000,
    max_calls=20,
    max_code_bytes=5000,
)
TOOLS = [global_name("echo", "echo"), global_name("slow", "wait")]
RELEASE = asyncio.Event()


async def _tools(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stand-in for the service's tool calls: `echo.echo` echoes, `slow.wait` never returns."""
    out = []
    for call in batch:
        if call["name"] == "slow.wait":
            await RELEASE.wait()
        out.append({"value": {"echoed": call["arguments"]}})
    return out


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(2, LIMITS)
    await pool.start()
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def calm_pool() -> AsyncIterator[WorkerPool]:
    """The module's pool for the scripts a worker survives (refused, cut or stopped by a limit it
    checks itself): no test using it kills a worker, so it stays as a fresh pool is."""
    pool = WorkerPool(2, LIMITS)
    await pool.start()
    yield pool
    await pool.close()


async def _run(pool: WorkerPool, code: str) -> RunOutcome:
    return await pool.run(rewrite(code, {"echo", "slow"}), TOOLS, _tools)


async def _recovered(pool: WorkerPool) -> None:
    """The pool is back to full strength and runs scripts again."""
    async with asyncio.timeout(30):
        while pool.idle < pool.size:  # noqa: ASYNC110 - a bounded wait on state the pool owns
            await asyncio.sleep(0.02)
    assert (await _run(pool, "result = 6 * 7")).result == "42"


async def test_an_endless_loop_hits_the_cpu_limit_and_the_worker_is_replaced(pool):
    outcome = await _run(pool, "for i in range(1000000000000):\n    pass\n")
    assert outcome.error == {"type": "limit", "limit": "cpu", "message": "CPU time limit of 1 s per run"}
    assert pool.replaced == 1
    await _recovered(pool)


async def test_a_run_stuck_in_a_tool_call_hits_the_wall_clock_limit():
    pool = WorkerPool(1, dataclasses.replace(LIMITS, wall_seconds=2))
    await pool.start()
    try:
        outcome = await _run(pool, "slow.wait(x=1)\n")
        assert outcome.error == {"type": "limit", "limit": "wall", "message": "wall-clock time limit of 2 s per run"}
        await _recovered(pool)
    finally:
        await pool.close()


async def test_a_huge_allocation_hits_the_memory_limit(pool):
    outcome = await _run(pool, 'x = []\nfor i in range(100000000):\n    x.append("abcdefgh" * 100 + str(i))\n')
    assert outcome.error == {"type": "limit", "limit": "memory", "message": "memory limit of 128 MiB per run"}
    await _recovered(pool)


async def test_recursion_and_while_loops_are_refused(calm_pool):
    deep = await _run(calm_pool, "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert deep.error is not None and deep.error["message"] == "function f called recursively"
    loop = await _run(calm_pool, "while True:\n    pass\n")
    assert loop.error is not None and "does not support while loops" in loop.error["message"]
    assert calm_pool.replaced == 0


async def test_enormous_output_is_cut_and_an_enormous_result_refused(calm_pool):
    printed = await _run(calm_pool, 'for i in range(100000):\n    print("line", i)\nresult = "done"\n')
    assert printed.truncated and len(printed.output) <= LIMITS.max_output_bytes
    assert printed.result == '"done"' and printed.error is None
    big = await _run(calm_pool, 'result = "x" * 5000\n')
    assert big.error == {"type": "limit", "limit": "result", "message": "result size limit of 1000 bytes"}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ('open("/etc/passwd")\n', "undefined: open"),
        ('http.get("http://example.com")\n', "undefined: http"),
        ('load("//x.star", "y")\n', "load not implemented by this application"),
        ("x = time.now()\n", "undefined: time"),
    ],
)
async def test_no_files_network_clock_or_load(calm_pool, code, expected):
    outcome = await _run(calm_pool, code)
    assert outcome.error is not None and outcome.error["message"] == expected


async def test_thousands_of_tool_calls_stop_at_the_call_limit(calm_pool):
    outcome = await _run(calm_pool, 'for i in range(5000):\n    echo.echo(text="x")\n')
    assert outcome.error is not None
    assert outcome.error["type"] == "limit" and outcome.error["message"] == "tool call limit of 20 per run"
    assert outcome.calls == 20
    flood = await _run(calm_pool, 'parallel([("echo.echo", {"text": "x"}) for _ in range(500)])\n')
    assert flood.error is not None and flood.error["message"] == "tool call limit of 20 per run"
    assert flood.calls == 0  # refused before any of the batch ran


async def test_an_oversized_script_is_refused_before_it_runs(calm_pool):
    outcome = await _run(calm_pool, "x = 1\n" * 2000)
    assert outcome.error == {"type": "limit", "limit": "code", "message": "script size limit of 5000 bytes"}


async def test_another_run_completes_while_a_worker_spins(pool):
    spinning = asyncio.create_task(_run(pool, "for i in range(1000000000000):\n    pass\n"))
    quick = await _run(pool, 'result = echo.echo(text="hi")\n')
    assert quick.result == '{"echoed":{"text":"hi"}}'
    assert not spinning.done()
    assert (await spinning).error["limit"] == "cpu"
    await _recovered(pool)


def _niceness(pid: int) -> int:
    """The `nice` value of process `pid` (field 19 of /proc/<pid>/stat, the 17th after the name)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[16])


async def test_a_worker_runs_below_its_service_so_spinning_scripts_cannot_starve_it(pool):
    spinning = asyncio.create_task(_run(pool, "for i in range(1000000000000):\n    pass\n"))
    await poll_until(lambda: pool.idle < 2, "the script to hold a worker")
    for worker in list(pool._all):
        assert _niceness(worker.process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS)
    assert (await spinning).error["limit"] == "cpu"


async def test_a_tool_call_with_enormous_arguments_hits_the_message_limit():
    pool = WorkerPool(1, dataclasses.replace(LIMITS, memory_bytes=1024 * 1024 * 1024))
    await pool.start()
    try:
        outcome = await _run(pool, 'echo.echo(text="x" * 34000000)\n')  # 34 MB, within the memory limit
        assert outcome.error == {
            "type": "limit",
            "limit": "message",
            "message": "message size limit of 32 MiB (a tool call's arguments)",
        }
        await _recovered(pool)
    finally:
        await pool.close()


async def _held(pool: WorkerPool, owner: str, gate: asyncio.Event) -> RunOutcome:
    """A run of `owner` that holds its worker until `gate` is set."""

    async def tools(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        await gate.wait()
        return [{"value": None} for _ in batch]

    return await pool.run(rewrite("slow.wait(x=1)\n", {"echo", "slow"}), TOOLS, tools, owner=owner)


async def _holding(pool: WorkerPool, count: int) -> None:
    async with asyncio.timeout(30):
        while pool.size - pool.idle < count:  # noqa: ASYNC110 - a bounded wait on state the pool owns
            await asyncio.sleep(0.02)


async def test_keys_holding_every_worker_do_not_hold_up_another_key():
    """Two keys with long scripts take the whole pool (2 runs each); a third key's short script runs
    on a burst worker at once, while theirs are still going, and the burst worker is stopped after."""
    pool = WorkerPool(4, LIMITS, per_owner=2, burst=1)
    await pool.start()
    gate = asyncio.Event()
    try:
        long_runs = [asyncio.create_task(_held(pool, owner, gate)) for owner in ("a", "a", "b", "b")]
        await _holding(pool, 4)
        short = await pool.run(rewrite("result = 6 * 7", {"echo", "slow"}), TOOLS, _tools, owner="c")
        assert short.result == "42"
        assert not any(task.done() for task in long_runs), "the third key waited for the others"
        gate.set()
        assert all(outcome.error is None for outcome in await asyncio.gather(*long_runs))
        assert pool.idle == pool.size and pool.replaced == 0
    finally:
        gate.set()
        await pool.close()


async def test_a_freed_worker_goes_to_the_key_with_fewest_runs_going():
    """Without burst workers, key a's third run waits (its share is 2) and key b's run waits for a
    worker; when one of a's runs ends, b gets the worker, not a's waiting run, though a asked first."""
    pool = WorkerPool(2, LIMITS, per_owner=3, burst=0)
    await pool.start()
    first, second, later = asyncio.Event(), asyncio.Event(), asyncio.Event()
    try:
        a1 = asyncio.create_task(_held(pool, "a", first))
        a2 = asyncio.create_task(_held(pool, "a", second))
        await _holding(pool, 2)
        a3 = asyncio.create_task(_held(pool, "a", later))
        await asyncio.sleep(0)  # a3 queues before b
        b = asyncio.create_task(pool.run(rewrite("result = 1", {"echo", "slow"}), TOOLS, _tools, owner="b"))
        first.set()
        assert (await a1).error is None
        assert (await b).result == "1"
        assert not a3.done(), "a's third run took the worker ahead of b's first"
        second.set()
        later.set()
        assert (await a2).error is None and (await a3).error is None
    finally:
        for gate in (first, second, later):
            gate.set()
        await pool.close()


async def test_a_key_beyond_its_share_waits_for_its_own_runs_not_for_free_workers():
    pool = WorkerPool(3, LIMITS, per_owner=1, burst=0)
    await pool.start()
    gate, again = asyncio.Event(), asyncio.Event()
    try:
        held = asyncio.create_task(_held(pool, "a", gate))
        await _holding(pool, 1)
        queued = asyncio.create_task(_held(pool, "a", again))
        other = await pool.run(rewrite("result = 2", {"echo", "slow"}), TOOLS, _tools, owner="b")
        assert other.result == "2"
        assert not queued.done() and pool.idle == 2, "a's second run took a worker beyond its share"
        gate.set()
        again.set()
        assert (await held).error is None and (await queued).error is None
    finally:
        gate.set()
        again.set()
        await pool.close()


@pytest.mark.skipif(abi_version() == 0, reason="this kernel has no Landlock")
def test_a_worker_process_box_reaches_no_file_port_or_process(tmp_path):
    """Below Starlark's own limits, the OS box every worker starts in: were the interpreter ever
    escaped, the process could still read only the interpreter, write nothing, reach no port."""
    secret = tmp_path / "secret"
    secret.write_text("not for scripts")
    escape = f"""
import errno, json, os, socket
out = {{}}
for name, act in {{
    "read": lambda: open({str(secret)!r}).read(),
    "write": lambda: open({str(tmp_path / "planted")!r}, "w"),
    "connect": lambda: socket.create_connection(("127.0.0.1", 9), timeout=2),
    "environ": lambda: open("/proc/{os.getpid()}/environ").read(),
    "exec": lambda: os.execv("/bin/sh", ["sh", "-c", "true"]),
}}.items():
    try:
        act()
        out[name] = "ok"
    except OSError as exc:
        out[name] = errno.errorcode[exc.errno]
print(json.dumps(out))
"""
    argv = [*_worker_box(), sys.executable, "-I", "-c", escape]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "read": "EACCES",
        "write": "EACCES",
        "connect": "EACCES",
        "environ": "EACCES",
        "exec": "EACCES",
    }
