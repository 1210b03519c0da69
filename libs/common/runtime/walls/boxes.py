"""Each service's box, from its settings, and the one call that puts a service process in it.

| service | writes | may also read | binds | connects |
|---|---|---|---|---|
| ingress | its audit journal slot | its NKey seed | gateway, metrics | any |
| admin | its audit journal slot | its NKey seed | admin, metrics | any |
| policy | nothing | its NKey seed | metrics | NATS, Valkey, OTLP, the approval webhook |
| audit | its ClickHouse store | its NKey seed | metrics | NATS, ClickHouse, OTLP |
| codemode | its audit journal slot, the search cache, the written needs | its NKey seed, needs file | metrics | any |
| oauth | nothing | its NKey seed, clients file | metrics | any |
| executor | stdio servers' working folders | every path but the data dir and `/dev` | metrics | any |

Everyone also reads the system and its own Python (`box_for`), writes a private temporary
folder, and uses the device nodes of `DEVICES` only. Services that call out to hosts only an
operator knows (identity providers, upstreams, LLM providers, Vault) may connect anywhere; the
others only to the ports their URLs name. The system calls each may make: docs/security.md.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from pydantic import BaseModel, SecretStr

from libs.common.runtime.package_version import bastion_version
from libs.common.runtime.walls.confine import Confinement, Limits, Outcome, confine
from libs.common.runtime.walls.profiles import (
    DEVICES,
    HOST_SECRETS,
    SYSTEM_EXECUTE,
    SYSTEM_READ,
    everything_but,
    own_packages,
    private_tmp,
    python_paths,
    url_ports,
    within,
)

__all__ = ["box_for", "confine_service", "merged"]

log = logging.getLogger(__name__)

_NATS_PORT: Final = 4222
_WRITTEN_FILES: Final = frozenset({"search_cache_file", "search_needs_written_file"})
"""`*_file` settings a service rewrites or appends to: their folder is writable, not only the file readable."""


def _value(settings: BaseModel, name: str) -> Any:
    value = getattr(settings, name, None)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _own_files(service: str, settings: BaseModel) -> tuple[list[str], list[str]]:
    """(files it reads, folders it writes): every `*_file` and `*_dir` setting it has set.

    Of the audit journal's folder, only its own slot (`libs.common.audit.audit_journal.open_slot`: the
    replica's instance, else the service's name), so one producer cannot rewrite what another owes."""
    reads, writes = [], []
    for name in type(settings).model_fields:
        value = _value(settings, name)
        if not isinstance(value, str) or not value or name == "data_dir":
            continue
        if name == "audit_journal_dir":
            value = os.path.join(value, str(_value(settings, "instance") or service))
        if name.endswith("_dir"):
            os.makedirs(value, mode=0o700, exist_ok=True)
            writes.append(value)
        elif name in _WRITTEN_FILES:
            os.makedirs(os.path.dirname(value) or ".", exist_ok=True)
            writes.append(os.path.dirname(value) or ".")
        elif name.endswith("_file"):
            reads.append(value)
    return reads, writes


def _chdb_store(url: str) -> list[str]:
    """The embedded store's folder and its lock file beside it (`services.audit.ownership`), made now.

    The box lets the service write that one file, not create files beside the store."""
    if not url.startswith("chdb://"):
        return []
    path = url.removeprefix("chdb://").rstrip("/")
    os.makedirs(path, exist_ok=True)
    os.close(os.open(f"{path}.owner", os.O_WRONLY | os.O_CREAT, 0o600))
    return [path, f"{path}.owner"]


def _binds(settings: BaseModel, *ports: str) -> list[int]:
    chosen = [_value(settings, name) for name in (*ports, "metrics_port", "health_port")]
    return sorted({int(port) for port in chosen if isinstance(port, int)})


def _outbound(settings: BaseModel, *urls: str) -> list[int]:
    nats = url_ports([str(_value(settings, "nats_url") or "")], _NATS_PORT)
    named = url_ports([str(_value(settings, url) or "") for url in urls], 80)
    return sorted({*nats, *named})


def _data_dir(services: Mapping[str, BaseModel]) -> str:
    return next((str(_value(s, "data_dir")) for s in services.values() if _value(s, "data_dir")), "")


def _protected(settings: BaseModel) -> list[str]:
    data_dir = str(_value(settings, "data_dir") or "")
    return [data_dir] if data_dir else []


def _protects(path: str, protected: Sequence[str]) -> bool:
    """Whether `path` is, lies in or holds a protected folder."""
    return any(within(path, folder) or within(folder, path) for folder in protected)


def _executor_reads(settings: BaseModel, protected: Sequence[str]) -> dict[str, Any]:
    root = str(_value(settings, "stdio_root") or "")
    if root:
        os.makedirs(root, exist_ok=True)
    # `/dev` left out: disks, /dev/kvm, /dev/fuse and terminals are no server's; DEVICES are granted
    anything = everything_but([*protected, "/dev", *(os.path.expanduser(path) for path in HOST_SECRETS)])
    widened = [str(path) for path in _value(settings, "stdio_write") or () if not _protects(path, protected)]
    own = [root, *widened] if root else widened
    # executed too: a server runs what its package tool put in its working folder (uvx's virtualenv,
    # an npm package's native binary). memfd_create allowed: its servers' boxes lie inside this one
    # (seccomp filters stack), and a server may need it (`stdio_sandbox`)
    return {"read": anything, "write": own, "execute": [*anything, *own], "memfd": True}


_SPECIAL: Final[Mapping[str, Callable[[BaseModel, Sequence[str]], dict[str, Any]]]] = {
    "audit": lambda s, _: {
        "write": _chdb_store(str(_value(s, "clickhouse_url"))),
        "connect_ports": _outbound(s, "clickhouse_url", "otlp_endpoint"),
    },
    # the webhook's port only: which host on it, the egress rules decide in the process (`approval_desk`)
    "policy": lambda s, _: {"connect_ports": _outbound(s, "redis_url", "otlp_endpoint", "approval_webhook_url")},
    "ingress": lambda s, _: {"bind_ports": _binds(s, "port")},
    "admin": lambda s, _: {"bind_ports": _binds(s, "admin_port")},
    "executor": _executor_reads,
    # its Starlark workers are `python -I -m services.codemode.worker` children
    "codemode": lambda s, protected: {"execute": [*SYSTEM_EXECUTE, *python_paths(protected)]},
}


def box_for(service: str, settings: BaseModel, tmp: str) -> Confinement:
    """The box `service` runs in, configured by `settings`, with `tmp` as its temporary folder."""
    protected = _protected(settings)
    reads, writes = _own_files(service, settings)
    special = _SPECIAL[service](settings, protected) if service in _SPECIAL else {}
    return Confinement(
        read=[*SYSTEM_READ, *python_paths(protected), *own_packages(), *reads, *special.get("read", [])],
        write=[*writes, tmp, *special.get("write", [])],
        execute=special.get("execute", []),
        devices=list(DEVICES),
        bind_ports=special.get("bind_ports", _binds(settings)),
        connect_ports=special.get("connect_ports"),
        limits=Limits(core_bytes=0),
        memfd=bool(special.get("memfd", False)),
    )


def merged(boxes: Sequence[Confinement]) -> Confinement:
    """One box for several services sharing a process: what any of them may do."""

    def union(field: str) -> list[Any]:
        return sorted({item for box in boxes for item in getattr(box, field)})

    def ports(field: str) -> list[int] | None:
        chosen = [getattr(box, field) for box in boxes]
        return None if any(p is None for p in chosen) else sorted({p for group in chosen for p in group})

    return dataclasses.replace(
        boxes[0],
        read=union("read"),
        execute=union("execute"),
        write=union("write"),
        devices=union("devices"),
        bind_ports=ports("bind_ports"),
        connect_ports=ports("connect_ports"),
        memfd=any(box.memfd for box in boxes),
    )


def confine_service(services: Mapping[str, BaseModel]) -> Outcome | None:
    """Put this process, running `services` (name -> its settings), in their box.

    Log what the kernel enforces and what it cannot. Nothing when every service's `confine` setting is
    off."""
    if not all(_value(settings, "confine") for settings in services.values()):
        log.warning("OS confinement is OFF (BASTION_CONFINE=false): this process may touch every file its user may")
        return None
    name = "+".join(services)
    tmp = private_tmp(name, _data_dir(services))
    box = merged([box_for(service, settings, tmp) for service, settings in services.items()])
    bastion_version()  # read while the metadata may be read (`libs.common.runtime.package_version`)
    outcome = confine(box)
    where = f"{len(box.read)} read, {len(box.write)} write paths"
    log.info("%s confined by the OS: %s; %s", name, outcome.summary(), where)
    if outcome.missing_paths:
        log.debug("paths not present, left out of the box: %s", ", ".join(outcome.missing_paths))
    return outcome
