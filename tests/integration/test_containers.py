"""The same gateway against real server images (NATS, Valkey, ClickHouse) through testcontainers.

These run wherever a Docker engine answers; elsewhere they skip, saying so. The embedded stack
used by the rest of the suite runs the very same server binaries (nats-server, valkey-server) and
the ClickHouse engine (chdb), so what these add is the network path and a real ClickHouse server.
"""

from __future__ import annotations

import gc
import os
import warnings

import pytest

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows
from tests.support.gateway import ADMIN_KEY, running_gateway
from tests.support.polling import poll_until


def _docker_problem() -> str | None:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return "no Docker engine here (DOCKER_HOST unset, no /var/run/docker.sock); testcontainers needs one"
    # docker-py leaks the socket of a refused connection; collect it here rather than let it fail a
    # later test as an unraisable ResourceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=3)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return f"no Docker engine is reachable ({type(exc).__name__}); testcontainers needs one"
        finally:
            gc.collect()
    return None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.skipif((problem := _docker_problem()) is not None, reason=problem or ""),
]


@pytest.fixture(scope="module")
def containers():
    from testcontainers.community.clickhouse import ClickHouseContainer
    from testcontainers.community.nats import NatsContainer
    from testcontainers.community.valkey import ValkeyContainer

    with (
        NatsContainer("nats:2.11", jetstream=True) as nats,
        ValkeyContainer("valkey/valkey:8") as valkey,
        ClickHouseContainer(
            "clickhouse/clickhouse-server:25.8", username="bastion", password="secret", dbname="bastion"
        ) as clickhouse,
    ):
        host, http_port = clickhouse.get_container_host_ip(), clickhouse.get_exposed_port(8123)
        yield {
            "nats": nats.nats_uri(),
            "redis": f"redis://{valkey.get_host()}:{valkey.get_exposed_port()}/0",
            "clickhouse": f"http://bastion:secret@{host}:{http_port}/bastion",
        }


async def test_gateway_on_real_server_images(containers, tmp_path):
    # NATS images keep the 1 MiB default payload: stay under it
    async with running_gateway(
        containers["nats"],
        containers["redis"],
        tmp_path,
        clickhouse_url=containers["clickhouse"],
        max_body_bytes=512 * 1024,
    ) as gw:
        async with gw.client(ADMIN_KEY) as client:
            assert (await client.call_tool("echo__add", {"a": 1, "b": 2})).structured_content == {"result": 3}
        nc = await connect(containers["nats"], "test")
        try:

            async def written() -> bool:
                reply = await nc.request(
                    subjects.AUDIT_QUERY, AuditQuery(limit=10).model_dump_json().encode(), timeout=5
                )
                return any(row.name == "echo__add" for row in AuditRows.model_validate_json(reply.data).rows)

            await poll_until(written, "the call to reach the ClickHouse server")
        finally:
            await nc.close()
