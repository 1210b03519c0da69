"""`python -m bastion_ingress`: one ingress replica, configured from the environment."""

from __future__ import annotations

from bastion_common.logs import setup_logging
from bastion_common.runner import run_service
from bastion_common.settings import IngressSettings

from .service import IngressService


def main() -> None:
    settings = IngressSettings()
    setup_logging("ingress", settings.log_level)
    run_service(IngressService(settings))


if __name__ == "__main__":
    main()
