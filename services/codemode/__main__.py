"""`python -m services.codemode`: one codemode replica (meta-tools and the sandbox pool), configured
from the environment."""

from __future__ import annotations

from libs.common.runner import run_from_environment
from libs.common.settings import CodeModeSettings

from .service import CodeModeService


def main() -> None:
    run_from_environment("codemode", CodeModeSettings, CodeModeService)


if __name__ == "__main__":
    main()
