"""Tests use the same barrier as the services: `bastion_common.nats.processed`."""

from __future__ import annotations

from bastion_common.nats import processed

__all__ = ["processed"]
