"""`python -m services.executor`: run the executor until SIGTERM or SIGINT, then shut down cleanly
(in-flight calls answered, every upstream session closed, no stdio child left behind)."""

from __future__ import annotations

from libs.common.runner import run_from_environment
from libs.common.settings import ExecutorSettings

from .service import ExecutorService


def run() -> None:
    run_from_environment("executor", ExecutorSettings, ExecutorService)


if __name__ == "__main__":
    run()
