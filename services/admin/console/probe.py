"""A connectivity test for an upstream server's configuration before it is saved.

Connect as the executor would, list its tools, and answer them or the error.

Remote servers only (streamable HTTP, HTTP+SSE): a stdio server is a command, which runs on the
executors' hosts, not on the admin service's; the console saves it and watches the status the
executor reports instead. The test holds no state and writes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel, Field

from libs.common.contracts.config import ServerConfig
from libs.common.web.egress_rules import EgressRules

from .mcp_client import connected, failure, list_all_tools

__all__ = ["PROBE_SECONDS", "ProbeAnswer", "probe"]

PROBE_SECONDS = 20.0


class ProbeAnswer(BaseModel):
    ok: bool
    tools: list[str] = Field(default_factory=list)
    """The upstream's tool names, in its order."""
    protocol_version: str | None = None
    error: str | None = None
    """Why the test failed, one line (credentials and the URL left out)."""


async def probe(config: ServerConfig, allowed: Sequence[str] = ()) -> ProbeAnswer:
    """Connect to the remote server of `config` (its `headers` open, never echoed) and list its tools.

    Held to the executors' egress rules: public addresses, the hosts `allowed` for every server (the
    configuration's `egress.allow_private_hosts`) and the entry's own `allow_private_hosts`."""
    assert config.url is not None, "a remote server: the caller checks the transport"
    rules = EgressRules([*allowed, *config.allow_private_hosts])
    sse = config.transport == "sse"
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            async with connected(config.url, dict(config.headers), sse=sse, rules=rules) as client:
                tools = await list_all_tools(client)
                version = client.protocol_version
    except TimeoutError:
        return ProbeAnswer(ok=False, error=f"no answer within {PROBE_SECONDS:.0f} s")
    except Exception as exc:  # every failure of a foreign server is the answer, not ours
        return ProbeAnswer(ok=False, error=failure(exc, config.url))
    return ProbeAnswer(ok=True, tools=[str(t.get("name", "")) for t in tools], protocol_version=version)
