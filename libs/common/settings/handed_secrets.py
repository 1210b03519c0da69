"""Secrets a supervisor hands a service through an inherited descriptor, never its environment.

Any process of the same Unix user can read another's `/proc/<pid>/environ` (an analytics query once
read the other services' keys there). `bastion up` therefore starts each service with only
`BASTION_SECRETS_FD=<n>` in its environment: descriptor `n` is the read end of a pipe holding a JSON
object of that service's secret settings (`{"BASTION_SECRETS_KEY": "..."}`), or, for services sharing
one process (`cli.colocated`), one such object per service (`{"ingress": {...}, "executor": {...}}`).
The service reads it once, at its first settings, and closes it; its children inherit nothing.

Settings read these before the environment (`HandedSecrets`, a pydantic-settings source of
`ServiceSettings`); without the variable, they come from the environment as before (a container's
secrets, e.g. Kubernetes `secretKeyRef`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Final

from pydantic_settings.sources import EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

__all__ = ["FD_VARIABLE", "MAX_BYTES", "HandedSecrets", "handed", "serving"]

FD_VARIABLE: Final = "BASTION_SECRETS_FD"
MAX_BYTES: Final = 60 * 1024
"""Bytes a handover may hold: less than a pipe's buffer, so the parent writes it without waiting."""

_handed: dict[str, object] | None = None
_serving: Mapping[str, str] | None = None


def handed() -> dict[str, object]:
    """What the parent wrote to the descriptor named by `BASTION_SECRETS_FD`.

    (Read once; the descriptor is closed and the variable removed), or nothing without one."""
    global _handed
    if _handed is None:
        fd = os.environ.pop(FD_VARIABLE, "").strip()
        if not fd:
            _handed = {}
        else:
            with os.fdopen(int(fd), "rb") as pipe:  # closed after this one read
                data = pipe.read(MAX_BYTES + 1)
            loaded = json.loads(data) if data else {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{FD_VARIABLE}: the handed secrets are not a JSON object")
            _handed = loaded
    return _handed


def _variables() -> dict[str, str]:
    """The secret variables of the settings being built.

    The service's being built in a shared process (`serving`), else the process's own (a flat object)."""
    if _serving is not None:
        return dict(_serving)
    return {name: value for name, value in handed().items() if isinstance(value, str)}


@contextlib.contextmanager
def serving(service: str) -> Iterator[None]:
    """Settings built inside read the secrets handed for `service` (several services, one process)."""
    global _serving
    own = handed().get(service, {})
    before, _serving = _serving, (own if isinstance(own, dict) else {})
    try:
        yield
    finally:
        _serving = before


class HandedSecrets(EnvSettingsSource):
    """The handed secrets as a settings source, parsed exactly like environment variables."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(_variables(), self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)
