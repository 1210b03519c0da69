"""Tests use the same barrier as the services: `libs.common.nats.processed`."""

from __future__ import annotations

from libs.common.nats import processed

__all__ = ["processed"]
