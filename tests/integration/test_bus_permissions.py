"""The bus is zero-trust: a real nats-server started with the config `bastion up` generates refuses
every client outside its role's allow lists (`libs.common.bus.permissions`), and one without
credentials altogether.

Each probe is a concrete subject a service really uses (or an attacker would try). What must be
refused is stated twice: once as the security rules in plain words (`RULES`, written
independently of the table), and once for every probe against the table itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.js.api import ConsumerConfig

from cli.credentials import StackCredentials, make_credentials
from cli.stack import EmbeddedNats
from libs.common.bus.nats import credentials, kv_bucket, kv_keys, processed
from libs.common.bus.permissions import ADMIN, AUDIT, CODEMODE, EXECUTOR, INGRESS, OAUTH, PERMISSIONS, POLICY, ROLES
from libs.common.bus.stores import declare_owned
from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts import subjects as s
from libs.common.contracts.messages import Caller, Grant, ToolCall, decode_outcome
from libs.common.settings import ExecutorSettings, StoreSettings
from services.executor.service import ExecutorService
from tests.support.nats_refusal import refusal

pytestmark = pytest.mark.integration

KV_BUCKETS = (
    s.KV_KEYS,
    s.KV_SERVERS,
    s.KV_POLICY,
    s.KV_CATALOG,
    s.KV_SESSIONS,
    s.KV_LLM,
    s.KV_OAUTH,
    s.KV_OAUTH_PUBLIC,
    s.KV_OAUTH_REVOKED,
    s.KV_OAUTH_UPSTREAM,
    s.KV_ADMIN,
)
API = s.JS_API
PIN_APPROVAL = f"{s.KV_ROOT}.{s.KV_PINS}.def.bZ2l0aHVi.tool.bYWRk"
PIN_BASELINE = f"{s.KV_ROOT}.{s.KV_PINS}.baseline.bZ2l0aHVi"
PIN_IMPORT = f"{s.KV_ROOT}.{s.KV_PINS}.imported.bc29tZS1raWQ"

SERVICE_SUBJECTS = (
    s.POLICY_CALL,
    s.POLICY_REQUEST,
    s.POLICY_LLM,
    s.POLICY_REFUND,
    s.policy_alive_subject("replica-1"),
    s.EXEC_CALL,
    s.EXEC_REQUEST,
    s.EXEC_LLM,
    s.EXEC_CANCEL,
    s.executor_alive_subject("replica-1"),
    s.CALL_CANCEL,
    s.RESOURCE_UPDATED,
    s.AUDIT_QUERY,
    s.AUDIT_EXPORT,
    s.AUDIT_VERIFY,
    s.ANALYTICS_QUERY,
    s.ANALYTICS_CANCEL,
    s.OAUTH_HTTP,
    s.OAUTH_PASSWORD,
    s.OAUTH_UPSTREAM_TOKEN,
    s.OAUTH_UPSTREAM_LINK,
    s.OAUTH_UPSTREAM_CHANGED,
    s.EXEC_USER_CATALOG,
    s.EXEC_USER_CATALOG_CHANGED,
    s.PIN_DRIFT,
)
"""The services' requests and notifications, probed both ways: who may send them, who may hear them."""

PUBLISH_PROBES = (
    *SERVICE_SUBJECTS,
    s.POLICY_LIST,
    *(s.audit_subject(role, f"{role}-host-1-abcd") for role in ROLES),
    f"{s.AUDIT_EVENTS}.batch",
    s.AUDIT_DEAD,
    PIN_APPROVAL,
    PIN_BASELINE,
    PIN_IMPORT,
    *(f"{s.KV_ROOT}.{bucket}.some-key" for bucket in KV_BUCKETS),
    *(f"{API}.DIRECT.GET.{s.kv_stream(bucket)}.{s.KV_ROOT}.{bucket}.some-key" for bucket in KV_BUCKETS),
    *(f"{API}.STREAM.DELETE.{s.kv_stream(bucket)}" for bucket in KV_BUCKETS),
    *(f"{API}.STREAM.PURGE.{s.kv_stream(bucket)}" for bucket in KV_BUCKETS),
    *(f"{API}.STREAM.UPDATE.{s.kv_stream(bucket)}" for bucket in KV_BUCKETS),
    f"{API}.STREAM.CREATE.{s.AUDIT_STREAM}",
    f"{API}.STREAM.UPDATE.{s.AUDIT_STREAM}",
    f"{API}.STREAM.DELETE.{s.AUDIT_STREAM}",
    f"{API}.STREAM.PURGE.{s.AUDIT_STREAM}",
    f"{API}.CONSUMER.CREATE.{s.AUDIT_STREAM}",
    f"{API}.CONSUMER.MSG.NEXT.{s.AUDIT_STREAM}.audit-writer",
    f"{API}.DIRECT.GET.{s.AUDIT_STREAM}",
    f"{API}.STREAM.MSG.GET.{s.AUDIT_STREAM}",
    f"{s.JS_ACK}.{s.AUDIT_STREAM}.audit-writer.1.1.1.1.0",
    f"{API}.STREAM.CREATE.OTHER",
    f"{API}.STREAM.LIST",
    *(f"{s.inbox_prefix(role)}.abc.1" for role in ROLES),
    "_INBOX.abc.1",
    "$SYS.REQ.SERVER.PING",
    "anything.else",
)
SUBSCRIBE_PROBES = (
    *SERVICE_SUBJECTS,
    f"{s.AUDIT_EVENTS}.>",
    *(f"{s.KV_ROOT}.{bucket}.>" for bucket in KV_BUCKETS),
    *(f"{s.inbox_prefix(role)}.>" for role in ROLES),
    "_INBOX.>",
    ">",
)

RULES: dict[str, set[str]] = {
    # subject -> the only roles that may publish it
    s.EXEC_CALL: {POLICY, INGRESS},  # ingress's calls there run only with policy's grant
    s.EXEC_REQUEST: {POLICY, INGRESS},
    s.EXEC_LLM: {POLICY},
    f"{s.KV_ROOT}.{s.KV_KEYS}.some-key": {ADMIN},
    f"{s.KV_ROOT}.{s.KV_LLM}.some-key": {ADMIN},
    f"{s.KV_ROOT}.{s.KV_SERVERS}.some-key": {ADMIN},
    f"{s.KV_ROOT}.{s.KV_POLICY}.some-key": {ADMIN},
    f"{s.KV_ROOT}.{s.KV_CATALOG}.some-key": {EXECUTOR},
    # every store is created and updated by its one owner (below), deleted by no one; nobody lists streams
    f"{API}.STREAM.NAMES": set(),
    # each audit producer publishes on its own subjects alone (a chain is its producer's);
    # the admin service's changes are on its own
    s.audit_subject(INGRESS, "ingress-host-1-abcd"): {INGRESS},
    s.audit_subject(CODEMODE, "codemode-host-1-abcd"): {CODEMODE},
    s.audit_subject(ADMIN, "admin-host-1-abcd"): {ADMIN},  # a person's decisions from the CLI (pins)
    # supply-chain pinning: executors record what they see and announce drift; a person (the admin
    # role) approves, rejects and imports signed catalogs, but never forges a server's first listing
    PIN_APPROVAL: {EXECUTOR, ADMIN},
    PIN_IMPORT: {EXECUTOR, ADMIN},
    PIN_BASELINE: {EXECUTOR},
    s.PIN_DRIFT: {EXECUTOR},
    f"{s.AUDIT_EVENTS}.batch": set(),  # the shared subject of old: nobody
    s.ANALYTICS_CANCEL: {ADMIN},
    s.CODEMODE_CALL: {INGRESS},
    # analysts' questions and the auditors' check: asked by the admin role alone, answered by audit
    s.AUDIT_EXPORT: {ADMIN},
    s.AUDIT_VERIFY: {ADMIN},
    s.ANALYTICS_QUERY: {ADMIN},
    # refunds: from whoever saw the charged call fail (executor, or the requester), never from admin or audit
    s.POLICY_REFUND: {INGRESS, CODEMODE, EXECUTOR},
    # executors answer the requesters of forwarded calls directly; only policy and the executors
    # may answer into ingress's and codemode's inboxes (besides the role itself)
    f"{s.inbox_prefix(INGRESS)}.abc.1": {INGRESS, POLICY, EXECUTOR, CODEMODE, OAUTH},
    f"{s.inbox_prefix(CODEMODE)}.abc.1": {CODEMODE, POLICY, EXECUTOR},
    f"{API}.CONSUMER.CREATE.{s.AUDIT_STREAM}": {AUDIT},
    f"{API}.CONSUMER.MSG.NEXT.{s.AUDIT_STREAM}.audit-writer": {AUDIT},
    f"{API}.DIRECT.GET.{s.AUDIT_STREAM}": set(),
    f"{API}.STREAM.DELETE.{s.AUDIT_STREAM}": set(),
    f"{API}.STREAM.PURGE.{s.AUDIT_STREAM}": set(),
    f"{API}.DIRECT.GET.{s.kv_stream(s.KV_SERVERS)}.{s.KV_ROOT}.{s.KV_SERVERS}.some-key": {ADMIN, POLICY, EXECUTOR},
    "$SYS.REQ.SERVER.PING": set(),
    # OAuth: the oauth service's state and upstream tokens are its own; ingress reads
    # only what it verifies access tokens with; only the executor may ask for an upstream's token
    f"{s.KV_ROOT}.{s.KV_OAUTH}.some-key": {OAUTH},
    f"{s.KV_ROOT}.{s.KV_OAUTH_UPSTREAM}.some-key": {OAUTH},
    f"{s.KV_ROOT}.{s.KV_OAUTH_PUBLIC}.some-key": {OAUTH},
    f"{s.KV_ROOT}.{s.KV_OAUTH_REVOKED}.some-key": {OAUTH},
    f"{API}.DIRECT.GET.{s.kv_stream(s.KV_OAUTH)}.{s.KV_ROOT}.{s.KV_OAUTH}.some-key": {OAUTH},
    f"{API}.DIRECT.GET.{s.kv_stream(s.KV_OAUTH_UPSTREAM)}.{s.KV_ROOT}.{s.KV_OAUTH_UPSTREAM}.some-key": {OAUTH},
    f"{API}.DIRECT.GET.{s.kv_stream(s.KV_OAUTH_PUBLIC)}.{s.KV_ROOT}.{s.KV_OAUTH_PUBLIC}.some-key": {
        OAUTH,
        INGRESS,
        ADMIN,
    },
    # the admin principals, their token digests and sessions: the admin role's alone
    f"{s.KV_ROOT}.{s.KV_ADMIN}.some-key": {ADMIN},
    f"{API}.DIRECT.GET.{s.kv_stream(s.KV_ADMIN)}.{s.KV_ROOT}.{s.KV_ADMIN}.some-key": {ADMIN},
    s.OAUTH_HTTP: {INGRESS, ADMIN},  # ADMIN: the admin service's sign-in, as an OAuth client
    s.OAUTH_PASSWORD: {ADMIN},
    s.OAUTH_UPSTREAM_LINK: {ADMIN},
    s.OAUTH_UPSTREAM_TOKEN: {EXECUTOR},
    # per-user catalogs: ingress asks an executor what a user's own session lists; the executor says
    # when that changed, and the oauth service when a user authorized anew
    s.EXEC_USER_CATALOG: {INGRESS},
    s.EXEC_USER_CATALOG_CHANGED: {EXECUTOR},
    s.OAUTH_UPSTREAM_CHANGED: {OAUTH},
}
OWNERSHIP: dict[str, str] = {
    # only a stream's owner creates or updates it (a non-owner could shrink the audit stream);
    # producers of the audit trail only publish
    s.AUDIT_STREAM: AUDIT,
    s.AUDIT_DEAD_STREAM: AUDIT,
    **{s.kv_stream(bucket): ADMIN for bucket in (s.KV_KEYS, s.KV_SERVERS, s.KV_POLICY, s.KV_LLM)},
    s.kv_stream(s.KV_CATALOG): EXECUTOR,
    s.obj_stream(s.OBJ_BLOBS): EXECUTOR,
    s.kv_stream(s.KV_PINS): EXECUTOR,
    s.kv_stream(s.KV_SESSIONS): INGRESS,
    **{
        s.kv_stream(bucket): OAUTH
        for bucket in (s.KV_OAUTH, s.KV_OAUTH_REGISTRATIONS, s.KV_OAUTH_PUBLIC, s.KV_OAUTH_REVOKED, s.KV_OAUTH_UPSTREAM)
    },
}
BLOB_USERS = {INGRESS, EXECUTOR, CODEMODE}
"""They purge single objects of the payload store (a filtered purge, which permissions cannot tell apart)."""
for _stream, _owner in OWNERSHIP.items():
    RULES[f"{API}.STREAM.CREATE.{_stream}"] = {_owner}
    RULES[f"{API}.STREAM.UPDATE.{_stream}"] = {_owner}
    RULES[f"{API}.STREAM.DELETE.{_stream}"] = set()
    RULES[f"{API}.STREAM.PURGE.{_stream}"] = BLOB_USERS if _stream == s.obj_stream(s.OBJ_BLOBS) else set()

SUBSCRIBE_RULES: dict[str, set[str]] = {
    s.EXEC_CALL: {EXECUTOR},
    s.POLICY_CALL: {POLICY},
    s.POLICY_REFUND: {POLICY},
    s.CODEMODE_CALL: {CODEMODE},
    **{subject: {OAUTH} for subject in (s.OAUTH_HTTP, s.OAUTH_PASSWORD, s.OAUTH_UPSTREAM_TOKEN, s.OAUTH_UPSTREAM_LINK)},
    **{subject: {AUDIT} for subject in (s.AUDIT_EXPORT, s.AUDIT_VERIFY, s.ANALYTICS_QUERY, s.ANALYTICS_CANCEL)},
    f"{s.AUDIT_EVENTS}.>": {ADMIN},  # `bastion audit tail --follow`; the stream itself is read by audit alone
    s.PIN_DRIFT: {ADMIN},
    s.EXEC_USER_CATALOG: {EXECUTOR},
    s.EXEC_USER_CATALOG_CHANGED: {INGRESS},
    s.OAUTH_UPSTREAM_CHANGED: {EXECUTOR},
    "_INBOX.>": set(),  # nobody reads every reply on the bus
    ">": set(),
    **{f"{s.inbox_prefix(role)}.>": {role} for role in ROLES},
}


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, `>` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def table_allows(patterns: tuple[str, ...], subject: str) -> bool:
    """Whether `subject` (itself possibly a wildcard, for subscriptions) is inside one allowed pattern."""
    return any(matches(p, subject) or p == subject for p in patterns)


class Violations:
    """Permission errors the server sent a connection (nats-py reports them through `error_cb`)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.changed = asyncio.Event()

    async def record(self, exc: Exception) -> None:
        self.seen.append(str(exc).lower())
        self.changed.set()

    def about(self, kind: str, subject: str) -> bool:
        return any(f'violation for {kind} to "{subject.lower()}"' in seen for seen in self.seen)

    async def wait_for(self, kind: str, subject: str, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not self.about(kind, subject):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def connected(url: str, creds: StackCredentials, role: str) -> AsyncIterator[tuple[nats.NATS, Violations]]:
    violations = Violations()
    nc = await nats.connect(
        url, error_cb=violations.record, allow_reconnect=False, **credentials(role, creds.seed_file(role))
    )
    try:
        yield nc, violations
    finally:
        await nc.close()


async def test_a_client_without_credentials_is_refused(secured_nats: EmbeddedNats) -> None:
    assert "Authorization Violation" in str(await refusal(secured_nats.url))


async def test_a_seed_not_in_the_config_is_refused(secured_nats: EmbeddedNats, tmp_path: Path) -> None:
    stranger = make_credentials(tmp_path / "elsewhere", {})  # same roles, keys this server never saw
    refused = await refusal(secured_nats.url, **credentials(EXECUTOR, stranger.seed_file(EXECUTOR)))
    assert "Authorization Violation" in str(refused)


def test_the_rules_of_the_issue_hold_in_the_table() -> None:
    for subject, allowed in RULES.items():
        granted = {role for role in ROLES if table_allows(PERMISSIONS[role].publish, subject)}
        assert granted == allowed, f"publish {subject}: table grants {sorted(granted)}, rules say {sorted(allowed)}"
    for subject, allowed in SUBSCRIBE_RULES.items():
        granted = {role for role in ROLES if table_allows(PERMISSIONS[role].subscribe, subject)}
        assert granted == allowed, f"subscribe {subject}: table grants {sorted(granted)}, rules say {sorted(allowed)}"


Attempt = Callable[[nats.NATS, str], Awaitable[object]]


async def refused_exactly_outside_its_table(
    secured_nats: EmbeddedNats, creds: StackCredentials, role: str, kind: str, probes: tuple[str, ...], attempt: Attempt
) -> None:
    """`role` makes an `attempt` (a publish or a subscription, `kind` in the server's words) on every
    probe: the server refuses each one its table does not allow, and none that it does."""
    table = PERMISSIONS[role].publish if kind == "publish" else PERMISSIONS[role].subscribe
    forbidden = [p for p in probes if not table_allows(table, p)]
    allowed = [p for p in probes if table_allows(table, p)]
    assert forbidden and allowed
    async with connected(secured_nats.url, creds, role) as (nc, violations):
        for subject in forbidden:
            await attempt(nc, subject)
        for subject in forbidden:
            await violations.wait_for(kind, subject)
        for subject in allowed:
            await attempt(nc, subject)
        await processed(nc)  # the server has handled every attempt above
        wrongly = [p for p in allowed if violations.about(kind, p)]
        assert not wrongly, f"{role} was refused a {kind} its table allows: {wrongly}"


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_is_refused_every_publish_outside_its_table(
    secured_nats: EmbeddedNats, creds: StackCredentials, role: str
) -> None:
    async def publish(nc: nats.NATS, subject: str) -> None:
        # a harmless payload: nothing here subscribes, and JetStream rejects `{}` as a request
        await nc.publish(subject, b"")

    await refused_exactly_outside_its_table(secured_nats, creds, role, "publish", PUBLISH_PROBES, publish)


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_is_refused_every_subscription_outside_its_table(
    secured_nats: EmbeddedNats, creds: StackCredentials, role: str
) -> None:
    async def subscribe(nc: nats.NATS, subject: str) -> None:
        await nc.subscribe(subject)

    await refused_exactly_outside_its_table(secured_nats, creds, role, "subscription", SUBSCRIBE_PROBES, subscribe)


async def test_another_roles_credentials_cannot_run_a_tool_or_grant_a_key(
    secured_nats: EmbeddedNats, creds: StackCredentials
) -> None:
    """The attacks of the finding, end to end: a subscriber with executor credentials sees no
    `bastion.exec.call` sent by anyone but policy (or ingress, whose calls need policy's grant:
    `test_ingress_calls_run_on_policy_s_grant_alone`), and a KV write of `bastion_keys` with
    ingress credentials never lands in the bucket."""
    async with connected(secured_nats.url, creds, EXECUTOR) as (executor, _):
        calls = await executor.subscribe(s.EXEC_CALL)
        await processed(executor)
        for role in (ADMIN, AUDIT, EXECUTOR, CODEMODE, OAUTH):
            async with connected(secured_nats.url, creds, role) as (nc, violations):
                await nc.publish(s.EXEC_CALL, f"from {role}".encode())
                await violations.wait_for("publish", s.EXEC_CALL)
        async with connected(secured_nats.url, creds, POLICY) as (policy, _):
            await policy.publish(s.EXEC_CALL, b"from policy")
            await processed(policy)
        first = await calls.next_msg(timeout=5)
        assert first.data == b"from policy", "a refused publish reached the executor"

    async with connected(secured_nats.url, creds, ADMIN) as (admin, _):
        keys = await admin.jetstream().create_key_value(bucket=s.KV_KEYS)
        await keys.put("legit", b"by admin")
        async with connected(secured_nats.url, creds, INGRESS) as (ingress, violations):
            await ingress.publish(f"{s.KV_ROOT}.{s.KV_KEYS}.forged", b'{"grants": ["*"]}')
            await violations.wait_for("publish", f"{s.KV_ROOT}.{s.KV_KEYS}.forged")
            readable = await ingress.jetstream().key_value(s.KV_KEYS)
            assert (await readable.get("legit")).value == b"by admin"  # ingress still reads keys
        assert await kv_keys(keys) == ["legit"]


class LogEvent(logging.Handler):
    """Counts the records containing `text`; `seen` is set at the first."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text, self.count = text, 0
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self.seen.set()


async def test_work_jetstream_delivers_for_another_role_is_refused_unless_policy_signed_it(
    secured_nats: EmbeddedNats, creds: StackCredentials
) -> None:
    """Subject permissions cannot stop a JetStream push consumer from delivering a stored value to
    any subject: with ingress credentials, a `ToolCall` written to `bastion_sessions` and a consumer
    whose deliver subject is `bastion.exec.call` reaches the executors. Policy's signature is what
    tells real work apart (`libs.common.bus.work_signing`)."""
    key = "bus-signing-key-for-this-test"
    call = ToolCall(caller=Caller(key_id="k", key_name="k"), server="nowhere", tool="t", name="nowhere__t", timeout=5)
    settings = ExecutorSettings(
        nats_url=secured_nats.url,
        nats_nkey_seed_file=creds.seed_file(EXECUTOR),
        bus_signing_key=key,
        instance="signed",
    )
    refused = LogEvent("without policy's signature")
    executor_log = logging.getLogger("services.executor.service")
    executor_log.addHandler(refused)
    try:
        async with ExecutorService(settings), connected(secured_nats.url, creds, INGRESS) as (ingress, _):
            await declare_owned(ingress.jetstream(), INGRESS, StoreSettings())
            sessions = await kv_bucket(ingress.jetstream(), s.KV_SESSIONS)
            await sessions.put("forged", call.model_dump_json().encode())
            await ingress.jetstream()._jsm.add_consumer(
                s.kv_stream(s.KV_SESSIONS),
                config=ConsumerConfig(
                    deliver_subject=s.EXEC_CALL,
                    deliver_group=s.QUEUE_EXECUTOR,  # executors subscribe as a queue group
                    filter_subject=f"{s.KV_ROOT}.{s.KV_SESSIONS}.forged",
                ),
            )
            await asyncio.wait_for(refused.seen.wait(), 10)  # delivered, and refused

            async with connected(secured_nats.url, creds, POLICY) as (policy, _):
                inbox = policy.new_inbox()
                answers = await policy.subscribe(inbox)
                data = call.model_dump_json().encode()
                signed = WorkSigner(key).headers(s.EXEC_CALL, inbox, data)
                await policy.publish(s.EXEC_CALL, data, reply=inbox, headers=signed)
                outcome = decode_outcome((await answers.next_msg(timeout=10)).data)
    finally:
        executor_log.removeHandler(refused)
    assert outcome.id == call.id and outcome.error is not None, "signed work is taken (and answered)"
    assert refused.count == 1, "only the forged call was refused"


async def test_ingress_calls_run_on_policy_s_grant_alone(secured_nats: EmbeddedNats, creds: StackCredentials) -> None:
    """Ingress may publish work to the executors, but an executor runs it only with policy's grant
    for exactly that caller and tool (`messages.Grant`): none, one signed with another key, one for
    another tool or caller are refused without an answer; a genuine one past its expiry is answered
    unrun and marked stale (ingress then asks policy); a genuine current one runs."""
    key = "bus-signing-key-for-this-test"
    caller = Caller(key_id="k", key_name="k")
    call = ToolCall(caller=caller, server="nowhere", tool="t", name="nowhere__t", timeout=5)

    def grant(signer: WorkSigner, expires: float, head: ToolCall = call) -> dict[str, str]:
        mac = signer.grant_mac(s.EXEC_CALL, head, expires, None)
        return {s.GRANT: Grant(expires=expires, mac=mac).model_dump_json()}

    genuine, forger = WorkSigner(key), WorkSigner("another-key")
    later = time.time() + 60
    other_tool = call.model_copy(update={"tool": "u", "name": "nowhere__u"})
    other_caller = call.model_copy(update={"caller": Caller(key_id="admin", key_name="admin")})
    settings = ExecutorSettings(
        nats_url=secured_nats.url,
        nats_nkey_seed_file=creds.seed_file(EXECUTOR),
        bus_signing_key=key,
        instance="granted",
    )
    unsigned, forged = LogEvent("without policy's signature"), LogEvent("a grant policy did not make")
    executor_log = logging.getLogger("services.executor.service")
    for handler in (unsigned, forged):
        executor_log.addHandler(handler)
    try:
        async with ExecutorService(settings), connected(secured_nats.url, creds, INGRESS) as (ingress, violations):
            inbox = f"{s.inbox_prefix(INGRESS)}.grants"
            answers = await ingress.subscribe(inbox)
            data = call.model_dump_json().encode()
            await ingress.publish(s.EXEC_CALL, data, reply=inbox)
            await asyncio.wait_for(unsigned.seen.wait(), 10)
            for headers in (
                grant(forger, later),
                grant(genuine, later, other_tool),  # policy's grant for another tool, sent with this call
                grant(genuine, later, other_caller),
            ):
                await ingress.publish(s.EXEC_CALL, data, reply=inbox, headers=headers)
            await ingress.publish(s.EXEC_CALL, data, reply=inbox, headers=grant(genuine, time.time() - 1))
            stale = await answers.next_msg(timeout=10)
            await ingress.publish(s.EXEC_CALL, data, reply=inbox, headers=grant(genuine, later))
            ran = await answers.next_msg(timeout=10)
            assert not violations.about("publish", s.EXEC_CALL)
    finally:
        for handler in (unsigned, forged):
            executor_log.removeHandler(handler)
    assert unsigned.count == 1 and forged.count == 3
    assert (stale.headers or {}).get(s.GRANT_STALE) == "1"
    assert decode_outcome(stale.data).execution == "not_run"
    assert s.GRANT_STALE not in (ran.headers or {})
    outcome = decode_outcome(ran.data)
    assert outcome.id == call.id and outcome.error is not None and "nowhere" in outcome.error.message
