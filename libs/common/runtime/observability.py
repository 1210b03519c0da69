"""A service's observability switched on from its settings: tracing (`tracing`) and `/metrics` (`metrics`).

Each service calls `start` first thing in its own `start()` and `stop` last (it ends the health probes
too)."""

from __future__ import annotations

import logging

from libs.common.runtime import tracing
from libs.common.runtime.metrics import MetricsServer, serve
from libs.common.runtime.probes import Probes
from libs.common.settings import ServiceSettings

__all__ = ["start", "stop"]

log = logging.getLogger(__name__)


def start(service: str, settings: ServiceSettings) -> MetricsServer | None:
    """Configure tracing (on only with an OTLP endpoint) and serve `/metrics` when a port is set."""
    tracing.configure(service, settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio)
    if settings.metrics_port is None:
        return None
    server = serve(settings.metrics_host, settings.metrics_port)
    log.info("%s metrics at %s", service, server.url)
    return server


async def stop(metrics_server: MetricsServer | None, probes: Probes | None) -> None:
    """The last step of a service's `stop()`.

    Its `/metrics` and its health probes no longer served (each only once every service sharing the
    endpoint has stopped it)."""
    if metrics_server is not None:
        metrics_server.close()
    if probes is not None:
        await probes.stop()
