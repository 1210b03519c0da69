"""Health probes answered by the service's own event loop: `/livez` and `/readyz` on `BASTION_HEALTH_PORT`.

`/metrics` is served from a thread of its own (`libs.common.runtime.metrics`), so it answers while the event
loop that does the service's work is stuck; a liveness probe reading it keeps a hung service alive.
Here the loop itself answers: a loop blocked (a CPU-bound call, a deadlock) answers nothing, the
probe times out and the kubelet restarts the container.

- `/livez`: 200 whenever the loop runs. Nothing else: a NATS outage is no reason to restart a service
  (it would come back to the same outage), only not to send it traffic.
- `/readyz`: 200 when every dependency check passes (NATS connected, the service's streams and
  buckets answering), 503 naming the failing ones otherwise. Each check is bounded by `CHECK_WITHIN`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS

from libs.common.settings import ServiceSettings

__all__ = ["CHECK_WITHIN", "Probes", "nats_connected", "start_probes", "streams_reachable"]

CHECK_WITHIN = 2.0
"""Seconds one readiness check may take before it counts as failed."""

Check = Callable[[], Awaitable[str | None]]
"""A dependency check: None when it is fine, else what is wrong."""


def nats_connected(nc: NATS) -> Check:
    async def check() -> str | None:
        return None if nc.is_connected else "not connected to NATS (reconnecting)"

    return check


def streams_reachable(nc: NATS, streams: list[str]) -> Check:
    """Each stream's leader answers its info (a leaderless replicated stream does not)."""

    async def check() -> str | None:
        js = nc.jetstream(timeout=CHECK_WITHIN)
        for stream in streams:
            try:
                await js.stream_info(stream)
            except Exception as exc:
                return f"stream {stream} does not answer ({type(exc).__name__}: {exc})"
        return None

    return check


class Probes:
    """The probe endpoint of a process.

    `checks` (name -> check) decide readiness, and so does every service registered on it having finished
    its start (`started`)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.checks: dict[str, Check] = {}
        self.starting: set[str] = set()
        """Services sharing this endpoint that have not finished their start."""
        self._server: asyncio.Server | None = None
        self._users = 1

    @property
    def port(self) -> int:
        assert self._server is not None, "serve() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def serve(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._answer, host, port)

    def started(self, service: str) -> None:
        """`service` finished its start: it no longer holds readiness back."""
        self.starting.discard(service)

    async def stop(self) -> None:
        """Stop serving, once every service sharing the endpoint has stopped it."""
        self._users -= 1
        if self._users > 0 or self._server is None:
            return
        _SERVED.pop(next((k for k, v in _SERVED.items() if v is self), ("", -1)), None)
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def readiness(self) -> dict[str, str]:
        """The failing checks: name -> what is wrong (empty: ready)."""
        failing = {f"{service}.start": "still starting" for service in sorted(self.starting)}
        for name, check in self.checks.items():
            try:
                problem = await asyncio.wait_for(check(), CHECK_WITHIN * 2)
            except TimeoutError:
                problem = "did not answer in time"
            if problem is not None:
                failing[name] = problem
        return failing

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/livez":
                status, body = 200, {"service": self.service, "alive": True}
            elif path == "/readyz":
                failing = await self.readiness()
                status, body = (503 if failing else 200), {"service": self.service, "ready": not failing, **failing}
            else:
                status, body = 404, {"error": "only /livez and /readyz are served here"}
            payload = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()


_SERVED: dict[tuple[str, int], Probes] = {}
"""The endpoints of this process by address: services sharing a process (`cli.colocated`) and a
`BASTION_HEALTH_PORT` share one, its readiness theirs together."""


async def start_probes(
    service: str, settings: ServiceSettings, nc: NATS, *, streams: list[str] | None = None, **more: Check
) -> Probes | None:
    """`service`'s probes on `BASTION_HEALTH_PORT` (None when unset).

    Ready once its start ends (`Probes.started`) while NATS is connected, `streams` answer and every
    `more` check passes."""
    if settings.health_port is None:
        return None
    checks = {"nats": nats_connected(nc), **({"streams": streams_reachable(nc, streams)} if streams else {}), **more}
    key = (settings.metrics_host, settings.health_port)
    probes = _SERVED.get(key) if settings.health_port else None
    if probes is None:
        probes = Probes(service)
        await probes.serve(*key)
        _SERVED[(settings.metrics_host, probes.port)] = probes
    else:
        probes._users += 1
    probes.checks.update({f"{service}.{name}": check for name, check in checks.items()})
    probes.starting.add(service)
    return probes
