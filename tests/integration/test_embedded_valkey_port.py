"""The embedded Valkey's port (`cli.stack.EmbeddedValkey`, picked by `cli.ports`) stays its own while it
is down between a kill and its restart, as `bastion up`'s supervisor restarts it, until it is stopped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from cli.stack import EmbeddedValkey, kill_with_parent
from tests.support.polling import poll_until_blocking
from tests.support.port_checks import refused_to_others

pytestmark = pytest.mark.integration


def _pongs(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_a_killed_valkeys_port_is_no_one_elses_until_it_is_back_and_released_once_stopped(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey").start()
    port = server.port
    try:
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait(10)
        assert refused_to_others(port)  # down, and still not anyone else's
        with server.log_path.open("ab") as log:  # the supervisor's restart: the same command line
            server.proc = subprocess.Popen(
                server.command(), stdout=log, stderr=subprocess.STDOUT, preexec_fn=kill_with_parent
            )
        poll_until_blocking(lambda: _pongs(port), "valkey back on its port", within=10)
    finally:
        server.stop()
    # released (a plain bind may still meet the served connection's TIME_WAIT, so not tried)
    assert server.held is not None and not server.held.sockets
