"""`python -m services.admin`: one admin replica, configured from the environment."""

from __future__ import annotations

from libs.common.runtime.runner import run_from_environment
from libs.common.settings import AdminSettings


def main() -> None:
    run_from_environment("admin", AdminSettings, "services.admin.service:AdminService")


if __name__ == "__main__":
    main()
