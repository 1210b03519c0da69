"""Who may publish and subscribe to what on the bus: the one table, and the nats-server config made from it.

Every client of NATS connects as one *role* with its own NKey, and nats-server enforces an allow list
per role: anything not listed is refused (a publish is dropped with a permissions violation, a
subscription is refused). The table is derived from the code: each entry says which service sends or
receives it. `bastion up` renders it into the embedded server's config (`render_authorization`);
`deploy/README.md` shows the same for a production nats-server.

Three rules shape it:
- only policy may publish the work subjects of the executor (`bastion.exec.call` / `.request`),
  and ingress, whose calls there an executor runs only with policy's signed grant for exactly that
  call (`messages.Grant`); only the admin role may write the configuration buckets (`bastion_keys`, `bastion_servers`,
  `bastion_policy`); a service that only reads a bucket cannot write it;
- every role reads only its own reply subjects (`_INBOX.<role>.>`), so no service sees the answers
  (KV values, call outcomes) another one receives; it may publish to the inboxes of the roles it
  answers (explicitly, rather than with `allow_responses`: a call is answered twice, acknowledgement
  and outcome, up to the call timeout later, which a response allowance's count and expiry would
  have to be tuned to; an executor answers the requester whose call policy forwarded to it, not the
  publisher; its call-stream events are not responses at all);
- the audit stream is written by its producers alone (`AUDIT_PRODUCERS`), each on its own subjects
  (`bastion.audit.events.<role>.>`), and read (consumed) by the audit service alone, which checks
  that every event's chain belongs to the role whose subject it came on; the admin role may watch
  live events (`bastion audit tail --follow`) and ask the audit service (tail, export, verify,
  analytics queries), which answers only on the admin role's inbox.
- the oauth service's state (client records, codes, refresh families, password hashes, the sealed
  signing key) and the upstream tokens are readable by the oauth role alone; ingress reads only the
  public keys and the revocation list it verifies access tokens with, and only the executor may ask
  for an upstream's access token.

Every stream, KV bucket and object store has one owner (`OWNERS`), the only role that may create
it or update its configuration (`libs.common.bus.stores`); no role may delete or purge one (but the
object store's users, object by object). Producers of the audit stream only publish into it, so a
compromised ingress or Code Mode host cannot shrink or discard the audit backlog. A reader started
before the owner finds the store missing and waits for it (a KV watch reads it as empty), so
services still start in any order.

Permissions cannot say what a JetStream consumer may deliver where: a client allowed to watch a
bucket it can write may have the server deliver that content to any subject. Hence the executors
also verify policy's signature on their work (`libs.common.bus.work_signing`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from libs.common.contracts import subjects as s

__all__ = [
    "ADMIN",
    "AUDIT",
    "AUDIT_PRODUCERS",
    "CALL_HOLDERS",
    "CODEMODE",
    "EXECUTOR",
    "INGRESS",
    "OAUTH",
    "OWNERS",
    "PERMISSIONS",
    "POLICY",
    "ROLES",
    "Permissions",
    "render_authorization",
]

INGRESS: Final = "ingress"
"""The public `/mcp` endpoint (no admin credentials: a public replica cannot change configuration)."""
ADMIN: Final = "admin"
"""The admin service (`services/admin`: the admin API, analytics, the dashboard), `bastion config
apply` and `bastion audit tail`; no other service holds it."""
POLICY: Final = "policy"
EXECUTOR: Final = "executor"
AUDIT: Final = "audit"
CODEMODE: Final = "codemode"
"""Runs Code Mode scripts; their tool calls enter the request path at policy, exactly like an agent's."""
OAUTH: Final = "oauth"
"""The authorization server toward agents and the OAuth client toward upstreams: the only reader of
its state and of upstream tokens (`bastion_oauth`, `bastion_oauth_upstream`)."""
ROLES: Final = (INGRESS, ADMIN, POLICY, EXECUTOR, AUDIT, CODEMODE, OAUTH)
CALL_HOLDERS: Final = (POLICY, EXECUTOR, CODEMODE)
"""The roles that take calls from a requester (`libs.common.bus.relay`): each says on `BUS_MOVED` when its
connection is back after losing its NATS member, so requesters fail the calls likely lost there."""


@dataclass(frozen=True, slots=True)
class Permissions:
    """Subjects (NATS wildcards allowed) one role may publish to and subscribe to; nothing else."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def _api(*parts: str) -> str:
    return ".".join((s.JS_API, *parts))


def _kv_read(bucket: str) -> tuple[str, ...]:
    """What nats-py needs to open, read and watch a bucket its owner created."""
    return _stream_reads(s.kv_stream(bucket))


def _stream_reads(stream: str) -> tuple[str, ...]:
    """Look a stream up, get its messages (direct or not) and watch it through a consumer of one's own."""
    return (
        _api("STREAM.INFO", stream),
        _api("STREAM.MSG.GET", stream),
        _api("DIRECT.GET", stream),
        _api("DIRECT.GET", stream, ">"),
        _api("CONSUMER.CREATE", stream),
        _api("CONSUMER.CREATE", stream, ">"),
        _api("CONSUMER.INFO", stream, ">"),
        _api("CONSUMER.DELETE", stream, ">"),
        f"{s.JS_FLOW_CONTROL}.{stream}.>",
    )


def _kv_write(bucket: str) -> tuple[str, ...]:
    return (*_kv_read(bucket), f"{s.KV_ROOT}.{bucket}.>")


def _object_store(bucket: str) -> tuple[str, ...]:
    """Put, read and delete objects (`libs.common.bus.blobs`) in a bucket its owner created.

    Deleting an object purges its chunks' subject (`STREAM.PURGE` with a filter, which permissions cannot
    see: a user of the bucket could purge all of it, losing only payloads in flight, never stored state)."""
    stream = s.obj_stream(bucket)
    return (
        *_stream_reads(stream),
        _api("STREAM.PURGE", stream),
        f"{s.OBJ_ROOT}.{bucket}.>",
    )


def _owned(role: str) -> tuple[str, ...]:
    """Create and update (`libs.common.bus.stores.declare_owned`) the streams `role` owns: no one else may."""
    return tuple(
        _api(call, stream)
        for stream, owner in OWNERS.items()
        if owner == role
        for call in ("STREAM.INFO", "STREAM.CREATE", "STREAM.UPDATE")
    )


def _stream_consumer(stream: str) -> tuple[str, ...]:
    """Pull from a durable consumer and acknowledge what was written."""
    return (
        _api("CONSUMER.CREATE", stream),
        _api("CONSUMER.CREATE", stream, ">"),
        _api("CONSUMER.DURABLE.CREATE", stream, ">"),
        _api("CONSUMER.INFO", stream, ">"),
        _api("CONSUMER.MSG.NEXT", stream, ">"),
        f"{s.JS_ACK}.{stream}.>",
    )


def _inbox(role: str) -> str:
    return f"{s.inbox_prefix(role)}.>"


def _own_inbox(role: str) -> tuple[str, ...]:
    return (_inbox(role),)  # `processed()` and request/reply talk to themselves through it


OWNERS: Final[Mapping[str, str]] = {
    # the audit trail's backlog: its consumer keeps it; the producers only publish into it
    s.AUDIT_STREAM: AUDIT,
    s.AUDIT_DEAD_STREAM: AUDIT,
    # configuration: written by the admin role alone (the admin API, `bastion config apply`)
    s.kv_stream(s.KV_KEYS): ADMIN,
    s.kv_stream(s.KV_SERVERS): ADMIN,
    s.kv_stream(s.KV_POLICY): ADMIN,
    s.kv_stream(s.KV_LLM): ADMIN,
    s.kv_stream(s.KV_ADMIN): ADMIN,  # principals, API token digests, custom roles, sessions: read by no one else
    # what a service discovers or keeps for itself: its one writer
    s.kv_stream(s.KV_CATALOG): EXECUTOR,
    s.obj_stream(s.OBJ_BLOBS): EXECUTOR,  # ingress and codemode store and take payloads in it too
    s.kv_stream(s.KV_PINS): EXECUTOR,  # it records what it sees first; approvals come through the admin role
    s.kv_stream(s.KV_SESSIONS): INGRESS,
    s.kv_stream(s.KV_TASKS): INGRESS,
    s.kv_stream(s.KV_RESPONSES): INGRESS,
    s.kv_stream(s.KV_APPROVALS): POLICY,  # parked calls; the admin role writes a person's decision
    s.kv_stream(s.KV_OAUTH): OAUTH,
    s.kv_stream(s.KV_OAUTH_REGISTRATIONS): OAUTH,
    s.kv_stream(s.KV_OAUTH_PUBLIC): OAUTH,
    s.kv_stream(s.KV_OAUTH_REVOKED): OAUTH,
    s.kv_stream(s.KV_OAUTH_UPSTREAM): OAUTH,
}
"""Stream (a KV bucket's `KV_<bucket>`, the object store's `OBJ_<bucket>`) -> the one role that
creates it and updates its configuration (`libs.common.bus.stores`). Every other role may at most read
it and write messages into it: none may update, delete or purge it (the object store's users purge
single objects, see `_object_store`)."""

AUDIT_PRODUCERS: Final = (INGRESS, CODEMODE, ADMIN)
"""The roles that write the audit trail (ingress: agents' requests; codemode: scripts' runs and
calls; admin: the changes made through the admin service, and a person's decisions on pinned
definitions from the CLI (`bastion tools approve`), each naming its principal). Each publishes on
`bastion.audit.events.<role>.>` alone (`_audit_producer`), and the audit service stores an event
only if its chain belongs to the role whose subject it came on: adding a producer is one entry
here."""


def _audit_producer(role: str) -> tuple[str, ...]:
    """Publish events on the role's own audit subjects, dead-letter what the stream refuses (`AuditPublisher`).

    The streams are the audit service's (`OWNERS`): a producer may not change them."""
    return (f"{s.AUDIT_EVENTS}.{role}.>", s.AUDIT_DEAD)


_BY_ROLE: Final[Mapping[str, Permissions]] = {
    INGRESS: Permissions(
        publish=(
            *_own_inbox(INGRESS),
            s.POLICY_CALL,
            s.POLICY_LIST,
            s.POLICY_REQUEST,
            s.POLICY_LLM,
            s.EXEC_CALL,  # calls policy granted: the executor verifies policy's grant (`signing`)
            s.EXEC_REQUEST,
            f"{s.POLICY_ALIVE}.*",
            f"{s.EXEC_ALIVE}.*",  # the executor replica holding a call policy forwarded
            s.POLICY_REFUND,  # a tool call it failed as lost or late: policy gives back what it charged
            s.CALL_CANCEL,
            s.EXEC_CANCEL,  # abandons a call it holds; it can start none
            s.EXEC_USER_CATALOG,  # what a per-user server lists for the calling user
            s.CODEMODE_CALL,
            f"{s.CODEMODE_ALIVE}.*",
            _inbox(EXECUTOR),  # an agent's answer (`ClientReply`) to an upstream's request mid-call
            _inbox(POLICY),  # ... and to the confirmation a `@confirm` policy asks of the agent's user
            *_object_store(s.OBJ_BLOBS),  # arguments too large for one message; results as large
            *_kv_read(s.KV_KEYS),
            *_kv_read(s.KV_CATALOG),
            *_kv_read(s.KV_POLICY),
            *_kv_read(s.KV_LLM),  # which provider serves a model, and its prices
            *_kv_write(s.KV_SESSIONS),
            *_kv_write(s.KV_TASKS),
            *_kv_write(s.KV_RESPONSES),  # Responses conversations, for `previous_response_id`
            s.TASK_CANCEL,
            *_owned(INGRESS),
            s.OAUTH_HTTP,  # the OAuth routes, forwarded to the oauth service
            *_kv_read(s.KV_OAUTH_PUBLIC),  # verifies access tokens locally
            *_kv_read(s.KV_OAUTH_REVOKED),
        ),
        subscribe=(
            _inbox(INGRESS),
            s.RESOURCE_UPDATED,
            s.CALL_CANCEL,
            s.BUS_MOVED,
            s.TASK_CANCEL,
            s.EXEC_USER_CATALOG_CHANGED,
        ),
    ),
    ADMIN: Permissions(
        publish=(
            *_own_inbox(ADMIN),
            s.AUDIT_QUERY,
            s.AUDIT_EXPORT,  # `bastion audit export`
            s.AUDIT_VERIFY,  # `bastion audit verify`
            s.ANALYTICS_QUERY,  # `bastion analytics query`, the admin API's analytics routes and dashboard
            s.ANALYTICS_CANCEL,  # the caller of a query gave up
            *_kv_write(s.KV_KEYS),
            *_kv_write(s.KV_SERVERS),
            *_kv_write(s.KV_POLICY),
            *_kv_write(s.KV_LLM),
            *_owned(ADMIN),
            *_kv_read(s.KV_CATALOG),
            s.OAUTH_PASSWORD,  # `bastion users create --password`: the oauth service hashes it
            s.OAUTH_UPSTREAM_LINK,  # an admin's link to authorize an upstream (`bastion servers list`)
            *_kv_write(s.KV_ADMIN),  # principals, their token digests and sessions: no other role reads them
            s.OAUTH_HTTP,  # a person's sign-in: the admin service is an OAuth client of the oauth service
            *_kv_read(s.KV_OAUTH_PUBLIC),  # ... and verifies the access token that proves who signed in
            # a person's decisions on pinned definitions and imported
            # catalogs; the baselines stay the executors'
            *_kv_read(s.KV_PINS),
            *_kv_write(s.KV_APPROVALS),  # a person's approval or denial of a parked call
            f"{s.KV_ROOT}.{s.KV_PINS}.def.>",
            f"{s.KV_ROOT}.{s.KV_PINS}.imported.>",
        ),
        subscribe=(_inbox(ADMIN), f"{s.AUDIT_EVENTS}.>", s.PIN_DRIFT),
    ),
    POLICY: Permissions(
        publish=(
            *_own_inbox(POLICY),
            s.EXEC_CALL,
            s.EXEC_REQUEST,
            s.EXEC_LLM,
            f"{s.EXEC_ALIVE}.*",
            _inbox(INGRESS),  # refusals, and "no executor", to ingress
            _inbox(CODEMODE),  # and to the tool calls of Code Mode scripts
            *_kv_read(s.KV_KEYS),
            *_kv_read(s.KV_POLICY),
            *_kv_read(s.KV_SERVERS),
            s.BUS_MOVED,  # back after losing its NATS member: calls sent to it meanwhile may be lost there
            *_kv_read(s.KV_CATALOG),  # tools' annotations (`destructiveHint`) for the Cedar policies
            *_kv_write(s.KV_APPROVALS),  # calls parked for a person's approval, and their runs
            *_owned(POLICY),
        ),
        subscribe=(
            _inbox(POLICY),
            s.POLICY_CALL,
            s.POLICY_LIST,
            s.POLICY_REQUEST,
            s.POLICY_LLM,
            s.POLICY_REFUND,
            f"{s.POLICY_ALIVE}.*",
            s.BUS_MOVED,  # an executor replica that lost its NATS member (the chat completions policy relays)
        ),
    ),
    EXECUTOR: Permissions(
        publish=(
            *_own_inbox(EXECUTOR),
            _inbox(POLICY),  # answers and acknowledgements of chat completions, which policy relays
            _inbox(INGRESS),  # answers and acknowledgements of forwarded calls; what an upstream sends mid-call
            _inbox(CODEMODE),  # the same for the tool calls of Code Mode scripts
            s.POLICY_REFUND,  # a charged call that did not run
            s.RESOURCE_UPDATED,
            *_object_store(s.OBJ_BLOBS),  # results too large for one message; arguments as large
            *_kv_read(s.KV_SERVERS),
            *_kv_read(s.KV_LLM),
            *_kv_write(s.KV_CATALOG),
            *_kv_write(s.KV_PINS),  # the definitions it sees (supply-chain pinning)
            s.PIN_DRIFT,  # a definition that drifted from its pin
            *_owned(EXECUTOR),
            s.OAUTH_UPSTREAM_TOKEN,  # an OAuth upstream's current access token (answered to its own inbox)
            s.BUS_MOVED,
            s.EXEC_USER_CATALOG_CHANGED,  # a user's listing of a per-user server changed
        ),
        subscribe=(
            _inbox(EXECUTOR),
            s.EXEC_CALL,
            s.EXEC_REQUEST,
            s.EXEC_LLM,
            s.EXEC_CANCEL,
            f"{s.EXEC_ALIVE}.*",
            s.EXEC_USER_CATALOG,
            s.OAUTH_UPSTREAM_CHANGED,
        ),
    ),
    AUDIT: Permissions(
        publish=(
            *_own_inbox(AUDIT),
            _inbox(ADMIN),  # answers to `bastion audit tail|export|verify`, `bastion analytics query`
            s.AUDIT_DEAD,
            *_owned(AUDIT),
            *_stream_consumer(s.AUDIT_STREAM),
            *_kv_read(s.KV_KEYS),  # an event naming a key that does not exist is flagged
        ),
        subscribe=(
            _inbox(AUDIT),
            s.AUDIT_QUERY,
            s.AUDIT_EXPORT,
            s.AUDIT_VERIFY,
            s.ANALYTICS_QUERY,
            s.ANALYTICS_CANCEL,
        ),
    ),
    CODEMODE: Permissions(
        publish=(
            *_own_inbox(CODEMODE),
            _inbox(INGRESS),  # answers and acknowledgements of meta-tool calls
            s.POLICY_CALL,  # a script's tool calls, as an agent's
            s.POLICY_LIST,
            f"{s.POLICY_ALIVE}.*",
            f"{s.EXEC_ALIVE}.*",  # the executor replica holding a script's call
            s.POLICY_REFUND,  # a script's tool call it failed as lost or late
            s.EXEC_CANCEL,  # abandons the calls of a cancelled run
            *_object_store(s.OBJ_BLOBS),  # a script's tool call with a result too large for one message
            *_kv_read(s.KV_CATALOG),
            s.BUS_MOVED,
        ),
        subscribe=(_inbox(CODEMODE), s.CODEMODE_CALL, f"{s.CODEMODE_ALIVE}.*", s.EXEC_CANCEL, s.BUS_MOVED),
    ),
    OAUTH: Permissions(
        publish=(
            *_own_inbox(OAUTH),
            _inbox(INGRESS),  # answers to forwarded OAuth HTTP requests
            _inbox(ADMIN),  # answers to password changes and authorization links
            _inbox(EXECUTOR),  # upstream access tokens, to the executor's own inbox only
            *_kv_write(s.KV_OAUTH),
            *_kv_write(s.KV_OAUTH_REGISTRATIONS),
            *_kv_write(s.KV_OAUTH_PUBLIC),
            *_kv_write(s.KV_OAUTH_REVOKED),
            *_kv_write(s.KV_OAUTH_UPSTREAM),
            *_owned(OAUTH),
            *_kv_read(s.KV_POLICY),  # a user must exist to log in or get a password
            s.OAUTH_UPSTREAM_CHANGED,  # a user authorized a per-user server anew, or lost it
        ),
        subscribe=(
            _inbox(OAUTH),
            s.OAUTH_HTTP,
            s.OAUTH_PASSWORD,
            s.OAUTH_UPSTREAM_TOKEN,
            s.OAUTH_UPSTREAM_LINK,
        ),
    ),
}


PERMISSIONS: Final[Mapping[str, Permissions]] = {
    role: Permissions(perms.publish + (_audit_producer(role) if role in AUDIT_PRODUCERS else ()), perms.subscribe)
    for role, perms in _BY_ROLE.items()
}


def _strings(items: Iterable[str], indent: str) -> str:
    inner = ",\n".join(f"{indent}  {json.dumps(item)}" for item in items)
    return f"[\n{inner}\n{indent}]"


def render_authorization(public_keys: Mapping[str, str]) -> str:
    """The nats-server `authorization` block: one NKey user per role (`role -> public key "U…"`).

    A connection without one of these keys is refused; each key gets exactly its role's allow lists."""
    unknown = set(public_keys) - set(PERMISSIONS)
    if unknown:
        raise ValueError(f"no permissions defined for {sorted(unknown)}; roles are {list(ROLES)}")
    users = []
    for role, nkey in public_keys.items():
        perms = PERMISSIONS[role]
        users.append(
            f"    # {role}\n"
            f"    {{\n"
            f"      nkey: {json.dumps(nkey)}\n"
            f"      permissions: {{\n"
            f"        publish: {{ allow: {_strings(perms.publish, '        ')} }}\n"
            f"        subscribe: {{ allow: {_strings(perms.subscribe, '        ')} }}\n"
            f"      }}\n"
            f"    }}"
        )
    header = "# Generated by Bastion from libs.common.bus.permissions: one NKey user per role.\n"
    return header + "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"
