"""`python -m services.executor`: run the executor until SIGTERM or SIGINT, then shut down cleanly
(in-flight calls answered, every upstream session closed, no stdio child left behind)."""

from __future__ import annotations

from libs.common.logs import setup_logging
from libs.common.runner import run_service
from libs.common.settings import ExecutorSettings

from .service import ExecutorService


def run() -> None:
    settings = ExecutorSettings()
    setup_logging("executor", settings.log_level)
    run_service(ExecutorService(settings))


if __name__ == "__main__":
    run()
