"""`python -m services.ingress`: one ingress replica, configured from the environment."""

from __future__ import annotations

from libs.common.runtime.runner import run_from_environment
from libs.common.settings import IngressSettings


def main() -> None:
    run_from_environment("ingress", IngressSettings, "services.ingress.service:IngressService")


if __name__ == "__main__":
    main()
