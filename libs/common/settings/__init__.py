"""Service settings, read from the environment (prefix `BASTION_`).

One class per service, in a module of its own (`base` holds what they share), all exported here:
one place for ops to look (docs/configuration.md mirrors it). `bastion up` sets these for the
services it starts; in a deployment they come from the container environment.
"""

from __future__ import annotations

from .admin import AdminSettings
from .audit import AuditSettings
from .base import (
    AuditJournalSettings,
    RefusalSettings,
    RequestPathSettings,
    ServiceSettings,
    StoreSettings,
    unguarded_bind_problem,
)
from .catalog import CatalogSettings
from .codemode import CodeModeSettings
from .executor import DenyList, ExecutorSettings
from .ingress import IngressSettings
from .oauth import OAuthSettings
from .policy import PolicySettings

__all__ = [
    "AdminSettings",
    "AuditJournalSettings",
    "AuditSettings",
    "CatalogSettings",
    "CodeModeSettings",
    "DenyList",
    "ExecutorSettings",
    "IngressSettings",
    "OAuthSettings",
    "PolicySettings",
    "RefusalSettings",
    "RequestPathSettings",
    "ServiceSettings",
    "StoreSettings",
    "unguarded_bind_problem",
]
