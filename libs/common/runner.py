"""Run a service object until SIGTERM/SIGINT, on uvloop when available."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Protocol

__all__ = ["Service", "run_service"]

log = logging.getLogger(__name__)


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def _serve(service: Service) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.stop(), 15)


def run_service(service: Service) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux
        asyncio.run(_serve(service))
    else:
        uvloop.run(_serve(service))
