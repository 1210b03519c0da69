"""A service's HTTP server that cannot bind says so as the `OSError` it was, naming the address:
uvicorn itself logs the error and exits, which reached the service's start as a bare `SystemExit`."""

from __future__ import annotations

import errno
import socket

import pytest
import uvicorn
from starlette.applications import Starlette

from libs.common.web.http_serving import serve_http

pytestmark = pytest.mark.unit


async def test_a_taken_port_is_an_address_in_use_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = uvicorn.Config(Starlette(), host="127.0.0.1", port=port, log_level="critical", lifespan="off")
        with pytest.raises(OSError) as refused:
            await serve_http(config, "ingress")
    assert refused.value.errno == errno.EADDRINUSE
    assert f"ingress could not listen on 127.0.0.1:{port}" in str(refused.value)


async def test_a_free_port_serves_and_stops() -> None:
    config = uvicorn.Config(Starlette(), host="127.0.0.1", port=0, log_level="critical", lifespan="off")
    serving = await serve_http(config, "admin")
    assert serving.port > 0
    await serving.stop()
    assert serving.task.done()
