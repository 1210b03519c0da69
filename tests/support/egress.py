"""What the test suite's executors may reach besides public addresses: its own upstreams, which run
on this machine (`libs.common.contracts.egress` refuses loopback otherwise)."""

from __future__ import annotations

from libs.common.contracts.egress import EgressSection
from libs.common.web.egress_rules import EgressRules

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_RULES", "LOOPBACK_UPSTREAMS"]

LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]
"""The hosts the suite's upstream servers are reached under."""
LOOPBACK_UPSTREAMS = EgressSection(allow_private_hosts=LOOPBACK_HOSTS)
"""The `egress` section a test stack's executor runs with unless the test's configuration has its own."""
LOOPBACK_RULES = EgressRules(LOOPBACK_HOSTS)
"""The rules for clients and connectors a test builds itself (`upstreams.mcp.http_client`, `OpenApiConnector`)."""
