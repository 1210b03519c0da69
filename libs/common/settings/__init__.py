"""Service settings, read from the environment (prefix `BASTION_`).

One class per service, in a module of its own (`base` holds what they share), all exported here:
one place for ops to look (docs/configuration.md mirrors it). `bastion up` sets these for the
services it starts; in a deployment they come from the container environment. `handed_secrets`
reads the secrets `bastion up` hands a process through a pipe.
Below: contracts. Above: runtime, bus and the rest.
"""

from __future__ import annotations

from libs.common.settings.admin import AdminSettings
from libs.common.settings.audit import AuditSettings
from libs.common.settings.base import (
    AuditJournalSettings,
    RefusalSettings,
    RequestPathSettings,
    ServiceSettings,
    StoreSettings,
    unguarded_bind_problem,
)
from libs.common.settings.catalog import CatalogSettings
from libs.common.settings.codemode import CodeModeSettings
from libs.common.settings.executor import DenyList, ExecutorSettings
from libs.common.settings.ingress import IngressSettings
from libs.common.settings.oauth import OAuthSettings
from libs.common.settings.policy import PolicySettings

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
