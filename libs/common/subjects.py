"""Every NATS subject, queue group, stream and KV bucket name Bastion uses.

Subject strings appear nowhere else in the code base: services import them from here.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AUDIT_DEAD",
    "AUDIT_DEAD_STREAM",
    "AUDIT_EVENTS",
    "AUDIT_QUERY",
    "AUDIT_STREAM",
    "CALL_CANCEL",
    "EXEC_ACCEPTED_BY",
    "EXEC_ALIVE",
    "EXEC_CALL",
    "EXEC_CANCEL",
    "EXEC_REQUEST",
    "KV_CATALOG",
    "KV_KEYS",
    "KV_POLICY",
    "KV_SERVERS",
    "KV_SESSIONS",
    "POLICY_ACCEPTED_BY",
    "POLICY_ALIVE",
    "POLICY_CALL",
    "POLICY_LIST",
    "POLICY_REQUEST",
    "QUEUE_AUDIT",
    "QUEUE_EXECUTOR",
    "QUEUE_POLICY",
    "RESOURCE_UPDATED",
    "WANT_ACK",
    "audit_subject",
    "executor_alive_subject",
    "policy_alive_subject",
]

# --- request path (core NATS request/reply) ---
WANT_ACK: Final = "Bastion-Want-Ack"
"""Header on a `POLICY_CALL` or `EXEC_CALL` request: if the call is still running a moment later
(`BASTION_ACK_AFTER`, 0.25 s), the replica that took it sends an empty acknowledgement carrying
its instance name (`POLICY_ACCEPTED_BY` / `EXEC_ACCEPTED_BY`), so the requester knows which
replica holds it. Fast calls answer before that and send no ack (`bastion_common.relay`)."""

POLICY_CALL: Final = "bastion.policy.call"
"""ingress -> policy: a `ToolCall`; policy answers a denial itself or relays the executor's answer."""

POLICY_LIST: Final = "bastion.policy.list"
"""ingress -> policy: a `VisibleToolsQuery`; policy answers `VisibleTools`."""

POLICY_ACCEPTED_BY: Final = "Bastion-Policy"
"""Header of a policy replica's acknowledgement of a `POLICY_CALL`: its instance name."""

POLICY_ALIVE: Final = "bastion.policy.alive"
"""ingress -> one policy replica (no queue group): an empty request answered at once by a live
replica; "no responders" proves the replica is gone, so its in-flight calls can fail fast."""

EXEC_CALL: Final = "bastion.exec.call"
"""policy -> executor: the `ToolCall` policy allowed (same bytes); the executor answers a `CallOutcome`."""

POLICY_REQUEST: Final = "bastion.policy.request"
"""ingress -> policy: an `UpstreamRequest` (prompts, resources, completion); answered like `POLICY_CALL`."""

EXEC_REQUEST: Final = "bastion.exec.request"
"""policy -> executor: the `UpstreamRequest` policy allowed; the executor answers a `CallOutcome`."""

CALL_CANCEL: Final = "bastion.calls.cancel"
"""ingress -> every ingress: a `CancelCall` (an agent's `notifications/cancelled`, which may reach any
replica); the replica running that request tells the executors."""

EXEC_CANCEL: Final = "bastion.exec.cancel"
"""ingress -> every executor: a `CancelExecution`; the replica running that call abandons it, and the
SDK sends the upstream `notifications/cancelled`."""

RESOURCE_UPDATED: Final = "bastion.events.resource-updated"
"""executor -> every ingress (no queue group): a `ResourceUpdated`; each ingress tells the agent
sessions it streams to that subscribed to the resource."""

EXEC_ACCEPTED_BY: Final = "Bastion-Executor"
"""Header of an executor replica's acknowledgement of an `EXEC_CALL`: its instance name."""

EXEC_ALIVE: Final = "bastion.exec.alive"
"""policy -> one executor replica: as `POLICY_ALIVE`, for the executor replica holding a call."""


def _token(instance: str) -> str:
    """An instance name made a single subject token."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in instance)


def policy_alive_subject(instance: str) -> str:
    """The liveness subject of one policy replica."""
    return f"{POLICY_ALIVE}.{_token(instance)}"


def executor_alive_subject(instance: str) -> str:
    """The liveness subject of one executor replica."""
    return f"{EXEC_ALIVE}.{_token(instance)}"


QUEUE_POLICY: Final = "policy"
QUEUE_EXECUTOR: Final = "executor"
QUEUE_AUDIT: Final = "audit"

# --- audit (JetStream) ---
AUDIT_STREAM: Final = "BASTION_AUDIT"
AUDIT_EVENTS: Final = "bastion.audit.events"
AUDIT_QUERY: Final = "bastion.audit.query"
"""CLI -> audit: an `AuditQuery`; answered with `AuditRows` (the audit service owns ClickHouse)."""
AUDIT_DEAD: Final = "bastion.audit.dead"
"""audit -> operators: messages on the audit stream that are not a storable `AuditEvent`, byte for byte."""
AUDIT_DEAD_STREAM: Final = "BASTION_AUDIT_DEAD"
"""Keeps dead letters for inspection (they are not on `AUDIT_EVENTS`, so not in `AUDIT_STREAM`)."""


def audit_subject(kind: str) -> str:
    """Subject one audit event kind is published on (`tool_call`, ...)."""
    return f"{AUDIT_EVENTS}.{kind}"


# --- configuration and discovered state (JetStream KV) ---
KV_SERVERS: Final = "bastion_servers"
"""server name -> `ServerRecord` (what to connect to)."""

KV_KEYS: Final = "bastion_keys"
"""key id (sha256 of the secret) -> `KeyRecord`."""

KV_POLICY: Final = "bastion_policy"
"""`<kind>.<id>` -> customers, teams, users and tool groups (`bastion_common.entities`)."""

KV_CATALOG: Final = "bastion_catalog"
"""server name -> `ServerCatalog` (tools the executor discovered, already namespaced)."""

KV_SESSIONS: Final = "bastion_sessions"
"""`<session>.level` and `<session>.sub.<uri hash>` -> what an agent session asked for (its log level,
its resource subscriptions), so whichever ingress replica holds the session's stream honours it."""
