"""Every NATS subject, queue group, stream and KV bucket name Bastion uses.

Subject strings appear nowhere else in the code base: services import them from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

__all__ = [
    "ACCEPT_BY",
    "ANALYTICS_CANCEL",
    "ANALYTICS_QUERY",
    "AUDIT_DEAD",
    "AUDIT_DEAD_STREAM",
    "AUDIT_EVENTS",
    "AUDIT_EXPORT",
    "AUDIT_QUERY",
    "AUDIT_STREAM",
    "AUDIT_VERIFY",
    "BUS_MOVED",
    "CALL_CANCEL",
    "CHARGED",
    "CHARGED_USD",
    "CODEMODE_ACCEPTED_BY",
    "CODEMODE_ALIVE",
    "CODEMODE_CALL",
    "CODEMODE_HOLDERS",
    "EXEC_ACCEPTED_BY",
    "EXEC_ALIVE",
    "EXEC_CALL",
    "EXEC_CANCEL",
    "EXEC_HOLDERS",
    "EXEC_LLM",
    "EXEC_REQUEST",
    "EXEC_USER_CATALOG",
    "EXEC_USER_CATALOG_CHANGED",
    "GRANT",
    "GRANT_STALE",
    "HANDED_OVER",
    "INBOX",
    "JS_ACK",
    "JS_API",
    "JS_FLOW_CONTROL",
    "KV_ADMIN",
    "KV_APPROVALS",
    "KV_CATALOG",
    "KV_KEYS",
    "KV_LLM",
    "KV_OAUTH",
    "KV_OAUTH_PUBLIC",
    "KV_OAUTH_REGISTRATIONS",
    "KV_OAUTH_REVOKED",
    "KV_OAUTH_UPSTREAM",
    "KV_PINS",
    "KV_POLICY",
    "KV_RESPONSES",
    "KV_ROOT",
    "KV_SERVERS",
    "KV_SESSIONS",
    "KV_TASKS",
    "NO_EXECUTOR",
    "OAUTH_HTTP",
    "OAUTH_PASSWORD",
    "OAUTH_UPSTREAM_CHANGED",
    "OAUTH_UPSTREAM_LINK",
    "OAUTH_UPSTREAM_TOKEN",
    "OBJ_BLOBS",
    "PIN_DRIFT",
    "POLICY_ACCEPTED_BY",
    "POLICY_ALIVE",
    "POLICY_CALL",
    "POLICY_HOLDERS",
    "POLICY_LIST",
    "POLICY_LLM",
    "POLICY_REFUND",
    "POLICY_REQUEST",
    "QUEUE_AUDIT",
    "QUEUE_CODEMODE",
    "QUEUE_EXECUTOR",
    "QUEUE_OAUTH",
    "QUEUE_POLICY",
    "REPLY_TO",
    "RESOURCE_UPDATED",
    "TASK_CANCEL",
    "WANT_ACK",
    "WORK_SIGNATURE",
    "Holders",
    "alive_subject",
    "audit_producer",
    "audit_subject",
    "codemode_alive_subject",
    "executor_alive_subject",
    "inbox_prefix",
    "kv_stream",
    "obj_stream",
    "policy_alive_subject",
]

# --- request path (core NATS request/reply) ---
WANT_ACK: Final = "Bastion-Want-Ack"
"""Header on a `POLICY_CALL` or `EXEC_CALL` request: if the call is still running a moment later
(`BASTION_ACK_AFTER`, 0.25 s), the replica that took it sends an empty acknowledgement carrying
its instance name (`POLICY_ACCEPTED_BY` / `EXEC_ACCEPTED_BY`), so the requester knows which
replica holds it. Fast calls answer before that and send no ack (`libs.common.bus.relay`)."""

ACCEPT_BY: Final = "Bastion-Accept-By"
"""Header on every request sent with `WANT_ACK`: the Unix time after which the requester no longer
waits for an acknowledgement (it has failed the call as lost). A replica receiving the request later
than that, minus `BASTION_ACK_MARGIN`, answers it unrun instead of running it; one that takes it
acknowledges it in time (`libs.common.bus.relay`)."""

CHARGED_USD: Final = "Bastion-Charged-Usd"
"""Header of a priced call, in USD: policy forwards the call to an executor with its price, and the
executor echoes it on the outcome it sends the requester (0 when the call did not run: its charge is
refunded), beside the outcome's bytes; ingress and codemode record it as the event's `cost_usd`."""

POLICY_CALL: Final = "bastion.policy.call"
"""ingress -> policy: a `ToolCall`; policy answers a refusal itself, or forwards the call to an
executor (`EXEC_CALL`) with the requester's reply subject in `REPLY_TO`: the executor's
acknowledgement and outcome then go straight back to ingress, policy is out of the way."""

POLICY_LIST: Final = "bastion.policy.list"
"""ingress -> policy: a `VisibleToolsQuery`; policy answers `VisibleTools`."""

POLICY_ACCEPTED_BY: Final = "Bastion-Policy"
"""Header of a policy replica's acknowledgement of a `POLICY_CALL`: its instance name."""

POLICY_ALIVE: Final = "bastion.policy.alive"
"""ingress -> one policy replica (no queue group): an empty request answered at once by a live
replica; "no responders" proves the replica is gone, so its in-flight calls can fail fast."""

EXEC_CALL: Final = "bastion.exec.call"
"""policy -> executor: the `ToolCall` policy allowed (same bytes); the executor answers a `CallOutcome`
to the subject in `REPLY_TO` (the requester's), or to the message's reply subject without one.
ingress -> executor: a call carrying policy's `GRANT` for it (the executor answers the reply subject)."""

REPLY_TO: Final = "Bastion-Reply-To"
"""Header of an `EXEC_CALL` / `EXEC_REQUEST` forwarded by policy: the requester's reply subject
(ingress's or codemode's inbox), where the executor sends its acknowledgement and outcome. The
message's own reply subject is policy's: only NATS's "no responders" (no executor at all) goes
there, which the server sends to the publisher alone. Covered by policy's signature."""

CHARGED: Final = "Bastion-Charged"
"""Header of a forwarded `EXEC_CALL` whose call policy charged to a budget: the executor sends
`POLICY_REFUND` when its outcome says the tool did not run (`messages.REFUNDED`)."""

GRANT: Final = "Bastion-Grant"
"""Header of a policy decision ingress may reuse (`grants.Grant` as JSON): policy puts it on a call it
allowed with nothing to count (no budget, no rate limit), the executor hands it back on the outcome,
and ingress sends the same caller's next calls of that tool straight to `EXEC_CALL` / `EXEC_REQUEST`
with it until it expires or ingress sees keys or policy change. Its MAC (policy's signing key)
binds the caller, the target, the request's narrowing headers, the price and the expiry; an
executor runs such a call only when it verifies."""

GRANT_STALE: Final = "Bastion-Grant-Stale"
"""Header of an executor's answer to a call sent with a genuine `GRANT` that has expired on the
executor's clock, or was decided before a servers change the executor has applied: nothing ran;
the requester asks policy instead."""

NO_EXECUTOR: Final = "Bastion-No-Executor"
"""Header of policy's answer to a call it allowed and no executor was subscribed to receive (NATS
said so): nothing ran, and the requester may send the call again (`libs.common.bus.rejoin`)."""

HANDED_OVER: Final = "Bastion-Handed-Over"
"""Header of an empty message from policy to a requester whose call it had acknowledged (it held it
past `BASTION_ACK_AFTER`) and has now forwarded: policy no longer holds it; the requester waits for
the executor's acknowledgement as for a fresh request."""

POLICY_REFUND: Final = "bastion.policy.refund"
"""executor, ingress, codemode -> every policy replica (no queue group): a `Refund` of a forwarded
call that did not run (or that the gateway lost track of); the replica that charged it gives the
budgets back, the others hold no charge for it and ignore it."""

POLICY_REQUEST: Final = "bastion.policy.request"
"""ingress -> policy: an `UpstreamRequest` (prompts, resources, completion); answered like `POLICY_CALL`."""

EXEC_REQUEST: Final = "bastion.exec.request"
"""policy -> executor: the `UpstreamRequest` policy allowed; the executor answers a `CallOutcome`."""

EXEC_USER_CATALOG: Final = "bastion.exec.user_catalog"
"""ingress -> executor (queue `executor`): a `UserCatalogQuery`; answered `UserCatalog`, what a per-user
server lists over that user's own session (`libs.common.contracts.user_catalogs`)."""

EXEC_USER_CATALOG_CHANGED: Final = "bastion.exec.user_catalog_changed"
"""executor -> every ingress: a `UserCatalogChanged`; the user's listing of that server changed."""

POLICY_LLM: Final = "bastion.policy.llm"
"""ingress -> policy: an `LlmRequest` (a chat completion); policy checks the key and budgets, then relays
the executor's `LlmOutcome` (or answers its refusal)."""

EXEC_LLM: Final = "bastion.exec.llm"
"""policy -> executor: the `LlmRequest` policy allowed (same bytes, signed); answered with an `LlmOutcome`,
after any streamed chunks went to the request's stream subject."""

CALL_CANCEL: Final = "bastion.calls.cancel"
"""ingress -> every ingress: a `CancelCall` (an agent's `notifications/cancelled`, which may reach any
replica); the replica running that request tells the executors."""

TASK_CANCEL: Final = "bastion.tasks.cancel"
"""ingress -> every ingress: the KV key of a gateway-hosted task an agent cancelled (on any replica);
the replica running it stops it."""

EXEC_CANCEL: Final = "bastion.exec.cancel"
"""ingress -> every executor and codemode replica: a `CancelExecution`; the replica running that call
abandons it (an executor's SDK sends the upstream `notifications/cancelled`; codemode stops the run
and abandons its tool calls the same way)."""

RESOURCE_UPDATED: Final = "bastion.events.resource-updated"
"""executor -> every ingress (no queue group): a `ResourceUpdated`; each ingress tells the agent
sessions it streams to that subscribed to the resource."""

PIN_DRIFT: Final = "bastion.events.pin-drift"
"""executor -> anyone watching (the admin role): a `PinDrift` each time a listing finds a definition
that drifted from its pin (docs/supply-chain.md); the record waiting for a person is in `KV_PINS`."""

WORK_SIGNATURE: Final = "Bastion-Signature"
"""Header of an `EXEC_CALL` / `EXEC_REQUEST`: policy's HMAC over subject, reply and body
(`libs.common.bus.work_signing`); an executor with a signing key runs nothing without a valid one."""

EXEC_ACCEPTED_BY: Final = "Bastion-Executor"
"""Header of an executor replica's acknowledgement of an `EXEC_CALL`: its instance name."""

EXEC_ALIVE: Final = "bastion.exec.alive"
"""policy -> one executor replica: as `POLICY_ALIVE`, for the executor replica holding a call."""


BUS_MOVED: Final = "bastion.bus.moved"
"""A replica that holds calls (policy, executor, codemode) -> the requesters, when its connection is
back after it lost its NATS member (one that stopped answering, or went away): `BusMoved`. A call
sent to it before then and not acknowledged is likely lost in that member (`libs.common.bus.relay`)."""


CODEMODE_CALL: Final = "bastion.codemode.call"
"""ingress -> codemode: a `CodeModeCall` (one of the five meta-tools); answered with `CodeModeAnswer`.
The codemode service sends the tool calls of a script on `POLICY_CALL` like ingress does. Carries
`WANT_ACK` like `POLICY_CALL`: a run that takes a while is acknowledged (`CODEMODE_ACCEPTED_BY`), so
ingress notices a codemode replica dying mid-run within about a second."""

CODEMODE_ACCEPTED_BY: Final = "Bastion-Codemode"
"""Header of a codemode replica's acknowledgement of a `CODEMODE_CALL`: its instance name."""

CODEMODE_ALIVE: Final = "bastion.codemode.alive"
"""ingress -> one codemode replica: as `POLICY_ALIVE`, for the replica running a meta-tool call."""


def _token(instance: str) -> str:
    """An instance name made a single subject token."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in instance)


def alive_subject(root: str, instance: str) -> str:
    """The liveness subject of one replica: `root` (`POLICY_ALIVE`, ...) and its instance name as a token."""
    return f"{root}.{_token(instance)}"


policy_alive_subject: Final = partial(alive_subject, POLICY_ALIVE)
codemode_alive_subject: Final = partial(alive_subject, CODEMODE_ALIVE)
executor_alive_subject: Final = partial(alive_subject, EXEC_ALIVE)


@dataclass(frozen=True, slots=True)
class Holders:
    """A kind of replica that holds the requests it is sent and acknowledges them (`libs.common.bus.relay`).

    Its role, the header naming the replica in its acknowledgements, and its liveness subjects."""

    role: str
    accepted_by: str
    alive_subject: Callable[[str], str]


POLICY_HOLDERS: Final = Holders("policy", POLICY_ACCEPTED_BY, policy_alive_subject)
EXEC_HOLDERS: Final = Holders("executor", EXEC_ACCEPTED_BY, executor_alive_subject)
CODEMODE_HOLDERS: Final = Holders("codemode", CODEMODE_ACCEPTED_BY, codemode_alive_subject)


QUEUE_POLICY: Final = "policy"
QUEUE_EXECUTOR: Final = "executor"
QUEUE_AUDIT: Final = "audit"
QUEUE_CODEMODE: Final = "codemode"
QUEUE_OAUTH: Final = "oauth"

# --- OAuth (services/oauth; request/reply in the queue group `oauth`) ---
OAUTH_HTTP: Final = "bastion.oauth.http"
"""ingress -> oauth: an `HttpExchangeRequest` for a route under `/oauth/` or `/.well-known/oauth-*`;
answered with an `HttpExchangeResponse` that ingress sends back verbatim (`libs.common.contracts.oauth`)."""

OAUTH_PASSWORD: Final = "bastion.oauth.password"
"""admin -> oauth: a `PasswordChange` for the built-in user store; answered `PasswordChanged`."""

OAUTH_UPSTREAM_TOKEN: Final = "bastion.oauth.upstream.token"
"""executor -> oauth: an `UpstreamTokenQuery`; answered `UpstreamToken`, the current access token for
an upstream (`libs.common.contracts.oauth_upstream`). Only the executor may ask."""

OAUTH_UPSTREAM_CHANGED: Final = "bastion.oauth.upstream.changed"
"""oauth -> every executor: an `UpstreamUserChanged` (a user's token for a per-user server was stored
anew, or forgotten); the executor drops that user's session and listing."""

OAUTH_UPSTREAM_LINK: Final = "bastion.oauth.upstream.link"
"""admin -> oauth: an `AuthorizeLinkQuery`; answered `AuthorizeLink` (a fresh link an admin opens to
authorize a server's shared token)."""

# --- audit (JetStream) ---
AUDIT_STREAM: Final = "BASTION_AUDIT"
AUDIT_EVENTS: Final = "bastion.audit.events"
AUDIT_QUERY: Final = "bastion.audit.query"
"""CLI -> audit: an `AuditQuery`; answered with `AuditRows` (the audit service owns ClickHouse)."""
AUDIT_EXPORT: Final = "bastion.audit.export"
"""CLI -> audit: an `ExportPage`; answered with `ExportRows` (`bastion audit export` asks page by page)."""
ANALYTICS_QUERY: Final = "bastion.analytics.query"
"""admin API / CLI -> audit: an `AnalyticsQuery` (one read-only SQL query); answered with
`AnalyticsAnswer`."""
ANALYTICS_CANCEL: Final = "bastion.analytics.cancel"
"""admin API / CLI -> audit: an `AnalyticsCancel`, the caller of a query gave up (no answer)."""
AUDIT_VERIFY: Final = "bastion.audit.verify"
"""CLI -> audit: an `AuditVerify`; answered with an `AuditVerdict` (hash chains and checkpoints checked)."""
AUDIT_DEAD: Final = "bastion.audit.dead"
"""audit -> operators: messages on the audit stream that are not a storable `AuditEvent`, byte for byte."""
AUDIT_DEAD_STREAM: Final = "BASTION_AUDIT_DEAD"
"""Keeps dead letters for inspection (they are not on `AUDIT_EVENTS`, so not in `AUDIT_STREAM`)."""


_NOT_IN_TOKEN: Final = re.compile(r"[^A-Za-z0-9_-]")


def audit_subject(role: str, instance: str) -> str:
    """Where a producer of bus role `role` publishes its events: `bastion.audit.events.<role>.<instance>`.

    Only `role` may publish under `bastion.audit.events.<role>.>` (`permissions`), so the subject an
    event arrives on proves which role sent it; `instance` (its chain, made a subject token) is for
    people reading the stream."""
    return f"{AUDIT_EVENTS}.{role}.{_NOT_IN_TOKEN.sub('_', instance) or '_'}"


def audit_producer(subject: str) -> str | None:
    """The bus role whose events `subject` carries (`audit_subject`), or None for any other shape."""
    prefix, _, rest = subject.partition(f"{AUDIT_EVENTS}.")
    role, _, instance = rest.partition(".")
    if prefix or not role or not instance or "." in instance:
        return None
    return role


# --- configuration and discovered state (JetStream KV) ---
KV_SERVERS: Final = "bastion_servers"
"""server name -> `ServerRecord` (what to connect to)."""

KV_KEYS: Final = "bastion_keys"
"""key id (sha256 of the secret) -> `KeyRecord`."""

KV_POLICY: Final = "bastion_policy"
"""`<kind>.<id>` -> customers, teams, users and tool groups (`libs.common.contracts.entities`)."""

KV_LLM: Final = "bastion_llm"
"""provider name -> `ProviderRecord` (an OpenAI-compatible upstream and the models it serves)."""

KV_CATALOG: Final = "bastion_catalog"
"""server name -> `ServerCatalog` (tools the executor discovered, already namespaced)."""

KV_PINS: Final = "bastion_pins"
"""`def.<server>.<kind>.<name>` -> `PinRecord` (a definition's approved and pending versions),
`baseline.<server>` -> `PinBaseline` (written by executors), `imported.<key id>` -> `CatalogImport`
(the last signed catalog imported from that key; `libs.common.contracts.pins`, docs/supply-chain.md)."""

KV_ADMIN: Final = "bastion_admin"
"""The admin service's principals and their credentials (`libs.common.contracts.admin_principals`):
`principal.<hex of the name>`, `token.<sha256 of the token>`, `role.<name>` (custom roles),
`session.<sha256 of the session id>`, `login.<sha256 of the state>`. Tokens and sessions are kept
only as their sha256; only the admin role may read or write it."""

KV_APPROVALS: Final = "bastion_approvals"
"""`approval.<id>` -> `ApprovalRecord`: a tool call parked until a person approves or denies it
(`libs.common.cedar.approvals`); its call and outcome sealed. Written by policy (park, run) and admin (decide)."""

KV_SESSIONS: Final = "bastion_sessions"
"""`<session>.level` and `<session>.sub.<uri hash>` -> what an agent session asked for (its log level,
its resource subscriptions), so whichever ingress replica holds the session's stream honours it."""

KV_TASKS: Final = "bastion_tasks"
"""`<caller prefix>.<task digest>` -> `gateway_tasks.TaskRecord`: every MCP task an agent holds
through the gateway (an upstream's, passed through, or one the gateway hosts), for any replica."""

KV_RESPONSES: Final = "bastion_responses"
"""`<caller prefix>.<response id>` -> a stored OpenAI Responses conversation (`/v1/responses`): its
chat messages up to and with that response, so a request naming it as `previous_response_id`
continues it on any ingress replica, for the key that made it only. Kept a day, the oldest dropped
when the bucket is full."""

KV_OAUTH: Final = "bastion_oauth"
"""The oauth service's own state: `client.<id>`, `password.<user>`, `code.<sha256>`, `family.<id>`,
`pending.<sha256>`, `failures.<sha256>`, `signing` (sealed). Secrets are hashed or sealed, never kept
in plain text; only the oauth role may read it."""

KV_OAUTH_REGISTRATIONS: Final = "bastion_oauth_registrations"
"""Anonymous client registrations (RFC 7591) not used yet: `client.<sha256>` until the client's first
token moves it to `KV_OAUTH`, and `rate.<sha256 of an address>.<hour>` / `rate.all.<hour>` counters.
Entries expire `oauth.REGISTRATION_TTL` after their last write, so a registration never used is gone
by itself; only the oauth role may read it."""

KV_OAUTH_PUBLIC: Final = "bastion_oauth_public"
"""`jwks` -> the public keys access tokens are signed with (oauth -> ingress, which verifies locally)."""

KV_OAUTH_REVOKED: Final = "bastion_oauth_revoked"
"""`<jti>` -> a revoked access token (oauth -> ingress); entries expire after the longest token lifetime."""

KV_OAUTH_UPSTREAM: Final = "bastion_oauth_upstream"
"""`client.<server>`, `token.<server>.<owner>`, `flow.<state>` -> upstream OAuth records, every value
sealed with `BASTION_SECRETS_KEY` (the oauth service alone reads and writes it)."""

# --- payloads larger than one NATS message (JetStream object store) ---
OBJ_BLOBS: Final = "bastion_blobs"
"""`<what>.<id>` -> a tool result or request arguments too large for one message, named in the message
instead (`CallOutcome.result_blob`, `ToolCall.arguments_blob`); taken (read, deleted) by the receiver,
expired after minutes otherwise (`libs.common.bus.blobs`)."""


def kv_stream(bucket: str) -> str:
    """The JetStream stream behind a KV bucket (NATS names it `KV_<bucket>`)."""
    return f"KV_{bucket}"


def obj_stream(bucket: str) -> str:
    """The JetStream stream behind an object store bucket (NATS names it `OBJ_<bucket>`)."""
    return f"OBJ_{bucket}"


# --- NATS's own subjects, which the per-service permissions (`libs.common.bus.permissions`) name ---
JS_API: Final = "$JS.API"
"""JetStream API requests: `$JS.API.STREAM.INFO.<stream>`, `$JS.API.CONSUMER.CREATE.<stream>`, ..."""
JS_ACK: Final = "$JS.ACK"
"""Acknowledgements of JetStream deliveries: `$JS.ACK.<stream>.<consumer>.…`."""
JS_FLOW_CONTROL: Final = "$JS.FC"
"""Flow-control replies of push consumers (KV watches): `$JS.FC.<stream>.…`."""
KV_ROOT: Final = "$KV"
"""Writes to a KV bucket are publishes to `$KV.<bucket>.<key>`."""
OBJ_ROOT: Final = "$O"
"""Object store chunks and metadata are publishes to `$O.<bucket>.C.…` / `$O.<bucket>.M.…`."""
INBOX: Final = "_INBOX"


def inbox_prefix(role: str) -> str:
    """Reply subjects of one kind of client (`_INBOX.<role>`).

    A service may read only its own replies, so one service cannot eavesdrop on the answers (KV values,
    outcomes) another receives."""
    return f"{INBOX}.{role}"
