"""A stdio server that fails to start says why where an operator looks: the last
lines of its stderr ride with its status, through the catalog, the admin API and `bastion servers
list`, instead of only "Connection closed (code -32000)"; its own configured secrets are masked
there (and in the executor's log), and the lines kept stay bounded however much it writes."""

from __future__ import annotations

import logging
import sys

import httpx2
import pytest

from tests.support.admin_api import servers_list
from tests.support.gateway import default_config, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

SECRET = "sk-live-7c1d9e2a4b"
HEADER_TOKEN = "hdr-token-55aa"
MISSING = "/nonexistent/bastion-test/server.py"
# prints its credential and a flood of lines to stderr, then exits before speaking MCP
NOISY = (
    "import os, sys\n"
    "for i in range(5000): print('noise', i, 'x' * 200, file=sys.stderr)\n"
    "print('config error: token', os.environ['API_TOKEN'], 'was refused', file=sys.stderr)\n"
    "sys.exit(3)\n"
)


async def test_a_stdio_server_that_cannot_start_shows_its_stderr(nats_url, redis_url, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="services.executor.upstreams.mcp.stderr")
    config = default_config(
        {
            "down-missing": {"command": sys.executable, "args": [MISSING]},
            "down-noisy": {"command": sys.executable, "args": ["-c", NOISY], "env": {"API_TOKEN": SECRET}},
        }
    )
    async with running_gateway(nats_url, redis_url, tmp_path, config, admin=True) as gateway:
        catalog = gateway.ingress.catalog

        def tail(server: str) -> list[str]:
            status = catalog.server_status(server)
            return status.stderr_tail if status is not None and status.status == "unavailable" else []

        await poll_until(lambda: any("can't open file" in line for line in tail("down-missing")), "the cause")
        missing = catalog.server_status("down-missing")
        assert missing is not None and "Connection closed" in (missing.error or "")
        assert any(MISSING in line for line in missing.stderr_tail)

        await poll_until(lambda: any("was refused" in line for line in tail("down-noisy")), "the noisy cause")
        noisy = catalog.server_status("down-noisy")
        assert noisy is not None
        assert "config error: token *** was refused" in noisy.stderr_tail
        assert sum(len(line) + 1 for line in noisy.stderr_tail) <= 4096, "bounded, whatever the server writes"

        async with httpx2.AsyncClient(headers=gateway.admin_headers) as http:
            shown = (await http.get(f"{gateway.admin_api}/servers/down-noisy")).json()
        assert shown["status"] == "unavailable" and "config error: token *** was refused" in shown["stderr_tail"]

        listed = await servers_list(gateway.admin_api, gateway.admin_token)
        assert "can't open file" in listed and "config error: token *** was refused" in listed, listed

        healthy = catalog.server_status("echo")
        assert healthy is not None and healthy.status == "ready" and healthy.stderr_tail == []

        assert SECRET not in str(noisy) + str(shown) + listed
    logged = [r.getMessage() for r in caplog.records if r.name == "services.executor.upstreams.mcp.stderr"]
    assert any("token *** was refused" in line for line in logged)
    assert not any(SECRET in line for line in logged)


def test_configured_secrets_are_masked_whole_and_plain_values_kept() -> None:
    from libs.common.contracts.config import ServerConfig
    from services.executor.upstreams.last_words import LastWords, configured_secrets

    config = ServerConfig(
        url="https://mcp.example/",
        headers={"Authorization": f"Bearer {HEADER_TOKEN}", "X-Debug": "1"},
    )
    words = LastWords(configured_secrets(config))
    assert words.mask(f"sent Bearer {HEADER_TOKEN} to it") == "sent *** to it"
    assert words.mask(f"bare {HEADER_TOKEN}") == "bare ***"
    assert words.mask("debug level 1") == "debug level 1", "a short, plainly named value is not a secret"
    stdio = ServerConfig(command="srv", env={"DB_PASSWORD": "abc", "LOG_DIR": "/var/log/srv", "MODE": "fast"})
    words = LastWords(configured_secrets(stdio))
    assert words.mask("password abc rejected; see /var/log/srv; mode fast") == (
        "password *** rejected; see ***; mode fast"
    )
