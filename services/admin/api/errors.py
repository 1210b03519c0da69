"""Every failure of the admin API as one `ErrorBody`, with the right status.

And the permission every route declares (`needs`), which `admin_route.AdminRoute` checks before the route
runs.

Validation details lose their `input`: a server's `env` or `headers` usually hold credentials.
"""

from __future__ import annotations

import logging
from typing import Any

from ..roles import AUTHENTICATED, PERMISSIONS, PUBLIC, Scope
from .identity import Identity
from .models import ErrorBody, FieldError

__all__ = [
    "PERMISSION_KEY",
    "AdminError",
    "documented",
    "forbidden",
    "invalid",
    "needs",
    "permission_of",
]

log = logging.getLogger(__name__)

PERMISSION_KEY = "x-bastion-permission"
"""Where a route declares its permission: its OpenAPI operation (`/docs` shows it on every route)."""


class AdminError(Exception):
    """An answer other than success: HTTP status, machine code, one human line, fields at fault."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        detail: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        permission: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.detail, self.headers = status, error, message, detail, headers
        self.permission = permission


def forbidden(identity: Identity, permission: str, scope: Scope | None = None, why: str = "") -> AdminError:
    """403 naming the permission (and the team or customer) the principal lacks, and `why` it is needed."""
    where = f" for {scope}" if scope is not None else ""
    because = f": {why}" if why else ""
    return AdminError(
        403,
        "forbidden",
        f"{identity.principal} ({identity.role_label}) lacks the permission {permission!r}{where}{because}",
        permission=permission,
    )


def needs(permission: str) -> dict[str, Any]:
    """A route's declaration (`openapi_extra=needs("keys:write")`).

    The permission it requires, or `roles.PUBLIC` / `roles.AUTHENTICATED`. A name that is neither fails
    when the app is built."""
    if permission not in PERMISSIONS and permission not in (PUBLIC, AUTHENTICATED):
        raise ValueError(f"{permission!r} is not a permission (libs: services/admin/roles.py PERMISSIONS)")
    return {PERMISSION_KEY: permission}


def permission_of(route: object) -> str | None:
    """What a route declared, or None (a route that is not an admin route, or declared nothing)."""
    return getattr(route, "permission", None)


def _path(loc: list[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def invalid(detail: list[FieldError], error: str = "validation_error") -> AdminError:
    """A 422 whose message names the first field at fault (and counts the others)."""
    first = detail[0]
    more = f" (and {len(detail) - 1} more problem(s))" if len(detail) > 1 else ""
    return AdminError(422, error, f"{_path(first.loc)}: {first.msg}{more}", detail)


_DESCRIPTIONS = {
    400: "A policy text that does not compile (`invalid_policy`): the message names the line of the first problem",
    401: "No credential, or not a valid one (unknown, expired or revoked token; ended session)",
    403: "The principal lacks the route's permission (named in `permission`), or a virtual key was sent",
    404: "No such record, or a path the route cannot hold (a line break, or a `/` in a name that takes none)",
    409: "Already exists, or changed since it was read (stale `If-Match` or a concurrent write)",
    422: "Invalid request: the message and `detail` name the field",
    503: "NATS, or the service this route asks, unreachable",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}
