"""`python -m services.audit`: the audit writer and query responder, configured from the environment."""

from __future__ import annotations

from libs.common.logs import setup_logging
from libs.common.runner import run_service
from libs.common.settings import AuditSettings

from .service import AuditService


def main() -> None:
    settings = AuditSettings()
    setup_logging("audit", settings.log_level)
    run_service(AuditService(settings))


if __name__ == "__main__":
    main()
