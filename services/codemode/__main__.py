"""`python -m services.codemode`.

One codemode replica (meta-tools and the sandbox pool), configured from the environment."""

from __future__ import annotations

from libs.common.runtime.runner import run_from_environment
from libs.common.settings import CodeModeSettings


def main() -> None:
    run_from_environment("codemode", CodeModeSettings, "services.codemode.service:CodeModeService")


if __name__ == "__main__":
    main()
