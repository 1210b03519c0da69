"""`python -m services.oauth`: one oauth replica, configured from the environment."""

from __future__ import annotations

from libs.common.runtime.runner import run_from_environment
from libs.common.settings import OAuthSettings


def main() -> None:
    run_from_environment("oauth", OAuthSettings, "services.oauth.service:OAuthService")


if __name__ == "__main__":
    main()
