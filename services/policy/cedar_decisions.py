"""The active Cedar policy set on policy's request path, and the decisions cached of it.

What does not read `context` is decided once per (key, tool) and cached until policies, keys, the
directory or the catalog change. A pair that some per-call policy's scope covers is decided per
call too, with its arguments, by only those policies (a set of a few, whatever the total) over the
pair's entities parsed once. Such a pair whose decision needs no person is granted with those
policies as its condition (`PolicyCondition`): the executor decides the next calls' arguments with
them, where the arguments are, and only a call they do not plainly allow comes back to policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cedarpy
from cachetools import LRUCache

from libs.common.cedar.cedar_eval import (
    Principal,
    Verdict,
    entities,
    entities_json,
    evaluate,
    per_call_applicable,
    tool_names,
)
from libs.common.cedar.cedar_policies import CompiledPolicies
from libs.common.cedar.context_reads import WHOLE, Reads, context_reads
from libs.common.contracts.messages import MAX_CONDITION_ENTITIES, MAX_CONDITION_POLICIES, PolicyCondition

from .view import CompiledKey

__all__ = ["CedarDecider", "PairDecision", "principal_of"]

_CACHED = 100_000
_SUBSETS = 4096


@dataclass(frozen=True, slots=True)
class PairDecision:
    static: Verdict
    per_call: cedarpy.PolicySet | None = None
    """The per-call policies that may apply to the pair, and the baseline (None: none may)."""
    entities: cedarpy.Entities | None = None
    who: Principal | None = None
    aliases: tuple[str, ...] = ()
    """The tool's other names it is judged under (`CatalogTool.aliases`)."""
    condition: PolicyCondition | None = None
    """The per-call policies as a grant carries them (None: every call is decided here)."""
    reads: Reads = WHOLE
    """What the per-call policies read of a call's context: each call's context holds only that."""

    @property
    def decided_per_call(self) -> bool:
        return self.per_call is not None


def principal_of(key: CompiledKey) -> Principal:
    record = key.record
    return Principal(
        name=record.name,
        user=key.user.id if key.user else record.user_id,
        team=key.team.id if key.team else record.team_id,
        customer=key.customer.id if key.customer else record.customer_id,
    )


class CedarDecider:
    """The active policy set and the per-(key, tool) decisions made of it."""

    def __init__(self) -> None:
        self.compiled: CompiledPolicies | None = None
        self.version = 0
        self._pairs: LRUCache[tuple[str, str, str], PairDecision] = LRUCache(maxsize=_CACHED)
        self._subsets: LRUCache[frozenset[str], cedarpy.PolicySet] = LRUCache(maxsize=_SUBSETS)

    @property
    def active(self) -> bool:
        return self.compiled is not None and not self.compiled.empty

    def load(self, compiled: CompiledPolicies | None, version: int) -> None:
        self.compiled, self.version = compiled, version
        self._pairs.clear()
        self._subsets.clear()

    def forget(self) -> None:
        """Keys, directory or catalog changed: decisions made of them are stale."""
        self._pairs.clear()

    def pair(
        self, key: CompiledKey, server: str, tool: str, annotations: dict[str, Any], aliases: tuple[str, ...] = ()
    ) -> PairDecision:
        """`aliases`: the tool's other names (its stable identities); a forbid on any of them applies."""
        cache_key = (key.record.id, server, tool)
        found = self._pairs.get(cache_key)
        if found is None:
            target = (server, tool, annotations)
            found = self._pairs[cache_key] = self._decide_pair(principal_of(key), target, aliases)
        return found

    def _decide_pair(
        self, who: Principal, target: tuple[str, str, dict[str, Any]], aliases: tuple[str, ...]
    ) -> PairDecision:
        compiled = self.compiled
        assert compiled is not None
        static = evaluate(compiled, compiled.static, who, target, {}, aliases=aliases)
        if static.effect == "deny" or not (ids := per_call_applicable(compiled, who, target, aliases)):
            return PairDecision(static)
        subset = self._subsets.get(ids)
        if subset is None:
            subset = self._subsets[ids] = compiled.subset(ids)
        policies = compiled.subset_json(ids)
        condition = self._condition(policies, who, target, aliases) if static.effect == "allow" else None
        parsed = entities(who, target, aliases)
        return PairDecision(static, subset, parsed, who, aliases, condition, context_reads(policies))

    def _condition(
        self, policies: str, who: Principal, target: tuple[str, str, dict[str, Any]], aliases: tuple[str, ...]
    ) -> PolicyCondition | None:
        """The pair's per-call `policies` (JSON) for its grants, or None when they are too large to carry."""
        parsed = entities_json(who, target, aliases)
        if len(policies) > MAX_CONDITION_POLICIES or len(parsed) > MAX_CONDITION_ENTITIES:
            return None
        names = list(tool_names(target[1], aliases))
        return PolicyCondition(
            version=self.version, policies=policies, entities=parsed, principal=who.name, names=names
        )

    def per_call(self, pair: PairDecision, target: tuple[str, str, dict[str, Any]], context: dict[str, Any]) -> Verdict:
        """One call of a pair decided per call: its per-call policies over the call's `context`."""
        assert self.compiled is not None and pair.per_call is not None and pair.who is not None
        verdict = evaluate(self.compiled, pair.per_call, pair.who, target, context, pair.entities, pair.aliases)
        static = pair.static
        if static.effect == "approval" and verdict.effect in ("allow", "confirm"):
            return static
        if static.effect == "confirm" and verdict.effect == "allow":
            return static
        return verdict
