"""`python -m services.admin`: one admin replica, configured from the environment."""

from __future__ import annotations

from libs.common.logs import setup_logging
from libs.common.runner import run_service
from libs.common.settings import AdminSettings

from .service import AdminService


def main() -> None:
    settings = AdminSettings()
    setup_logging("admin", settings.log_level)
    run_service(AdminService(settings))


if __name__ == "__main__":
    main()
