"""`/metrics` endpoints (`libs.common.runtime.metrics.serve`): services sharing a process share one."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from cli.ports import free_port
from libs.common.runtime.metrics import serve

pytestmark = pytest.mark.unit


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


def test_two_services_asking_for_one_address_share_its_endpoint_until_both_close() -> None:
    port = free_port()
    first = serve("127.0.0.1", port)  # as ingress would, from the shared BASTION_METRICS_PORT
    second = serve("127.0.0.1", port)  # the executor in the same process: no second bind, no crash
    assert second is first
    assert "# TYPE" in _scrape(first.url)
    first.close()
    assert _scrape(second.url)  # still served for the one still running
    second.close()
    with pytest.raises(urllib.error.URLError):
        _scrape(second.url)
    again = serve("127.0.0.1", port)  # the address is free again for whoever starts next
    try:
        assert again is not first and _scrape(again.url)
    finally:
        again.close()


def test_port_zero_is_always_a_new_endpoint() -> None:
    one, two = serve("127.0.0.1", 0), serve("127.0.0.1", 0)
    try:
        assert one.port != two.port and one.port and two.port
    finally:
        one.close()
        two.close()
