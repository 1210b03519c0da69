"""Run service objects until SIGTERM/SIGINT, on uvloop when available.

A signal ends the process even while a `start()` still waits (for NATS, say): that start is
cancelled, and every service started or starting is stopped, last started first. A failed start
stops the services before it too, then exits with its error."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from libs.common.runtime.logs import setup_logging
from libs.common.runtime.walls.boxes import confine_service
from libs.common.settings import ServiceSettings

__all__ = ["Service", "run_from_environment", "run_service", "run_services", "serve"]

log = logging.getLogger(__name__)

_STOP_WITHIN = 15.0
_YOUNG_COLLECTION = 10_000
"""Net container allocations between two young collections (CPython's default: 700).

A young collection walks every tracked object the calls in flight still hold (16 calls in flight hold
thousands), so at 700 the collector ran several times per hundred calls and took ~2.5 % of a loaded
process's CPU (perf). Cyclic garbage waits at most this many allocations longer to be freed: the
memory it may hold meanwhile is bounded by the size limits on what a request carries."""
"""Seconds a service's `stop()` may take before the process moves on."""


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


async def serve(services: Sequence[Service]) -> None:
    """Start `services` in order, wait for a signal, stop them in reverse."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[Service] = []
    try:
        for service in services:
            started.append(service)  # its stop() releases whatever a partial start() opened
            starting = asyncio.ensure_future(service.start())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                return
            starting.result()  # a failed start exits with its error
        _settle_heap()
        await stop.wait()
        log.info("signal received; stopping")
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(service.stop(), _STOP_WITHIN)


def _settle_heap() -> None:
    """Move what start-up built (modules, pydantic schemas, settings, views) out of the cyclic collector's reach.

    It lives as long as the process, yet every full collection under load walked all of it again, for the
    few hundred short-lived objects a request leaves."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_COLLECTION, older, oldest)


def run_services(services: Sequence[Service]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux
        asyncio.run(serve(services))
    else:
        uvloop.run(serve(services))


def run_service(service: Service) -> None:
    run_services([service])


def run_from_environment(
    name: str, settings_type: Callable[[], SettingsT], service_type: Callable[[SettingsT], Service] | str
) -> None:
    """`python -m services.<name>`.

    Settings read from the environment, logging at their level, the process confined to what the
    service's job needs (`libs.common.runtime.walls`), then the service until a signal. `service_type`
    named as `"package.module:Class"` is imported only once the process is confined: its libraries may
    start threads."""
    settings = settings_type()
    setup_logging(name, settings.log_level)
    confine_service({name: settings})  # after its secrets were taken from the pipe, before any request
    make = _imported(service_type) if isinstance(service_type, str) else service_type
    run_service(make(settings))


def _imported(where: str) -> Callable[[Any], Service]:
    module, _, attribute = where.partition(":")
    made: Callable[[Any], Service] = getattr(importlib.import_module(module), attribute)
    return made
