"""The principal behind the request being handled.

Who, with which roles, from where, and what that lets them do (`roles.Grants`). Set once per request by
`admin_route.AdminRoute` after `auth` has checked the credential; read by the routes that narrow what
they answer (a key manager's keys) and by `changes` (every admin event names the principal, its role and
its address)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Literal

from libs.common.contracts.admin_principals import RoleBinding

from ..roles import Grants

__all__ = ["CURRENT", "Identity", "current"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The principal behind one request."""

    principal: str
    kind: Literal["person", "automation", "bootstrap"]
    roles: tuple[RoleBinding, ...]
    grants: Grants
    address: str
    via: Literal["token", "session", "bootstrap"]
    credential: str = field(default="", repr=False)
    """The token's id or the session's digest: what a self-service rotation or a sign-out acts on."""

    @property
    def role_label(self) -> str:
        """Its roles as audit events and answers name them: `owner`, `key_manager@team:payments`."""
        if self.kind == "bootstrap":
            return "bootstrap"
        return ",".join(binding.label() for binding in self.roles) or "none"


CURRENT: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("bastion_admin_identity", default=None)
"""The identity of the request being handled (set by `admin_route.AdminRoute`; a context variable, so
concurrent requests never mix them up)."""


def current() -> Identity:
    identity = CURRENT.get()
    if identity is None:  # a route marked public asked who is calling: a bug, not the caller's fault
        raise RuntimeError("no identity: this route is public")
    return identity
