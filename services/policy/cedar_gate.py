"""Where a tool call the grants allow meets the Cedar policies, on policy's request path.

`check` is synchronous and costs a dict lookup for a (key, tool) whose decision does not depend
on the call (the cached `PairDecision`); only a pair some per-call policy may apply to, or a call
naming an approval, has its whole `ToolCall` parsed (arguments included) and decided on its own. An
allowed call of such a pair is granted with its per-call policies as the grant's condition, so the
pair's next calls are decided by the executor, on their arguments, without coming here.

An active version that cannot be loaded (not stored, an unreadable record, a text that does not
compile, an unreadable `policies.active`) fails closed: every call that reaches the gate is refused
with `policy_unavailable`, saying why, until a version that loads is active. Deciding such calls by
the grants alone would run what the policies the operator made active may forbid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from libs.common.bus.kvwatch import decode_value
from libs.common.cedar.approvals import APPROVAL_META
from libs.common.cedar.cedar_eval import Verdict, call_context
from libs.common.cedar.cedar_policies import ACTIVE_KEY, VERSION_PREFIX, ActivePolicies, PolicyProblem, compile_policies
from libs.common.cedar.cedar_policies import PolicyVersion as StoredPolicies
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError, PolicyCondition, ServerCatalog, ToolCall

from .cedar_decisions import CedarDecider
from .view import CompiledKey

__all__ = ["Ask", "Gate", "GateResult", "Park", "Pass", "Refuse", "Resume"]

log = logging.getLogger(__name__)

_MARK = APPROVAL_META.encode()


@dataclass(frozen=True, slots=True)
class Pass:
    reusable: bool
    """Ingress may reuse the decision (a grant): no policy depends on this call's arguments, or
    those that do travel with the grant as its `condition`."""
    condition: PolicyCondition | None = None
    """The per-call policies the grant's calls must pass, decided by the executor."""


@dataclass(frozen=True, slots=True)
class Refuse:
    error: GatewayError
    policy: str


@dataclass(frozen=True, slots=True)
class Park:
    call: ToolCall
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Ask:
    """The agent's own user is asked to confirm the call (`@confirm`) before it runs."""

    call: ToolCall
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Resume:
    call: ToolCall
    approval_id: str


GateResult = Pass | Refuse | Park | Ask | Resume
_REUSABLE = Pass(reusable=True)
_PER_CALL = Pass(reusable=False)


class Gate:
    def __init__(self) -> None:
        self.cedar = CedarDecider()
        self._versions: dict[int, bytes] = {}
        self._active = 0
        self.unavailable: str | None = None
        """Why the active policy version could not be loaded (None: it is, or none is active)."""
        self._annotations: dict[tuple[str, str], dict[str, Any]] = {}
        self._aliases: dict[tuple[str, str], tuple[str, ...]] = {}
        """A tool's other names (`CatalogTool.aliases`): its policies are those of every name."""

    # ------------------------------------------------------------------ KV feeds (KV_POLICY, KV_CATALOG)

    def put_policy(self, kv_key: str, value: bytes) -> bool:
        """A KV_POLICY entry; True when it was one of the policy set's."""
        if kv_key == ACTIVE_KEY:
            active = decode_value(ActivePolicies, value, kv_key)
            if active is None:
                self._active = -1  # some version was meant to apply; which one cannot be read
            else:
                self._active = active.version
            self._load()
            return True
        if kv_key.startswith(VERSION_PREFIX):
            version = kv_key.removeprefix(VERSION_PREFIX)
            if version.isdigit():
                self._versions[int(version)] = value
                if int(version) == self._active:
                    self._load()
            return True
        return False

    def delete_policy(self, kv_key: str) -> bool:
        if kv_key == ACTIVE_KEY:
            self._active = 0
            self._load()
            return True
        if kv_key.startswith(VERSION_PREFIX):
            version = kv_key.removeprefix(VERSION_PREFIX)
            if version.isdigit() and self._versions.pop(int(version), None) is not None:
                if int(version) == self._active:
                    self._load()
            return True
        return False

    def _load(self) -> None:
        self.unavailable = self._problem()
        if self.unavailable is not None:
            # the admin API and `config apply` check a text before it applies, so this is a hand-edited
            # or damaged bucket: refuse what the policies judge rather than decide by the grants alone
            self.cedar.load(None, 0)
            log.error("%s: tool calls are refused until a version that loads is active", self.unavailable)

    def _problem(self) -> str | None:
        """Load the active version; why it cannot be (None: loaded, or none is active)."""
        if self._active == 0:
            self.cedar.load(None, 0)
            return None
        if self._active < 0:
            return f"the active policy version ({ACTIVE_KEY}) cannot be read"
        raw = self._versions.get(self._active)
        if raw is None:
            return f"policy version {self._active} is active but not stored"
        stored = decode_value(StoredPolicies, raw, f"policies v{self._active}")
        if stored is None:
            return f"policy version {self._active} is active but its record cannot be read"
        try:
            compiled = compile_policies(stored.text)
        except PolicyProblem as exc:
            return f"policy version {self._active} is active but does not compile ({str(exc)[:300]})"
        self.cedar.load(compiled, self._active)
        log.info("policies v%s applied (%d policies)", self._active, len(self.cedar.compiled.policies))  # type: ignore[union-attr]
        return None

    def put_catalog(self, server: str, value: bytes, _revision: int = 0) -> None:
        catalog = decode_value(ServerCatalog, value, f"catalog {server}")
        if catalog is None:
            return
        self._drop(server)
        for tool in catalog.tools:
            notes = tool.definition.get("annotations")
            if isinstance(notes, dict) and notes:
                self._annotations[(server, tool.tool)] = notes
            if tool.aliases:
                self._aliases[(server, tool.tool)] = tuple(tool.aliases)
        self.cedar.forget()

    def delete_catalog(self, server: str) -> None:
        self._drop(server)
        self.cedar.forget()

    def aliases(self, server: str, tool: str) -> tuple[str, ...]:
        """The other names `server`'s `tool` is judged under, as its catalog last said."""
        return self._aliases.get((server, tool), ())

    def _drop(self, server: str) -> None:
        for pair in [pair for pair in self._annotations if pair[0] == server]:
            del self._annotations[pair]
        for pair in [pair for pair in self._aliases if pair[0] == server]:
            del self._aliases[pair]

    # ------------------------------------------------------------------ decisions

    def check(self, key: CompiledKey, server: str, tool: str, data: bytes) -> GateResult:
        """What the policies say of one tool call the grants allow; `data` is its `ToolCall` JSON."""
        if _MARK in data:
            call = _parse(data)
            if isinstance(call, Refuse):
                return call
            approval = (call.meta or {}).get(APPROVAL_META)
            if isinstance(approval, str) and self.unavailable is None:
                return Resume(call, approval)
        if self.unavailable is not None:
            return _unavailable(self.unavailable)
        if not self.cedar.active:
            return _REUSABLE
        annotations = self._annotations.get((server, tool), {})
        pair = self.cedar.pair(key, server, tool, annotations, self._aliases.get((server, tool), ()))
        static = pair.static
        if static.effect == "deny":
            return _refusal(static)
        if not pair.decided_per_call:
            if static.effect in ("approval", "confirm"):
                call = _parse(data)
                return call if isinstance(call, Refuse) else _held(call, static)
            return _REUSABLE
        call = _parse(data)
        if isinstance(call, Refuse):
            return call
        if call.arguments_blob is not None:
            error = GatewayError(
                kind=ErrorKind.FORBIDDEN,
                message="this tool's policies read the call's arguments, which are too large for one bus message here",
            )
            return Refuse(error, "grants")
        context = call_context(call.arguments, initiator=call.initiator, reads=pair.reads)
        verdict = self.cedar.per_call(pair, (server, tool, annotations), context)
        if verdict.effect == "deny":
            return _refusal(verdict)
        if verdict.effect in ("approval", "confirm"):
            return _held(call, verdict)
        return _PER_CALL if pair.condition is None else Pass(reusable=True, condition=pair.condition)


def _held(call: ToolCall, verdict: Verdict) -> Park | Ask:
    """A call a person (`@approval`) or the agent's own user (`@confirm`) decides."""
    return Ask(call, verdict) if verdict.effect == "confirm" else Park(call, verdict)


def _parse(data: bytes) -> ToolCall | Refuse:
    try:
        return ToolCall.model_validate_json(data)
    except ValidationError as exc:
        error = GatewayError(kind=ErrorKind.INVALID_ARGUMENTS, message=str(exc.errors()[0]["msg"]))
        return Refuse(error, "grants")


def _unavailable(why: str) -> Refuse:
    message = f"{why}; tool calls are refused until a policy version that loads is active"
    return Refuse(GatewayError(kind=ErrorKind.POLICY_UNAVAILABLE, message=message), "policies")


def _refusal(verdict: Verdict) -> Refuse:
    reason = f": {verdict.reason}" if verdict.reason else ""
    message = f"refused by policy {verdict.policy!r}{reason}"
    return Refuse(
        GatewayError(kind=ErrorKind.FORBIDDEN, message=message, data={"policy": verdict.policy}), verdict.policy
    )
