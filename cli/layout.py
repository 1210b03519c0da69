"""What `bastion up` runs, where.

The stack's addresses (`Endpoints`, from flags, environment and config) and one supervised child per
service (`service_specs`), each configured only through its own BASTION_* variables, so each secret
reaches only the service that needs it, through a pipe rather than its environment.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from libs.common.contracts.config import BastionConfig
from libs.common.settings import (
    AdminSettings,
    AuditSettings,
    CodeModeSettings,
    ExecutorSettings,
    IngressSettings,
    OAuthSettings,
    PolicySettings,
    ServiceSettings,
)

from .colocated import COLOCATED_ENV
from .credentials import StackCredentials
from .ports import free_port
from .replicas import replicated
from .supervisor import ChildSpec

__all__ = [
    "ADMIN_PORT",
    "COLOCATED",
    "METRICS_SERVICES",
    "SECRET_VARIABLES",
    "SERVICES",
    "SETTINGS",
    "Endpoints",
    "resolve_endpoints",
    "secret_variables",
    "service_specs",
]

SETTINGS: Final[Mapping[str, type[ServiceSettings]]] = {
    "policy": PolicySettings,
    "executor": ExecutorSettings,
    "audit": AuditSettings,
    "codemode": CodeModeSettings,
    "oauth": OAuthSettings,
    "admin": AdminSettings,
    "ingress": IngressSettings,
}
"""Every service `bastion up` starts, in start order (ingress last), with its settings: which of
its variables are secrets (`secret_variables`) follows from them. A new service is one entry here
(and a role in `libs.common.bus.permissions`)."""
SERVICES = tuple(SETTINGS)
METRICS_SERVICES = SERVICES
"""Services serving `/metrics` on a port of their own (every one: never on a public port)."""
ADMIN_PORT = 8421
"""The admin service's port unless `--admin-port` or BASTION_ADMIN_PORT says otherwise."""
COLOCATED = ("executor", "ingress")
"""With `stack.colocate`, these run as one process named ingress (`cli.colocated`), in this order."""


def _local(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host` (a wildcard: loopback), as a URL writes it."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


@dataclass
class Endpoints:
    nats_url: str | None
    redis_url: str | None
    clickhouse_url: str
    host: str
    port: int
    data_dir: Path
    public_url: str = ""
    """`BASTION_PUBLIC_URL` or `gateway.public_url` (behind a proxy); empty: the local address."""
    admin_host: str = "127.0.0.1"
    """Where the admin service binds (BASTION_ADMIN_HOST): loopback unless asked, whatever `host` is."""
    admin_port: int = ADMIN_PORT
    admin_public_url: str = ""
    """`BASTION_ADMIN_PUBLIC_URL` (behind a proxy); empty: the admin service's local address."""

    @property
    def local_host(self) -> str:
        """Where a client on this machine reaches a server bound to `host`."""
        return _local(self.host)

    @property
    def base_url(self) -> str:
        """The gateway's public base URL: the OAuth issuer, and what the banner prints."""
        return self.public_url or f"http://{self.local_host}:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def health_url(self) -> str:
        return f"http://{self.local_host}:{self.port}/healthz"

    @property
    def web_url(self) -> str:
        return f"http://{self.local_host}:{self.port}/"

    @property
    def admin_base_url(self) -> str:
        """The admin service's base URL: its API, `/docs`, the dashboard and the login."""
        return self.admin_public_url or f"http://{_local(self.admin_host)}:{self.admin_port}"

    @property
    def admin_health_url(self) -> str:
        return f"{self.admin_base_url}/healthz"

    @property
    def docs_url(self) -> str:
        return f"{self.admin_base_url}/docs"

    @property
    def admin_url(self) -> str:
        return f"{self.admin_base_url}/admin/v1"

    @property
    def dashboard_url(self) -> str:
        return f"{self.admin_base_url}/dashboard"

    @property
    def console_url(self) -> str:
        return f"{self.admin_base_url}/console"


def _port_free(host: str, port: int) -> bool:
    try:
        socket.create_server((host, port)).close()
    except OSError:
        return False
    return True


def resolve_endpoints(
    config: BastionConfig,
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    environ: Mapping[str, str],
    admin_port: int | None = None,
) -> Endpoints:
    """Flags beat the environment, which beats the config file.

    The admin port is `admin_port`, else BASTION_ADMIN_PORT, else 8421 (a free one when 8421 is taken:
    the banner and stack file say which)."""
    root = Path(data_dir or config.stack.data_dir).expanduser().resolve()
    host = host or config.gateway.host
    port = config.gateway.port if port is None else port
    admin_host = environ.get("BASTION_ADMIN_HOST") or "127.0.0.1"
    if admin_port is None and environ.get("BASTION_ADMIN_PORT"):
        admin_port = int(environ["BASTION_ADMIN_PORT"])
    if admin_port is None:
        admin_port = ADMIN_PORT if _port_free(admin_host, ADMIN_PORT) else 0
    return Endpoints(
        nats_url=environ.get("BASTION_NATS_URL") or config.stack.nats_url,
        redis_url=environ.get("BASTION_REDIS_URL") or config.stack.redis_url,
        clickhouse_url=environ.get("BASTION_CLICKHOUSE_URL")
        or config.stack.clickhouse_url
        or f"chdb://{root / 'clickhouse'}",
        host=host,
        port=port or free_port(host or "127.0.0.1"),
        data_dir=root,
        public_url=(environ.get("BASTION_PUBLIC_URL") or config.gateway.public_url or "").rstrip("/"),
        admin_host=admin_host,
        admin_port=admin_port or free_port(admin_host),
        admin_public_url=environ.get("BASTION_ADMIN_PUBLIC_URL", "").rstrip("/"),
    )


def secret_variables(settings: type[BaseSettings]) -> frozenset[str]:
    """The variables of `settings` that hold secrets (its `SecretStr` fields)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    return frozenset(
        f"{prefix}{name}".upper() for name, field in settings.model_fields.items() if field.annotation is SecretStr
    )


SECRET_VARIABLES: Final = frozenset().union(*(secret_variables(settings) for settings in SETTINGS.values()))
"""Every service's secrets: handed to the one process that needs each through a pipe
(`libs.common.settings.handed_secrets`), never put in an environment (any process of the same user can read
another's `/proc/<pid>/environ`)."""
_PRIVATE_VARIABLES: Final = SECRET_VARIABLES | {
    "BASTION_ADMIN_TOKEN",  # the CLI's credential (a principal's API token): no service takes one
    "BASTION_TOKEN",  # `bastion approvals`: the deciding person's own API token
    "BASTION_ANALYST_TOKEN",  # gone with the shared tokens; never handed on should a shell still set it
    "BASTION_NATS_NKEY_SEED_FILE",
    "BASTION_ADMIN_NATS_NKEY_SEED_FILE",
    "BASTION_NATS_CREDENTIALS_DIR",
}
"""Set per service below (each reaches only the service that needs it), never inherited from ours."""


def _split(variables: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(what goes in the environment, what is handed through the pipe)."""
    public = {k: v for k, v in variables.items() if k not in SECRET_VARIABLES}
    return public, {k: v for k, v in variables.items() if k in SECRET_VARIABLES}


def stdio_writes(config: BastionConfig) -> list[str]:
    """Every path a stdio server's `sandbox.write` names in the config file (docs/stdio-sandbox.md)."""
    servers = config.mcp_servers.values()
    return sorted({path for server in servers if server.command for path in server.sandbox.write})


def service_specs(
    config: BastionConfig,
    ep: Endpoints,
    session_secret: str,
    environ: Mapping[str, str],
    creds: StackCredentials | None = None,
    metrics_ports: Mapping[str, int] | None = None,
    colocate: bool = False,
    ingress_replicas: int = 1,
) -> list[ChildSpec]:
    """One `python -m services.<svc>` per service, configured only through BASTION_* variables.

    The session secret reaches ingress alone, the Redis URL (with Valkey's password) policy alone,
    the secrets key the admin service (to seal), the executor (to open) and oauth, the work-signing
    key policy and the executor, the checkpoint key audit; a secret set in our environment
    (`BASTION_OIDC_CLIENT_SECRET`, ...) reaches only the services whose settings have it. Every
    secret is handed through the child's pipe (`ChildSpec.secrets`), never its environment. Each
    service gets its own NKey seed file (none when `creds` has none: an open NATS), and only the
    admin service the admin role's. No service gets an admin token: `bastion up` makes its owner in
    KV (`cli.admin_owner`). Nothing private is inherited from `environ`. `metrics_ports` gives a
    service its own `/metrics` port; `ingress_replicas` runs that many ingress children on its one
    port (`cli.replicas`), each handed the same session secret."""
    base = _shared_variables(ep, environ)
    own = _own_variables(config, ep, session_secret, environ, creds)
    for svc, port in (metrics_ports or {}).items():
        if svc in own:  # an ingress replica's own is set on its copy (`cli.replicas`)
            own[svc]["BASTION_METRICS_PORT"] = str(port)
    split = {svc: _split(variables) for svc, variables in own.items()}
    children = _children(ep, base, split, colocate)
    if ingress_replicas <= 1:
        return children
    alone = _children(ep, base, split, colocate=False)[SERVICES.index("ingress")]
    return replicated(children, ingress_replicas, metrics_ports or {}, alone)


def _shared_variables(ep: Endpoints, environ: Mapping[str, str]) -> dict[str, str]:
    """What every service's environment holds: ours without anything private, and the stack's addresses."""
    python_dir = os.path.dirname(sys.executable)  # not resolved: a venv's bin/ is what we want on PATH
    base = {k: v for k, v in environ.items() if k not in _PRIVATE_VARIABLES}
    base.update(
        PATH=python_dir + os.pathsep + base.get("PATH", os.defpath),
        PYTHONUNBUFFERED="1",
        BASTION_NATS_URL=ep.nats_url or "",
        BASTION_CLICKHOUSE_URL=ep.clickhouse_url,
        # ingress binds tokens to it, the oauth service issues them and builds links from it: one value
        BASTION_PUBLIC_URL=ep.base_url,
        # refused to every service beyond the paths its own settings name (libs.common.runtime.walls)
        BASTION_DATA_DIR=str(ep.data_dir),
    )
    return base


def _own_variables(
    config: BastionConfig,
    ep: Endpoints,
    session_secret: str,
    environ: Mapping[str, str],
    creds: StackCredentials | None,
) -> dict[str, dict[str, str]]:
    """Each service's own variables, secrets among them (split off by `_split`)."""
    secrets_key = creds.secrets_key if creds else ""
    signing_key = creds.bus_signing_key if creds else ""
    own: dict[str, dict[str, str]] = {
        "ingress": {
            "BASTION_HOST": ep.host,
            "BASTION_PORT": str(ep.port),
            "BASTION_MAX_BODY_BYTES": str(config.gateway.max_body_bytes),
            "BASTION_RESPONSE_MODE": config.gateway.response_mode,
            "BASTION_CALL_TIMEOUT": str(config.gateway.call_timeout),
            "BASTION_SESSION_SECRET": session_secret,
            # one slot ("ingress"): a restarted ingress replays what the killed one left
            "BASTION_AUDIT_JOURNAL_DIR": str(ep.data_dir / "journal"),
        },
        "admin": {
            "BASTION_ADMIN_HOST": ep.admin_host,
            "BASTION_ADMIN_PORT": str(ep.admin_port),
            "BASTION_SECRETS_KEY": secrets_key,
            "BASTION_AUDIT_JOURNAL_DIR": str(ep.data_dir / "journal"),  # its own slot ("admin")
            "BASTION_ADMIN_BOOTSTRAP_TOKEN": "",  # off: `bastion up` makes its owner itself (cli.admin_owner)
            "BASTION_REGISTRIES": json.dumps(config.registries),
            # the console's test of a server reaches what the executors may, no more
            **({"BASTION_EGRESS": config.egress.model_dump_json()} if "egress" in config.model_fields_set else {}),
        },
        "policy": {
            "BASTION_REDIS_URL": ep.redis_url or "",
            "BASTION_BUS_SIGNING_KEY": signing_key,
            "BASTION_SECRETS_KEY": secrets_key,  # seals the calls parked for approval
            # the approval webhook is reached under the upstreams' egress rules
            **({"BASTION_EGRESS": config.egress.model_dump_json()} if "egress" in config.model_fields_set else {}),
        },
        "executor": {
            "BASTION_SECRETS_KEY": secrets_key,
            "BASTION_STDIO_ROOT": str(ep.data_dir / "servers"),
            # its own box must hold what its stdio servers' boxes may write: Landlock boxes nest
            "BASTION_STDIO_WRITE": json.dumps(stdio_writes(config)),
            "BASTION_BUS_SIGNING_KEY": signing_key,
            # the config file's section, when it has one (else the executor's own setting: the defaults)
            **(
                {"BASTION_GUARDRAILS": config.guardrails.model_dump_json()}
                if "guardrails" in config.model_fields_set
                else {}
            ),
            **({"BASTION_EGRESS": config.egress.model_dump_json()} if "egress" in config.model_fields_set else {}),
        },
        "audit": {"BASTION_CHECKPOINT_KEY": creds.checkpoint_key if creds else ""},
        "codemode": {
            "BASTION_CALL_TIMEOUT": str(config.gateway.call_timeout),  # a script's tool calls, likewise
            "BASTION_SEARCH_CACHE_FILE": str(ep.data_dir / "codemode" / "tool-vectors.npz"),
            "BASTION_SEARCH_NEEDS_WRITTEN_FILE": str(ep.data_dir / "codemode" / "written-needs.jsonl"),
            # its own slot ("codemode"): a killed replica's scripts' tool calls keep their rows
            "BASTION_AUDIT_JOURNAL_DIR": str(ep.data_dir / "journal"),
        },
        "oauth": {
            "BASTION_SECRETS_KEY": secrets_key,  # seals the access token signing key
            # hosts upstreams may reach, their OAuth endpoints may too (its own list kept beside them)
            **_oauth_allow_hosts(config, environ),
        },
    }
    for svc, settings in SETTINGS.items():
        mine = own.setdefault(svc, {})
        # a secret of ours reaches the services whose settings have it (the identity provider's and
        # Vault's: oauth), unless set for it above
        for name in sorted(secret_variables(settings) - set(mine)):
            if name in environ:
                mine[name] = environ[name]
        # a service is its own NATS role (libs.common.bus.permissions); one without a role gets no
        # seed, and a secured NATS refuses it: add its role to the table
        mine["BASTION_NATS_NKEY_SEED_FILE"] = creds.seed_file(svc) if creds else ""
    return own


def _children(
    ep: Endpoints, base: dict[str, str], split: dict[str, tuple[dict[str, str], dict[str, str]]], colocate: bool
) -> list[ChildSpec]:
    """One child per service (ingress and the executor as one with `colocate`).

    Each with its own environment over `base` and its secrets for the pipe."""
    specs = [
        ChildSpec(
            name=svc,
            argv=[sys.executable, "-m", f"services.{svc}"],
            env={**base, **split[svc][0]},
            log_path=ep.data_dir / "logs" / f"{svc}.log",
            secrets=split[svc][1],
        )
        for svc in SERVICES
        if not (colocate and svc in COLOCATED)
    ]
    if colocate:
        specs.append(
            ChildSpec(
                name="ingress",
                argv=[sys.executable, "-m", "cli.colocated", *COLOCATED],
                env={**base, COLOCATED_ENV: json.dumps({svc: split[svc][0] for svc in COLOCATED})},
                log_path=ep.data_dir / "logs" / "ingress.log",
                secrets={svc: split[svc][1] for svc in COLOCATED},
            )
        )
    return specs


def _oauth_allow_hosts(config: BastionConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """`BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS` with the config's `egress.allow_private_hosts` added."""
    allowed = config.egress.allow_private_hosts
    if not allowed:
        return {}
    try:
        own = json.loads(environ.get("BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS") or "[]")
    except ValueError:
        own = []
    # that list takes RFC 1123 names only: a name with '_' (a container's, say) stays the executor's
    hosts = [*(own if isinstance(own, list) else []), *(host.strip("[]") for host in allowed if "_" not in host)]
    return {"BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS": json.dumps(list(dict.fromkeys(hosts)))}
