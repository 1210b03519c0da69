"""`python -m bastion_codemode`: one codemode replica (meta-tools and the sandbox pool), configured
from the environment."""

from __future__ import annotations

from bastion_common.logs import setup_logging
from bastion_common.runner import run_service
from bastion_common.settings import CodeModeSettings

from .service import CodeModeService


def main() -> None:
    settings = CodeModeSettings()
    setup_logging("codemode", settings.log_level)
    run_service(CodeModeService(settings))


if __name__ == "__main__":
    main()
