"""The suite's own guard (tests/support/process_leaks.py): a test that leaves an embedded ClickHouse
connection, an asyncio task or a thread behind fails naming it, and the tests after it run as if it had not.

Run as a pytest of its own on a small file of tests, since the guard acts between tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

LEAKY = """
import asyncio
import threading

import clickhouse_connect

KEPT = []  # what a service still referenced from a task would hold


def test_fails_with_its_store_open(tmp_path):
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'first'}")
    KEPT.append(client)
    client.command("SELECT 1")
    raise AssertionError("failing with the store open")


def test_leaves_a_thread_waiting():
    never = threading.Event()
    KEPT.append(never)
    threading.Thread(target=never.wait, name="left-waiting", daemon=True).start()


async def test_leaves_a_task_waiting():
    never = asyncio.Event()
    KEPT.append(asyncio.create_task(never.wait(), name="left-waiting-too"))


def test_a_store_on_another_path_opens_after_them(tmp_path):
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path / 'second'}")
    try:
        assert client.command("SELECT 42") == 42
    finally:
        client.close()
"""


def test_a_leaking_test_fails_naming_what_it_left_and_the_next_one_starts_clean(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    settings = tmp_path / "pytest.ini"  # the event loop as the project has it, and no plugin but the guard
    settings.write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = session\n"
        "asyncio_default_test_loop_scope = session\n"
    )
    guarded = ["-p", "tests.support.process_leaks", "-p", "no:cacheprovider", "-c", str(settings)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *guarded, "-rA", "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = run.stdout + run.stderr
    assert "FAILED test_leaky.py::test_fails_with_its_store_open" in out, out
    assert "ERROR test_leaky.py::test_fails_with_its_store_open" in out, out
    assert "left 1 thing(s) running: an embedded ClickHouse (chdb) connection" in out, out
    assert "ERROR test_leaky.py::test_leaves_a_thread_waiting" in out, out
    assert "left 1 thing(s) running: thread 'left-waiting' (daemon)" in out, out
    assert "ERROR test_leaky.py::test_leaves_a_task_waiting" in out, out
    assert "left 1 thing(s) running: asyncio task 'left-waiting-too' (Event.wait)" in out, out
    assert "PASSED test_leaky.py::test_a_store_on_another_path_opens_after_them" in out, out
    assert "1 failed, 3 passed, 3 errors" in out, out
