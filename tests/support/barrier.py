"""Tests use the same barrier as the services: `libs.common.bus.nats.processed`."""

from __future__ import annotations

from libs.common.bus.nats import processed

__all__ = ["processed"]
