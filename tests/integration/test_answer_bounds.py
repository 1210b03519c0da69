"""What the executor reads of an HTTP upstream's answer, on the lean path and on the SDK's own.

`BASTION_MAX_RESULT_BYTES` bounds a result; an answer is never read more than 64 KiB past it
(`outcomes.answer_cutoff`), whichever way the request went and whether the answer is JSON or an
event stream. The official SDK's server answers 2026-07-28 requests with JSON and a legacy
session's requests with server-sent events, so the two protocol settings cover both shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.settings import ExecutorSettings
from services.executor.answer_limits import answer_cutoff
from services.executor.service import ExecutorService
from tests.integration.test_executor import ROOT, Harness, harness, http_upstream
from tests.support.egress import LOOPBACK_UPSTREAMS

pytestmark = pytest.mark.integration
__all__ = ["harness"]  # the fixture, re-exported for pytest

LARGE = str(ROOT / "tests" / "support" / "large_server.py")
LIMIT = 20_000
"""The result limit here; the answer cutoff is 64 KiB more."""


def executor_settings(nats_url: str, max_result_bytes: int) -> ExecutorSettings:
    return ExecutorSettings(
        nats_url=nats_url,
        connect_timeout=15.0,
        reconnect_max_backoff=1.0,
        max_result_bytes=max_result_bytes,
        egress=LOOPBACK_UPSTREAMS,
    )


@pytest.fixture
async def executor(nats_url: str) -> AsyncIterator[ExecutorService]:
    async with ExecutorService(executor_settings(nats_url, LIMIT)) as service:
        yield service


@pytest.fixture(scope="module")
async def large_url() -> AsyncIterator[str]:
    """The large server for the module: each test's executor opens sessions of its own to it, and
    it keeps nothing between them."""
    async with http_upstream(LARGE, "http") as url:
        yield url


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "sdk"])
@pytest.mark.parametrize("protocol", ["auto", "legacy"], ids=["json", "sse"])
async def test_an_answer_past_the_cutoff_fails_naming_the_limit_on_either_path(
    harness: Harness, executor: ExecutorService, large_url: str, protocol: str, lean: bool
) -> None:
    await harness.configure("large", ServerConfig(url=large_url, protocol=protocol))  # type: ignore[arg-type]
    await harness.wait_status("large", "ready")
    executor.upstreams["large"].lean_calls = lean

    assert len(await harness.text("large", "blob", {"megabytes": 0.01})) == 10_000
    # past the cutoff: not read further, and the error says so instead of waiting for the deadline
    past = await harness.call("large", "blob", {"megabytes": 0.5}, deadline=60.0)
    assert past.error is not None, past.result
    assert past.error.kind in ("result_too_large", "upstream_error"), past.error
    named = past.error.message.replace(",", "")  # "85,536" and "85536" alike
    assert str(answer_cutoff(LIMIT)) in named or str(LIMIT) in named, past.error.message
    assert past.execution == "ran"
    # the session is still good after it
    assert len(await harness.text("large", "blob", {"megabytes": 0.01})) == 10_000


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "sdk"])
async def test_an_event_stream_answer_may_be_as_long_as_a_json_one(
    harness: Harness, nats_url: str, large_url: str, lean: bool
) -> None:
    """The SDK bounds each server-sent event at 1 MiB by default; with the default result limit
    (32 MiB) a 3 MB result answered as an event arrives whole, as it would as JSON."""
    async with ExecutorService(executor_settings(nats_url, 32 * 1024 * 1024)) as executor:
        await harness.configure("large", ServerConfig(url=large_url, protocol="legacy"))
        await harness.wait_status("large", "ready")
        executor.upstreams["large"].lean_calls = lean
        assert len(await harness.text("large", "blob", {"megabytes": 3})) == 3_000_000
