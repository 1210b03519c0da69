"""`/admin/v1/policies`: the Cedar policy versions (docs/policy.md).

A text is compiled before it is stored, and a problem answers 400 naming its line; every version is kept
and one is active. `POST /policies/check` tries a text (or the active one) on a sample call without
storing anything.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from libs.common.cedar.cedar_eval import Principal, call_context, evaluate
from libs.common.cedar.cedar_policies import MAX_POLICY_BYTES, PolicyProblem, PolicyVersion, compile_policies
from libs.common.cedar.policy_store import (
    PolicyStoreError,
    activate,
    active_version,
    publish,
    read_version,
    read_versions,
)
from libs.common.contracts import subjects
from libs.common.contracts.messages import MAX_ALIASES

from .errors import AdminError
from .identity import current
from .route_table import Route, register
from .store import AdminStore
from .tables import NotFound

__all__ = ["policy_routes"]


class PolicyText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=MAX_POLICY_BYTES, description="the Cedar policies (docs/policy.md)")
    comment: str | None = Field(default=None, max_length=500, description="why this version (shown in the list)")


class VersionOut(BaseModel):
    version: int
    active: bool
    created_at: float
    created_by: str | None
    comment: str | None
    source: str | None
    policies: list[str] = Field(description="the @id of each policy, in order")
    text: str | None = Field(default=None, description="the text (`GET /policies/{version}` only)")


class VersionsOut(BaseModel):
    active: int = Field(description="the version that applies; 0: none (grants alone decide)")
    versions: list[VersionOut]


class SampleCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(max_length=256, description="the key's name, as policies see it (`principal.name`)")
    user: str | None = Field(default=None, max_length=256)
    team: str | None = Field(default=None, max_length=256)
    customer: str | None = Field(default=None, max_length=256)
    server: str = Field(max_length=256)
    tool: str = Field(max_length=256, description="the upstream's own tool name")
    annotations: dict[str, Any] = Field(default_factory=dict, description="the tool's MCP annotations")
    aliases: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        max_length=MAX_ALIASES,
        description="the tool's other stable names (its catalog entry's `aliases`): decided under each",
    )
    arguments: dict[str, Any] = Field(default_factory=dict)


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=MAX_POLICY_BYTES, description="None: the active version")
    call: SampleCall | None = None


class CheckOut(BaseModel):
    valid: Literal[True] = True
    policies: list[str]
    per_call: list[str] = Field(description="policies that read `context`: decided per call")
    decision: Literal["allow", "deny", "approval", "confirm"] | None = None
    policy: str | None = Field(default=None, description="the policy that decided (`grants`: none forbade)")
    reason: str | None = None
    approvers: str | None = None


def _out(record: PolicyVersion, active: int, *, text: bool = False) -> VersionOut:
    try:
        ids = list(compile_policies(record.text).policies)
    except PolicyProblem:
        ids = []
    return VersionOut(
        version=record.version,
        active=record.version == active,
        created_at=record.created_at,
        created_by=record.created_by,
        comment=record.comment,
        source=record.source,
        policies=ids,
        text=record.text if text else None,
    )


def _problem(exc: PolicyProblem) -> AdminError:
    return AdminError(400, "invalid_policy", f"the policies do not apply: {exc}")


async def _kv(store: AdminStore) -> Any:
    return await store.buckets.get(subjects.KV_POLICY)


async def list_versions(store: AdminStore) -> VersionsOut:
    """Every version, newest first, and which one applies."""
    bucket = await _kv(store)
    active, _ = await active_version(bucket)
    return VersionsOut(active=active, versions=[_out(v, active) for v in await read_versions(bucket)])


async def show_version(store: AdminStore, version: int) -> VersionOut:
    bucket = await _kv(store)
    active, _ = await active_version(bucket)
    record = await read_version(bucket, version)
    if record is None:
        raise NotFound(f"there is no policy version {version}")
    return _out(record, active, text=True)


async def publish_version(store: AdminStore, body: PolicyText) -> VersionOut:
    """Compile the text.

    (400 naming the line of the first problem), store it as the next version and make it the one that
    applies (every policy replica loads it within moments)."""
    before_active, _ = await active_version(await _kv(store))
    try:
        record = await publish(await _kv(store), body.text, by=current().principal, comment=body.comment)
    except PolicyProblem as exc:
        raise _problem(exc) from None
    before = await read_version(await _kv(store), before_active) if before_active else None
    if store.changes is not None:
        store.changes.record("policies", "publish", f"v{record.version}", before, record)
    return _out(record, record.version, text=True)


async def activate_version(store: AdminStore, version: int) -> VersionsOut:
    """Make an earlier (or later) stored version the one that applies; 0 turns policies off."""
    bucket = await _kv(store)
    before, _ = await active_version(bucket)
    try:
        await activate(bucket, version)
    except PolicyStoreError as exc:
        raise NotFound(str(exc)) from None
    except PolicyProblem as exc:
        raise _problem(exc) from None
    if store.changes is not None:
        old, new = await read_version(bucket, before), await read_version(bucket, version)
        store.changes.record("policies", "activate", f"v{version}", old, new)
    return await list_versions(store)


async def check(store: AdminStore, body: CheckIn) -> CheckOut:
    """Compile a text (or the active version) and, given a sample call, say what it decides."""
    text = body.text
    if text is None:
        bucket = await _kv(store)
        active, _ = await active_version(bucket)
        record = await read_version(bucket, active) if active else None
        if record is None:
            raise NotFound("no policy version is active: send a text to check")
        text = record.text
    try:
        compiled = compile_policies(text)
    except PolicyProblem as exc:
        raise _problem(exc) from None
    answer = CheckOut(
        policies=list(compiled.policies), per_call=[p.id for p in compiled.policies.values() if p.per_call]
    )
    if body.call is not None:
        call = body.call
        who = Principal(call.key, call.user, call.team, call.customer)
        target = (call.server, call.tool, call.annotations)
        context, aliases = call_context(call.arguments), tuple(call.aliases)
        verdict = evaluate(compiled, compiled.full, who, target, context, aliases=aliases)
        answer.decision, answer.policy = verdict.effect, verdict.policy
        answer.reason, answer.approvers = verdict.reason, verdict.approvers
    return answer


POLICY_ROUTES = (
    Route("GET", "/policies", "policies:read", list_versions),
    Route("GET", "/policies/{version}", "policies:read", show_version, errors=(404,)),
    Route("POST", "/policies", "policies:write", publish_version, errors=(400,)),
    Route("POST", "/policies/{version}/activate", "policies:write", activate_version, errors=(400, 404)),
    Route("POST", "/policies/check", "policies:read", check, errors=(400, 404)),
)


def policy_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, POLICY_ROUTES, "policies", store)
