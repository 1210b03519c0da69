"""The services' probes (`libs.common.runtime.probes`) tell the truth: `/livez` is answered by the service's
event loop, so a blocked loop fails it (while `/metrics`, served by a thread, still answers), and
`/readyz` says not ready, naming NATS, once NATS is gone (shown on audit); services sharing a process
share one endpoint, ready once every one of them has started."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest

from cli.ports import free_port
from cli.stack import EmbeddedNats
from libs.common.runtime.probes import start_probes
from libs.common.settings import AuditSettings, ServiceSettings
from services.audit import AuditService
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def audit(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[AuditService]:
    settings = AuditSettings(
        nats_url=nats_server.url, clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}", health_port=0, metrics_port=0
    )
    service = AuditService(settings)
    await service.start()
    yield service
    await service.stop()


def _url(service: AuditService, path: str) -> str:
    assert service.probes is not None
    return f"http://127.0.0.1:{service.probes.port}{path}"


def _status(url: str, timeout: float = 1) -> int | None:
    """The status of a GET of `url` from a thread of its own; None when it got no answer in `timeout` s."""
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.TimeoutException:
        return None


async def test_liveness_fails_while_the_event_loop_is_blocked(audit: AuditService) -> None:
    livez = _url(audit, "/livez")
    assert await asyncio.to_thread(_status, livez) == 200
    assert audit.metrics_server is not None
    statuses: dict[str, int | None] = {}
    blocked, finished = threading.Event(), threading.Event()

    def probe() -> None:
        blocked.wait()
        statuses["livez"] = _status(livez)
        # a loaded machine may take more than a second to schedule the metrics thread; only the loop's
        # answer is meant to be missing, so the thread gets all the time the blocked loop waits
        statuses["metrics"] = _status(audit.metrics_server.url, timeout=20)  # type: ignore[union-attr]
        finished.set()

    threading.Thread(target=probe, daemon=True).start()
    blocked.set()
    finished.wait(40)  # the loop is blocked (on purpose) until the thread has its answers
    assert statuses == {"livez": None, "metrics": 200}
    assert await asyncio.to_thread(_status, livez) == 200  # the loop runs again: alive again


async def test_readiness_names_nats_when_it_is_gone(audit: AuditService, nats_server: EmbeddedNats) -> None:
    readyz = _url(audit, "/readyz")
    answer = await asyncio.to_thread(httpx.get, readyz, timeout=10)
    assert answer.status_code == 200, answer.text
    nats_server.stop()

    answers: list[httpx.Response] = []

    async def not_ready() -> bool:
        answers.append(await asyncio.to_thread(httpx.get, readyz, timeout=10))
        return answers[-1].status_code == 503

    await poll_until(not_ready, "readiness to fail without NATS", within=30)
    assert "audit.nats" in answers[-1].json(), answers[-1].text


async def test_services_sharing_a_process_share_one_endpoint_ready_when_all_are(nats_server: EmbeddedNats) -> None:
    settings = ServiceSettings(nats_url=nats_server.url, health_port=free_port())
    nc = await nats.connect(nats_server.url)
    try:
        ingress = await start_probes("ingress", settings, nc)
        executor = await start_probes("executor", settings, nc)
        assert ingress is executor is not None
        readyz = f"http://127.0.0.1:{settings.health_port}/readyz"

        async def answer() -> httpx.Response:
            return await asyncio.to_thread(httpx.get, readyz, timeout=10)

        waiting = (await answer()).json()
        assert waiting["ingress.start"] == waiting["executor.start"] == "still starting"
        ingress.started("ingress")
        assert (await answer()).json().keys() >= {"executor.start"}
        executor.started("executor")
        assert (await answer()).status_code == 200
        await ingress.stop()  # one of the two: the other still serves
        assert (await answer()).status_code == 200
        await executor.stop()
        with pytest.raises(httpx.ConnectError):
            await answer()
    finally:
        await nc.close()
