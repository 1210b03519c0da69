"""`python -m services.executor`.

Run the executor until SIGTERM or SIGINT, then shut down cleanly (in-flight calls answered, every
upstream session closed, no stdio child left behind)."""

from __future__ import annotations

from libs.common.runtime.runner import Service, run_from_environment
from libs.common.settings import ExecutorSettings


def run() -> None:
    run_from_environment("executor", ExecutorSettings, _service)


def _service(settings: ExecutorSettings) -> Service:
    from .service import ExecutorService  # imported once the process is confined: its libraries may start threads

    return ExecutorService(settings)


if __name__ == "__main__":
    run()
