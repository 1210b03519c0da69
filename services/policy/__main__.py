"""`python -m services.policy`: one policy replica, configured from the environment."""

from __future__ import annotations

from libs.common.runner import run_from_environment
from libs.common.settings import PolicySettings

from .service import PolicyService


def main() -> None:
    run_from_environment("policy", PolicySettings, PolicyService)


if __name__ == "__main__":
    main()
