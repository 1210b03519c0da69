"""Helpers for scale-out tests: a client transport that spreads one MCP session over several
ingress replicas, and executor, policy, ingress and codemode replicas run as real processes that a
test can SIGKILL.

Alternating replicas request by request is the worst case a non-sticky load balancer can
produce; if a session survives it, it survives any balancing.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import ClassVar, Self

import httpx2
import orjson

from tests.support.egress import LOOPBACK_UPSTREAMS

__all__ = [
    "AlternatingTransport",
    "CodeModeProcess",
    "ExecutorProcess",
    "IngressProcess",
    "PolicyProcess",
    "ServiceProcess",
]


class AlternatingTransport(httpx2.AsyncBaseTransport):
    """Sends each HTTP request to the next of `bases` (round robin), whatever URL the client used,
    and records `(replica index, HTTP method, JSON-RPC method)` so a test can prove the spread."""

    def __init__(self, bases: list[str]) -> None:
        self._bases = [httpx2.URL(b) for b in bases]
        self._next = itertools.cycle(range(len(bases)))
        self._inner = httpx2.AsyncHTTPTransport()
        self.served: list[tuple[int, str, str | None]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        index = next(self._next)
        base = self._bases[index]
        request.url = request.url.copy_with(host=base.host, port=base.port)
        rpc_method = None
        if request.method == "POST":
            body = await request.aread()
            try:
                rpc_method = orjson.loads(body).get("method")
            except (orjson.JSONDecodeError, AttributeError):
                pass
        self.served.append((index, request.method, rpc_method))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class ServiceProcess:
    """`python -m <module>` as a child process, so a test can kill it the hard way."""

    module: ClassVar[str]
    nats_url: str
    instance: str
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def environment(self) -> dict[str, str]:
        return {"BASTION_NATS_URL": self.nats_url, "BASTION_INSTANCE": self.instance, "BASTION_LOG_LEVEL": "WARNING"}

    def start(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env={**os.environ, **self.environment()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the service and its children (upstreams): no drain, no goodbye on NATS."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        # stdio upstreams of a killed executor see EOF and exit; make sure of it
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class ExecutorProcess(ServiceProcess):
    module: ClassVar[str] = "services.executor"

    def environment(self) -> dict[str, str]:
        # the suite's upstreams run on this machine, which the executor refuses unless allowed
        return {**super().environment(), "BASTION_EGRESS": LOOPBACK_UPSTREAMS.model_dump_json()}


@dataclass
class PolicyProcess(ServiceProcess):
    module: ClassVar[str] = "services.policy"
    redis_url: str
    env: dict[str, str] = field(default_factory=dict)
    """Further BASTION_* settings."""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "BASTION_REDIS_URL": self.redis_url, **self.env}


@dataclass
class IngressProcess(ServiceProcess):
    """An ingress replica on a fixed `port` (a restart must answer where the agents call)."""

    module: ClassVar[str] = "services.ingress"
    port: int
    env: dict[str, str] = field(default_factory=dict)
    """Further BASTION_* settings."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "BASTION_HOST": "127.0.0.1", "BASTION_PORT": str(self.port), **self.env}

    async def serving(self) -> bool:
        """Whether it answers its health check with tools listed: ready for calls (after a restart, too)."""
        try:
            async with httpx2.AsyncClient(trust_env=False) as http:
                response = await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return response.status_code == 200 and response.json().get("tools", 0) > 0
        except httpx2.HTTPError:
            return False

    async def call_tool(self, key: str, name: str, arguments: dict[str, object]) -> str:
        """A `tools/call` as `key`, for a call a kill of this replica may cut: the answer's text, or
        `cut: <error>` when the connection was lost first."""
        params = {"name": name, "arguments": arguments}
        body = {"jsonrpc": "2.0", "id": "c", "method": "tools/call", "params": params}
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
        try:
            async with httpx2.AsyncClient(trust_env=False, timeout=90) as http:
                return (await http.post(self.url, json=body, headers=headers)).text
        except httpx2.HTTPError as exc:
            return f"cut: {type(exc).__name__}"


@dataclass
class CodeModeProcess(ServiceProcess):
    """A codemode replica (its sandbox workers are its children: a kill takes them too); tool search
    lexical only, so it starts without loading an embedding model."""

    module: ClassVar[str] = "services.codemode"
    env: dict[str, str] = field(default_factory=dict)
    """Further BASTION_* settings."""

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "BASTION_SANDBOX_WORKERS": "1",
            "BASTION_SANDBOX_BURST_WORKERS": "0",
            "BASTION_SEARCH_EMBEDDINGS": "false",
            **self.env,
        }
