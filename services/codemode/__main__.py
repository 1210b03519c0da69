"""`python -m services.codemode`: one codemode replica (meta-tools and the sandbox pool), configured
from the environment."""

from __future__ import annotations

from libs.common.logs import setup_logging
from libs.common.runner import run_service
from libs.common.settings import CodeModeSettings

from .service import CodeModeService


def main() -> None:
    settings = CodeModeSettings()
    setup_logging("codemode", settings.log_level)
    run_service(CodeModeService(settings))


if __name__ == "__main__":
    main()
