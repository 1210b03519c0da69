"""`python -m services.ingress`: one ingress replica, configured from the environment."""

from __future__ import annotations

from libs.common.logs import setup_logging
from libs.common.runner import run_service
from libs.common.settings import IngressSettings

from .service import IngressService


def main() -> None:
    settings = IngressSettings()
    setup_logging("ingress", settings.log_level)
    run_service(IngressService(settings))


if __name__ == "__main__":
    main()
