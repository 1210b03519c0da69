"""`python -m bastion_executor`: run the executor until SIGTERM or SIGINT, then shut down cleanly
(in-flight calls answered, every upstream session closed, no stdio child left behind)."""

from __future__ import annotations

import asyncio
import logging
import signal

from bastion_common.logs import setup_logging
from bastion_common.settings import ExecutorSettings

from .service import ExecutorService

log = logging.getLogger("bastion_executor")


async def main(settings: ExecutorSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = ExecutorService(settings)
    starting = asyncio.create_task(service.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        # a signal must end the process even while start() is still waiting for NATS
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a failed start exits with its error
            await stopping
        log.info("signal received; shutting down")
    finally:
        starting.cancel()
        stopping.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        await service.stop()


def run() -> None:
    settings = ExecutorSettings()
    setup_logging("executor", settings.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for Windows
        asyncio.run(main(settings))
    else:
        uvloop.run(main(settings))


if __name__ == "__main__":
    run()
