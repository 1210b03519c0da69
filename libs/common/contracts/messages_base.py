"""What every bus message shares: the envelope, ids, the caller and the gateway's error (`messages`)."""

from __future__ import annotations

import itertools
import os
from typing import Any, Literal, Self, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libs.common.contracts.errors import ErrorKind

__all__ = ["SCHEMA_VERSION", "BusMessage", "Caller", "Execution", "GatewayError", "InterceptorDecision", "new_id"]

SCHEMA_VERSION = 1


def _fresh_prefix() -> None:
    global _prefix
    _prefix = os.urandom(8).hex()


_prefix = ""
_counter = itertools.count(1)
_fresh_prefix()
os.register_at_fork(after_in_child=_fresh_prefix)


def new_id() -> str:
    """32 hex digits, the shape of `uuid4().hex`, without `uuid4`'s system call per id.

    (It reads `os.urandom`; several ids per call add up on the hot path): 64 random bits drawn once per
    process (again in a forked child), then a counter. Not the `random` module: tests and libraries seed
    its shared state (hypothesis does, per example), which would repeat ids, and a repeated batch id is
    dropped by JetStream as a duplicate. Ids are unique, not secret: nothing may use one as a credential."""
    return f"{_prefix}{next(_counter):016x}"


Execution = Literal["ran", "not_run", "may_have_run"]
"""Whether the upstream ran a request: it answered ("ran"), it was never sent ("not_run"), or the
gateway lost track after sending it, or cannot tell whether it was sent ("may_have_run")."""


class BusMessage(BaseModel):
    """The envelope every bus message and stored record shares: a schema version, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=False)
    v: int = SCHEMA_VERSION
    """Schema version of the envelope; consumers ignore fields they do not know."""

    @classmethod
    def parsed(cls, data: bytes) -> Self | None:
        """`data` as this message, or None when it is not one.

        What a listener to a broadcast (a cancel every replica hears) ignores instead of failing on."""
        try:
            return cls.model_validate_json(data)
        except ValidationError:
            return None


class Owner(TypedDict):
    """Who an audit event is charged to, beside its key (`Caller.owner`)."""

    user_id: str | None
    team_id: str | None
    customer_id: str | None


class Caller(BaseModel):
    """Who is calling: resolved by ingress from the bearer key or OAuth access token, never the secret itself."""

    key_id: str
    """The key's id, or `user:<id>` for an OAuth access token (`libs.common.contracts.oauth.USER_CALLER_PREFIX`)."""
    key_name: str
    user_id: str | None = None
    """The user the request acts for: the OAuth access token's subject, or the user the key is bound
    to. Audit events name them as the actor; per-user upstream servers are called with this user's
    own credentials, never another's (docs/oauth.md)."""
    team_id: str | None = None
    customer_id: str | None = None
    """The key's owner, as its record says: audit events name them, so analysts slice by team and customer."""
    content_logging: bool = True
    """The key's `content_logging`: False keeps only sizes and sha256 of its arguments and results
    in audit events (docs/analytics.md)."""

    def owner(self) -> Owner:
        """The `user_id`, `team_id` and `customer_id` fields of this caller's audit events."""
        return {"user_id": self.user_id, "team_id": self.team_id, "customer_id": self.customer_id}


class GatewayError(BaseModel):
    kind: ErrorKind
    message: str
    code: int | None = None
    """Set when an upstream answered with its own JSON-RPC error code."""
    data: Any = None
    logged: str | None = None
    """What the audit row's `error` column records instead of `message` (None: `message`), when
    `message` carries what that column must not hold: it is readable without `audit:payloads`. Set
    for an upstream's own error text (it may echo the arguments) and for a refusal of arguments
    that quotes them (`BASTION_VALIDATION_VALUES`); `message` then goes to the payload column
    `result`, under the key's content logging like any result. Never sent to the agent."""


class InterceptorDecision(BaseModel):
    """What one of the executor's interceptors decided about a request (`CallOutcome.interceptions`) or a listing.

    As its audit row records it (docs/architecture.md, "Where to add a check on every call"). Names the
    rule and the kind of thing found, never the matched content: a decision about a secret must not carry
    the secret."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    interceptor: str = Field(max_length=64)
    """Which interceptor: `deny_list`, `guardrails`, `pinning`, ..."""
    rule: str = Field(max_length=128)
    """The interceptor's own name for what fired (a guardrail rule's name, `max_argument_bytes`, ...)."""
    action: Literal["block", "redact", "rewrite", "warn", "log", "hide"]
    """block: the request refused (or its result withheld); redact / rewrite: the arguments or the
    result changed on the way; warn, log: passed, flagged; hide: a definition left out of a listing."""
    where: Literal["arguments", "result", "definition"]
    """What was looked at: the request's arguments (before the upstream is called), its result (before
    the agent sees it), or a definition the server listed."""
    detail: str | None = Field(default=None, max_length=512)
    """More of what fired, never the matched content (`secrets: aws_access_key_id at /content/0/text`)."""
