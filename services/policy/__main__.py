"""`python -m services.policy`: one policy replica, configured from the environment."""

from __future__ import annotations

from libs.common.logs import setup_logging
from libs.common.runner import run_service
from libs.common.settings import PolicySettings

from .service import PolicyService


def main() -> None:
    settings = PolicySettings()
    setup_logging("policy", settings.log_level)
    run_service(PolicyService(settings))


if __name__ == "__main__":
    main()
