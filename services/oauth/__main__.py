"""`python -m services.oauth`: one oauth replica, configured from the environment."""

from __future__ import annotations

from libs.common.logs import setup_logging
from libs.common.runner import run_service
from libs.common.settings import OAuthSettings

from .service import OAuthService


def main() -> None:
    settings = OAuthSettings()
    setup_logging("oauth", settings.log_level)
    run_service(OAuthService(settings))


if __name__ == "__main__":
    main()
