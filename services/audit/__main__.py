"""`python -m services.audit`: the audit writer and query responder, configured from the environment."""

from __future__ import annotations

from libs.common.runtime.runner import run_from_environment
from libs.common.settings import AuditSettings


def main() -> None:
    run_from_environment("audit", AuditSettings, "services.audit.service:AuditService")


if __name__ == "__main__":
    main()
