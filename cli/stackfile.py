"""`<data_dir>/stack.json`: how other `bastion` commands find the stack `bastion up` is running.

Written atomically (mode 0600: an external NATS/Redis URL may carry credentials) once the
infrastructure and services are started, rewritten with `ready: true` when ingress answers, and
removed on shutdown. A file whose `pid` is no longer alive is stale (the supervisor was SIGKILLed).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STACK_FILE",
    "AdminCredentials",
    "StackInfo",
    "find_admin_credentials",
    "find_nats_url",
    "read_stack",
    "remove_stack",
    "running_stack",
    "write_stack",
]

STACK_FILE = "stack.json"
StackInfo = dict[str, Any]
"""Keys: nats_url, redis_url, clickhouse_url, mcp_url, admin_url, admin_token, admin_nkey_seed_file,
secrets_key, pid, data_dir, logs_dir, config, started_at, ready."""


def write_stack(data_dir: Path, info: StackInfo) -> Path:
    path = data_dir / STACK_FILE
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    tmp.replace(path)
    return path


def read_stack(data_dir: Path) -> StackInfo | None:
    try:
        info = json.loads((data_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def remove_stack(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / STACK_FILE).unlink()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a recycled pid is not our stack
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"bastion" in cmdline
    return True


def running_stack(data_dir: Path) -> StackInfo | None:
    """The stack.json of a live `bastion up`, or None if there is none (or it is stale)."""
    info = read_stack(data_dir)
    return info if info is not None and _alive(info.get("pid")) else None


def find_nats_url(flag: str | None, data_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """--nats-url, else BASTION_NATS_URL, else the running stack's; LookupError says what to do."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if flag:
        return flag
    if env.get("BASTION_NATS_URL"):
        return env["BASTION_NATS_URL"]
    info = read_stack(data_dir)
    if info is None:
        raise LookupError(
            f"no running stack found ({data_dir / STACK_FILE} does not exist): start one with "
            "`bastion up`, or pass --nats-url / set BASTION_NATS_URL"
        )
    if not _alive(info.get("pid")):
        raise LookupError(
            f"{data_dir / STACK_FILE} is stale (pid {info.get('pid')} is not running): start the stack with "
            "`bastion up`, or pass --nats-url / set BASTION_NATS_URL"
        )
    url = info.get("nats_url")
    if not isinstance(url, str) or not url:
        raise LookupError(f"{data_dir / STACK_FILE} has no nats_url; pass --nats-url or set BASTION_NATS_URL")
    return url


@dataclass(frozen=True)
class AdminCredentials:
    """What a CLI command writing configuration needs besides the URL (empty: none configured)."""

    nkey_seed_file: str = ""
    """NKey seed of the admin role (`libs.common.bus.permissions.ADMIN`)."""
    secrets_key: str = ""
    """Fernet key(s) sealing upstream secrets (`libs.common.runtime.sealing`)."""


def find_admin_credentials(data_dir: Path, environ: Mapping[str, str] | None = None) -> AdminCredentials:
    """BASTION_NATS_NKEY_SEED_FILE and BASTION_SECRETS_KEY.

    Else what the running stack's stack.json names (the admin seed `bastion up` made, the key it seals
    with)."""
    environ = os.environ if environ is None else environ
    info = read_stack(data_dir) or {}
    seed = environ.get("BASTION_NATS_NKEY_SEED_FILE") or info.get("admin_nkey_seed_file") or ""
    key = environ.get("BASTION_SECRETS_KEY") or info.get("secrets_key") or ""
    return AdminCredentials(str(seed), str(key))
