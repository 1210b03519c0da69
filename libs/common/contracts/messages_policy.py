"""What policy answers besides a routed call (`messages`): grants with their per-call condition, and visible tools.

A `Grant` lets ingress send a kind of request to one target without asking policy each time; a
`VisibleToolsQuery` asks which of a catalog's tools a caller may see, naming the list by its digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.messages_base import BusMessage, Caller, GatewayError

__all__ = [
    "MAX_CONDITION_ENTITIES",
    "MAX_CONDITION_POLICIES",
    "Grant",
    "PairList",
    "PolicyCondition",
    "VisibleTools",
    "VisibleToolsQuery",
    "pairs_digest",
]


MAX_CONDITION_POLICIES = 16_384
"""Bytes of per-call policies a grant may carry (`PolicyCondition`); a pair whose policies are longer
is decided by policy on every call."""
MAX_CONDITION_ENTITIES = 16_384


class PolicyCondition(BaseModel):
    """What a granted tool call must still pass on its own arguments.

    The per-call Cedar policies whose scope covers the caller and the tool, with the entities policy
    judged the pair over. The executor decides each call with them (`cedar_eval.condition_allows`); a
    call they do not plainly allow is answered as stale and asked of policy, which refuses it, parks it
    or has it confirmed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    """The policy set's version they come from."""
    policies: str = Field(max_length=MAX_CONDITION_POLICIES)
    """The policies and the baseline permit as a Cedar JSON policy set."""
    entities: str = Field(max_length=MAX_CONDITION_ENTITIES)
    """The caller's key and the tool (under each of its names) as Cedar JSON entities."""
    principal: str = Field(max_length=1024)
    """The key's name (`Key::"<name>"`)."""
    names: list[str] = Field(min_length=1, max_length=17)
    """The tool's names, its own first: a call is asked under each."""


class Grant(BaseModel):
    """Policy's decision that a caller may send one kind of request to one target, with nothing to count.

    `kind` is `EXEC_CALL` or `EXEC_REQUEST`, with one narrowing; ingress reuses it until `expires` (the
    `subjects.GRANT` header). `mac` is policy's HMAC over all of that and the
    price (`signing.WorkSigner.grant_mac`), so an executor can tell it from a forged one. A tool
    some per-call policy governs is granted with that policy as a `condition` the executor checks
    on every call: its arguments are decided per call, without a hop through policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expires: float
    """Unix time the executors stop honouring it."""
    price: float | None = None
    """The call's price in USD (`CHARGED_USD`), None for an unpriced one: ingress sends it with
    each call, so the audit event's `cost_usd` is the same as for a call policy forwarded."""
    revisions: dict[str, int] = Field(default_factory=dict, max_length=8)
    """Bucket -> the KV revision policy's view held when it decided: ingress keeps the grant only
    when policy had applied every change ingress had seen (`tool_lists.answer_holds`)."""
    mac: str = Field(default="", max_length=64)
    condition: PolicyCondition | None = None
    """The per-call policies each call must pass (None: the decision holds for any arguments)."""


class VisibleToolsQuery(BusMessage):
    caller: Caller
    include_servers: list[str] | None = None
    include_tools: list[str] | None = None
    tools_digest: str = Field(max_length=64)
    """`PairList.digest` of the (server, tool) pairs asked about: a catalog's list is the same
    question every time, so it is named, not sent, while policy knows it."""
    tools: list[tuple[str, str]] | None = None
    """The pairs themselves: sent only when policy answered `unknown_list` (1,343 pairs are ~40 kB,
    which cost more on the bus and in pydantic than deciding them). Policy keeps a list under the
    digest it computes itself, never under the one it is told."""


class VisibleTools(BusMessage):
    allowed: list[int] = Field(default_factory=list)
    """Indexes into the query's pairs."""
    error: GatewayError | None = None
    unknown_list: bool = False
    """Policy does not hold the list `tools_digest` names: ask again with `tools`."""
    revisions: dict[str, int] = Field(default_factory=dict)
    """KV bucket -> the revision policy's view held when it answered (`BucketWatch.revision`): an
    asker whose own view of those buckets is no newer knows the answer holds until it sees a change."""


def pairs_digest(pairs: Sequence[tuple[str, str]]) -> str:
    """The name of a list of (server, name) pairs (`VisibleToolsQuery.tools_digest`)."""
    return hashlib.blake2b(orjson.dumps(pairs), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class PairList:
    """A list of (server, name) pairs with the digest a `bastion.policy.list` question names it by, computed once.

    (Per catalog revision, for a catalog's list)."""

    pairs: list[tuple[str, str]]
    digest: str

    @classmethod
    def of(cls, pairs: list[tuple[str, str]]) -> PairList:
        return cls(pairs, pairs_digest(pairs))
