"""Policy as code: a Cedar policy set, checked before it applies, and what each policy means here.

Grants still decide what a key may reach; the policies sit beside them and can only take away:
every call the grants allow is then asked of Cedar, with an implicit `permit` standing for the
grants. So only `forbid` policies are written (a `permit` would add nothing and is refused), each
with a unique `@id` that audit rows name. Annotations:

- `@reason("...")`: what the refused agent and the audit row read.
- `@approval("<who>")`: the forbid is lifted by a person's approval instead of refusing: the call
  is parked until someone holding `approvals:decide` approves or denies it (docs/approvals.md).
- `@timeout("<seconds>")`: with `@approval`, how long the call waits for a person (default
  `BASTION_APPROVAL_TTL`).
- `@confirm("<question>")`: the forbid is lifted by the agent's own user instead: the gateway asks
  them (MCP elicitation, showing the tool, its arguments and the reason) and runs the call once if
  they accept; a client that cannot be asked is refused. Not with `@approval` on the same policy.

A policy whose conditions read `context` (the call's arguments, its time) is decided per call; the
others depend only on who calls which tool, so their decision is cached like the grants'.

Stored in KV_POLICY as `policies.v<version>` (`PolicyVersion`) and `policies.active` (`ActivePolicies`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Final

import cedarpy
from pydantic import BaseModel, Field

from libs.common.contracts.config_text import ConfigError

__all__ = [
    "ACTIVE_KEY",
    "BASELINE_ID",
    "VERSION_PREFIX",
    "ActivePolicies",
    "CompiledPolicies",
    "PolicyInfo",
    "PolicyProblem",
    "PolicyVersion",
    "check_config_policies",
    "compile_policies",
    "version_key",
]

VERSION_PREFIX: Final = "policies.v"
ACTIVE_KEY: Final = "policies.active"
BASELINE_ID: Final = "grants"
"""The implicit permit standing for the grants: the id an allowed call's decision names."""
MAX_POLICY_BYTES: Final = 1_000_000
_MAX_WAIT: Final = 30 * 24 * 3600.0
_MAX_QUESTION: Final = 1000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_ALL: Final = {"op": "All"}
_BASELINE: Final = {"effect": "permit", "principal": _ALL, "action": _ALL, "resource": _ALL, "conditions": []}


class PolicyVersion(BaseModel):
    """One version of the policy text, kept after a newer one applies."""

    version: int = Field(ge=1)
    text: str = Field(max_length=MAX_POLICY_BYTES)
    created_at: float = Field(default_factory=time.time)
    created_by: str | None = None
    comment: str | None = Field(default=None, max_length=500)
    source: str | None = None
    """"config" when written from the config file, None through the admin API."""


class ActivePolicies(BaseModel):
    version: int = Field(ge=0)
    """0: no policies (grants alone decide)."""


def version_key(version: int) -> str:
    return f"{VERSION_PREFIX}{version}"


class PolicyProblem(ValueError):
    """A policy text that cannot apply; `line` is where (1-based), when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line
        self.detail = message


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    id: str
    line: int
    reason: str | None
    approval: str | None
    """Who may approve (`@approval`), None for a plain forbid."""
    per_call: bool
    """Its conditions read `context` (arguments, time): decided per call."""
    timeout: float | None = None
    """`@timeout`: seconds an approval it asks for waits (None: the service's default)."""
    confirm: str | None = None
    """`@confirm`: the question put to the agent's own user, None when the user is not asked."""


@dataclass(frozen=True, slots=True)
class CompiledPolicies:
    policies: dict[str, PolicyInfo]
    static: cedarpy.PolicySet
    """The policies that do not read `context`, and the baseline permit."""
    full: cedarpy.PolicySet
    """Every policy and the baseline permit: the per-call decision."""
    per_call_scopes: cedarpy.PolicySet | None
    """The per-call policies with their conditions dropped: which of them could apply to a
    (caller, tool), asked once per pair (None: there are none)."""
    per_call_parsed: dict[str, dict[str, Any]]
    """Each per-call policy as Cedar JSON: a pair's calls are decided by the few whose scope covers it
    (`subset`), not by the whole set."""

    def subset(self, ids: frozenset[str]) -> cedarpy.PolicySet:
        """The per-call policies `ids` and the baseline permit, as one set."""
        return cedarpy.PolicySet.from_json_str(self.subset_json(ids))

    def subset_json(self, ids: frozenset[str]) -> str:
        """`subset(ids)` as the Cedar JSON it is parsed from (what a grant's condition carries)."""
        return _set_json({**{i: self.per_call_parsed[i] for i in sorted(ids)}, BASELINE_ID: _BASELINE})

    @property
    def empty(self) -> bool:
        return not self.policies


def _statements(text: str) -> list[tuple[int, str]]:
    """The text split at each top-level `;` (outside strings and comments): (first line, statement)."""
    statements: list[tuple[int, str]] = []
    start, line, first = 0, 1, None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == '"':
            first = first or line
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
        elif ch == ";":
            statements.append((first or line, text[start : i + 1]))
            start, first = i + 1, None
        elif not ch.isspace():
            first = first or line
        i += 1
    if first is not None:
        statements.append((first, text[start:]))
    return statements


def _parse(line: int, statement: str) -> dict[str, Any]:
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(statement))
    except (ValueError, RuntimeError) as exc:
        raise PolicyProblem(str(exc).splitlines()[0] if str(exc) else "not a Cedar policy", line) from None
    policies = list(parsed.get("staticPolicies", {}).values())
    if parsed.get("templates") or len(policies) != 1:
        raise PolicyProblem("one Cedar policy (no templates) ends with each ';'", line)
    policy: dict[str, Any] = policies[0]
    return policy


def _info(line: int, policy: dict[str, Any], seen: set[str]) -> PolicyInfo:
    notes: dict[str, str] = policy.get("annotations") or {}
    policy_id = notes.get("id")
    if not policy_id:
        raise PolicyProblem('every policy needs an @id("...") annotation, which audit rows name', line)
    if not _ID.match(policy_id):
        raise PolicyProblem(f"@id {policy_id!r}: letters, digits and . _ : / - (at most 128)", line)
    if policy_id in seen:
        raise PolicyProblem(f"@id {policy_id!r} is used twice", line)
    if policy_id == BASELINE_ID:
        raise PolicyProblem(f"@id {BASELINE_ID!r} is the grants' own (the implicit permit)", line)
    if policy["effect"] != "forbid":
        raise PolicyProblem(
            f"policy {policy_id!r} is a permit: grants already decide what a key may reach, so policies only "
            "forbid (use `unless { ... }` for exceptions)",
            line,
        )
    approval = notes.get("approval")
    if approval is not None and not approval.strip():
        raise PolicyProblem(f'policy {policy_id!r}: @approval("...") names who approves', line)
    per_call = '"context"' in json.dumps(policy.get("conditions", []))
    timeout = _timeout(policy_id, notes, line)
    return PolicyInfo(
        policy_id, line, notes.get("reason"), approval, per_call, timeout, _confirm(policy_id, notes, line)
    )


def _confirm(policy_id: str, notes: dict[str, str], line: int) -> str | None:
    question = notes.get("confirm")
    if question is None:
        return None
    if not question.strip():
        raise PolicyProblem(f'policy {policy_id!r}: @confirm("...") is the question the user is asked', line)
    if len(question) > _MAX_QUESTION:
        raise PolicyProblem(f"policy {policy_id!r}: @confirm is at most {_MAX_QUESTION} characters", line)
    if "approval" in notes:
        raise PolicyProblem(
            f"policy {policy_id!r}: @confirm (the agent's user decides) and @approval (a person with "
            "approvals:decide decides) do not go on the same policy; write two",
            line,
        )
    return question


def _timeout(policy_id: str, notes: dict[str, str], line: int) -> float | None:
    given = notes.get("timeout")
    if given is None:
        return None
    if "approval" not in notes:
        raise PolicyProblem(f"policy {policy_id!r}: @timeout goes with @approval (how long a call waits)", line)
    try:
        seconds = float(given)
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= _MAX_WAIT:
        raise PolicyProblem(f"policy {policy_id!r}: @timeout is seconds, 1 to {_MAX_WAIT:,.0f}", line)
    return seconds


def _policy_set(policies: dict[str, dict[str, Any]]) -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_json_str(_set_json(policies))


def scope_set(policies: dict[str, dict[str, Any]]) -> cedarpy.PolicySet:
    """`policies` (Cedar JSON, by id) with their conditions dropped.

    Which of them apply to a request is then what their scopes say (`cedar_eval.covering`)."""
    return _policy_set({pid: {**p, "conditions": []} for pid, p in policies.items()})


def _set_json(policies: dict[str, dict[str, Any]]) -> str:
    document = {"staticPolicies": policies, "templates": {}, "templateLinks": []}
    return json.dumps(document, separators=(",", ":"))


def compile_policies(text: str) -> CompiledPolicies:
    """The policy text checked and compiled; `PolicyProblem` naming the line of the first problem."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise PolicyProblem(f"the policy text is larger than {MAX_POLICY_BYTES:,} bytes")
    infos: dict[str, PolicyInfo] = {}
    parsed: dict[str, dict[str, Any]] = {}
    for line, statement in _statements(text):
        if not statement.rstrip().endswith(";"):
            raise PolicyProblem("a policy does not end with ';'", line)
        policy = _parse(line, statement)
        info = _info(line, policy, set(infos))
        infos[info.id], parsed[info.id] = info, policy
    static = {pid: p for pid, p in parsed.items() if not infos[pid].per_call}
    per_call = {pid: p for pid, p in parsed.items() if infos[pid].per_call}
    return CompiledPolicies(
        policies=infos,
        static=_policy_set({**static, BASELINE_ID: _BASELINE}),
        full=_policy_set({**parsed, BASELINE_ID: _BASELINE}),
        per_call_scopes=scope_set(per_call) if per_call else None,
        per_call_parsed=per_call,
    )


def check_config_policies(policies: str | None, source: str) -> None:
    """A config file's `policies` (docs/policy.md) compiled when the file is read.

    So a file whose policies would not apply is refused there: `ConfigError` prefixed by `source`, as for
    any field."""
    if policies is None:
        return
    try:
        compile_policies(policies)
    except PolicyProblem as exc:
        raise ConfigError(
            f"{source}: policies: {exc} (lines count from the first line of the policies' text)"
        ) from None
