"""Who may use the admin API.

Principals (people and automation) and their API tokens, as stored in KV `bastion_admin`
(`subjects.KV_ADMIN`, readable and writable by the admin role alone).

A contract between the admin service, which manages them, and `bastion up`, which makes the local
stack's first owner directly in the bucket. A token is shown once, when it is made; the bucket
keeps only its sha256 (a token is 256 random bits: a fast hash is enough, as for virtual keys), which
is also its id. A principal's name may hold `@` (`alice@example.com`), which KV keys may not:
principal keys carry the name hex-encoded.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.common.contracts.messages_base import BusMessage

__all__ = [
    "MAX_TOKEN_DAYS",
    "OWNER",
    "PRINCIPAL_NAME",
    "ROLE_NAME",
    "TOKEN_PREFIX",
    "ApiToken",
    "Principal",
    "PrincipalName",
    "RoleBinding",
    "new_token",
    "principal_key",
    "principal_name_of",
    "token_digest",
    "token_key",
]

TOKEN_PREFIX: Final = "bat_"
"""Admin API tokens start with it (virtual keys with `bk_`): a secret scanner, or a person, tells them apart."""
OWNER: Final = "owner"
"""The built-in role that may do everything, principals and roles included."""
MAX_TOKEN_DAYS: Final = 366
"""Longest life of an API token: every token expires (rotate it before)."""

PRINCIPAL_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,127}$")
"""Lower case: an e-mail address (`alice@example.com`) or a name (`ci-bot`)."""
ROLE_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

PrincipalName = Annotated[str, Field(pattern=PRINCIPAL_NAME.pattern, examples=["alice@example.com", "ci-bot"])]
_Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class RoleBinding(BaseModel):
    """One role a principal holds.

    Everywhere, or (`team_id` / `customer_id`) only over the objects lying wholly inside that team or
    customer (keys, tool groups, the directory), where only the role's tenant permissions apply
    (services/admin/roles.py `SCOPABLE`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Annotated[str, Field(pattern=ROLE_NAME.pattern, examples=["operator", "key_manager"])]
    team_id: _Slug | None = None
    customer_id: _Slug | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> Self:
        if self.team_id is not None and self.customer_id is not None:
            raise ValueError("a role binding is scoped to a team or to a customer, not both")
        return self

    @property
    def scoped(self) -> bool:
        return self.team_id is not None or self.customer_id is not None

    def label(self) -> str:
        """`owner`, `key_manager@team:payments`: how audit events and listings name it."""
        if self.team_id is not None:
            return f"{self.role}@team:{self.team_id}"
        if self.customer_id is not None:
            return f"{self.role}@customer:{self.customer_id}"
        return self.role


class Principal(BusMessage):
    name: str
    kind: Literal["person", "automation"]
    """A person signs in through the oauth service (as `user_id`) and may hold API tokens; automation
    holds API tokens only."""
    user_id: str | None = None
    """A person's Bastion user (the built-in user store or the OpenID provider): who they sign in as."""
    roles: list[RoleBinding] = Field(default_factory=list)
    disabled: bool = False
    """A disabled principal's tokens and sessions are refused (they stay, for the audit trail)."""
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    created_by: str = ""


class ApiToken(BusMessage):
    id: str
    """The sha256 hex of the token: its key in the bucket and how it is named everywhere."""
    principal: str
    label: str = ""
    created_at: float = Field(default_factory=time.time)
    expires_at: float
    revoked: bool = False
    created_by: str = ""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def principal_key(name: str) -> str:
    return "principal." + name.encode().hex()


def principal_name_of(key_id: str) -> str:
    """The name in a principal's key (without its `principal.` prefix)."""
    return bytes.fromhex(key_id).decode()


def token_key(digest: str) -> str:
    return "token." + digest
