"""The approval webhook under `bastion up`, every service in its OS box (docs/approvals.md): the policy
service's box opens the webhook's port, the upstreams' egress rules let its host through (the
configuration's `egress.allow_private_hosts`, here loopback), and a parked call's notice arrives,
signed, without its arguments."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mcp.shared.exceptions import MCPError

from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.runtime.walls.confine import abi_version
from tests.e2e.test_bastion_up import DEMO, _client
from tests.support.polling import poll_until_blocking
from tests.support.processes import assert_none_left, output, start_up, stop_up

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(abi_version() < 4, reason="this kernel's Landlock does not filter ports: nothing to prove"),
]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "webhook-secret-under-the-box"
POLICIES = """\
@id("big-sums")
@approval("finance")
@reason("sums above 100 need a person")
forbid (principal, action == Action::"tools/call", resource == Tool::"echo/add")
when { context.decimals.a.greaterThan(decimal("100.0")) };
"""


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:  # quiet
        return


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)  # a port the OS picks: free
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/approvals", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Any) -> Iterator[int]:
    tmp_path = tmp_path_factory.mktemp("webhook-up")
    marker = uuid.uuid4().hex
    example = (ROOT / "examples" / "bastion.yaml").read_text().replace("servers/", f"{ROOT}/examples/servers/")
    config = yaml.safe_load(example)
    config["policies"] = POLICIES
    config["egress"] = {"allow_private_hosts": ["127.0.0.1"]}
    environment = {"BASTION_APPROVAL_WEBHOOK_URL": receiver[0], "BASTION_APPROVAL_WEBHOOK_SECRET": SECRET}
    proc, port, data_dir = start_up(tmp_path, yaml.safe_dump(config), marker, environment)
    try:
        poll_until_blocking(
            lambda: proc.poll() is not None or "Ctrl-C to stop" in output(tmp_path), "the banner", within=120
        )
        assert proc.poll() is None, output(tmp_path)[-4000:]

        def catalog() -> bool:  # the banner may come before the example servers' tools are listed
            try:
                return int(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("tools", 0)) >= 9
            except (httpx.HTTPError, ValueError):
                return False

        poll_until_blocking(catalog, "the example catalog", within=90)
        policy_log = (data_dir / "logs" / "policy.log").read_text()
        assert f"policy confined by the OS: Landlock ABI {abi_version()}" in policy_log  # the box is on
        yield port
    finally:
        stop_up(proc, tmp_path)
        assert_none_left(marker)


async def test_a_parked_call_reaches_the_webhook_signed_from_inside_the_box(stack: int, receiver: Any) -> None:
    _, received = receiver
    async with _client(stack, DEMO, "auto") as client:
        assert (await client.call_tool("echo__add", {"a": 20, "b": 1})).structured_content == {"result": 21}
        with pytest.raises(MCPError) as parked:
            await client.call_tool("echo__add", {"a": 250, "b": 1})
    assert parked.value.code == JSONRPC_CODE[ErrorKind.APPROVAL_REQUIRED], parked.value.message
    approval = parked.value.data["approval"]

    def posted() -> list[Any]:
        return [r for r in received if approval["id"].encode() in r[2]]

    ((path, headers, body),) = poll_until_blocking(posted, "the webhook's notice", within=30)
    assert path == "/hooks/approvals" and headers["content-type"] == "application/json"
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-bastion-signature"], f"sha256={expected}")
    notice = json.loads(body)
    assert (notice["event"], notice["approval"]["policy"]) == ("approval.pending", "big-sums")
    public = {"id", "state", "tool", "policy", "reason", "approvers", "created_at", "expires_at", "decided_by"}
    assert set(notice["approval"]) == public | {"decision_reason"}  # never the arguments
