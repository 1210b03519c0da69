"""Bastion audit service: the audit stream into ClickHouse, and the audit log back out over NATS."""

from .service import AuditService

__all__ = ["AuditService"]
