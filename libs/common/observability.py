"""A service's observability switched on from its settings: tracing (`tracing`) and `/metrics`
(`metrics`). Each service calls `start` first thing in its own `start()` and `stop` last."""

from __future__ import annotations

import logging

from . import tracing
from .metrics import MetricsServer, serve
from .settings import ServiceSettings

__all__ = ["start"]

log = logging.getLogger(__name__)


def start(service: str, settings: ServiceSettings) -> MetricsServer | None:
    """Configure tracing (on only with an OTLP endpoint) and serve `/metrics` when a port is set."""
    tracing.configure(service, settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio)
    if settings.metrics_port is None:
        return None
    server = serve(settings.metrics_host, settings.metrics_port)
    log.info("%s metrics at %s", service, server.url)
    return server
