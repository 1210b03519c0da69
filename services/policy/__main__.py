"""`python -m services.policy`: one policy replica, configured from the environment."""

from __future__ import annotations

from libs.common.runtime.runner import run_from_environment
from libs.common.settings import PolicySettings


def main() -> None:
    run_from_environment("policy", PolicySettings, "services.policy.service:PolicyService")


if __name__ == "__main__":
    main()
