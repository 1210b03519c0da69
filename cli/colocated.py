"""`python -m cli.colocated executor ingress`: several services as one process.

Each service is built exactly as its own `python -m services.<svc>` would build it, from its own
variables (`own_variables`) laid over this process's environment while its settings are read, and
its own secrets (handed per service through the pipe `bastion up` gives the process,
`libs.common.settings.handed_secrets`), with its own NATS connection, NKey and role. What changes is
the lane between them
(`libs.common.bus.local_lane`): a message one of them sends to a subscriber in this process is handed
over in memory instead of crossing nats-server.
The services still speak only NATS subjects and contracts to each other, so a co-located replica and
separate ones serve the same bus side by side.

Services start in the order given and stop in reverse: `bastion up` lists ingress last, so it stops
first and no request is accepted that cannot be finished. Killing the process takes all of them down
together; the supervisor restarts it as one child (named after ingress, whose log it writes).
Tracing, when on, names the process after the first service (one OpenTelemetry provider per process).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Final, Protocol

from libs.common.bus import local_lane
from libs.common.runtime.logs import setup_logging
from libs.common.runtime.runner import Service, run_services
from libs.common.runtime.walls.boxes import confine_service
from libs.common.settings import ServiceSettings, handed_secrets

__all__ = ["COLOCATED_ENV", "main"]

COLOCATED_ENV: Final = "BASTION_COLOCATED_ENV"


class _Configured(Service, Protocol):
    @property
    def settings(self) -> ServiceSettings: ...


def _ingress() -> _Configured:
    from libs.common.settings import IngressSettings
    from services.ingress.service import IngressService

    return IngressService(IngressSettings())


def _executor() -> _Configured:
    from libs.common.settings import ExecutorSettings
    from services.executor.service import ExecutorService

    return ExecutorService(ExecutorSettings())


BUILDERS: Final[Mapping[str, Callable[[], _Configured]]] = {"ingress": _ingress, "executor": _executor}
"""The services that may share a process: the request path. Policy keeps its own (it owns the
Redis counters and signs work), audit owns its ClickHouse store, codemode runs untrusted scripts."""


@contextlib.contextmanager
def _environment(overlay: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in overlay}
    os.environ.update(overlay)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def own_variables(names: list[str], environ: MutableMapping[str, str]) -> dict[str, dict[str, str]]:
    """Each service's own variables, taken out of `environ` (so no child process inherits them).

    `BASTION_<SERVICE>__<NAME>` as its `BASTION_<NAME>` (what a manifest can fill from secrets), then the
    JSON object `BASTION_COLOCATED_ENV` (what `bastion up` passes, its secrets apart) on top."""
    own: dict[str, dict[str, str]] = {name: {} for name in names}
    for name in names:
        prefix = f"BASTION_{name.upper()}__"
        for variable in [v for v in environ if v.startswith(prefix)]:
            own[name]["BASTION_" + variable[len(prefix) :]] = environ.pop(variable)
    for name, overlay in json.loads(environ.pop(COLOCATED_ENV, "") or "{}").items():
        own.setdefault(name, {}).update(overlay)
    return own


def build(names: list[str], environments: Mapping[str, Mapping[str, str]]) -> list[_Configured]:
    unknown = [name for name in names if name not in BUILDERS]
    if unknown or not names:
        raise SystemExit(f"colocated: can run {', '.join(BUILDERS)}; got {', '.join(names) or 'nothing'}")
    services = []
    for name in names:
        with _environment(environments.get(name, {})), handed_secrets.serving(name):
            services.append(BUILDERS[name]())
    return services


def main(argv: list[str] | None = None) -> None:
    names = list(sys.argv[1:] if argv is None else argv)
    environments = own_variables(names, os.environ)
    setup_logging("+".join(names), os.environ.get("BASTION_LOG_LEVEL", "INFO"))
    local_lane.enable()
    services = build(names, environments)
    confine_service({name: service.settings for name, service in zip(names, services, strict=True)})
    run_services(services)


if __name__ == "__main__":
    main()
