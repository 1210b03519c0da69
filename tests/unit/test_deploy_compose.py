"""deploy/compose.yaml stays true to the code: every service, each with its own module, settings,
secrets and NATS role; the NATS authorization rendered from libs/common/bus/permissions.py; Valkey with
the ACL `bastion up` uses; health and metrics where a service has them. Read as a file: no Docker.

The Compose Specification's JSON schema comes vendored in check-jsonschema (a test dependency)."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cli.stack import VALKEY_USER, EmbeddedValkey
from libs.common.bus.permissions import ADMIN, ROLES
from libs.common.settings import IngressSettings
from tests.support.deploy import (
    CLI_VARIABLES,
    UP_OPTIONAL_SECRETS,
    compose,
    observed_services,
    services,
    setting_variables,
    up_private_variables,
)

pytestmark = pytest.mark.unit

REQUIRED = re.compile(r"\$\{(BASTION_[A-Z_]+):\?([^}]*)\}")
"""`${VAR:?message}`: Compose refuses to start without VAR and prints the message."""
SEED_VARIABLES = ("BASTION_NATS_NKEY_SEED_FILE",)
UID = "10001"
"""The image's user (deploy/Dockerfile `USER`): the owner of the seed files Compose copies in."""


def _services() -> dict[str, dict[str, Any]]:
    defined: dict[str, dict[str, Any]] = compose()["services"]
    return defined


def _service(name: str) -> dict[str, Any]:
    return _services()[name]


def _environment(name: str) -> dict[str, str]:
    env: dict[str, str] = _service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: environment must be a mapping"
    return {key: str(value) for key, value in env.items()}


def _bastion_services() -> dict[str, str]:
    """Compose service -> the module its command runs (`python -m services.<x>`)."""
    found = {}
    for name, spec in _services().items():
        command = spec.get("command", [])
        if command[:2] == ["python", "-m"]:
            found[name] = command[2]
    return found


def test_every_service_runs_in_its_own_container_with_its_module():
    assert _bastion_services() == {svc: f"services.{svc}" for svc in services()}


def test_every_variable_set_is_a_setting_of_that_service():
    for svc in services():
        unknown = set(_environment(svc)) - setting_variables(svc)
        assert not unknown, f"compose sets {sorted(unknown)} on {svc}, which does not read them"
    unknown = set(_environment("cli")) - CLI_VARIABLES
    assert not unknown, f"compose sets {sorted(unknown)} on the cli tool, which does not read them"


def test_the_check_catches_a_variable_no_service_reads():
    assert "BASTION_NATS_CREDENTIALS_DIR" not in setting_variables("policy")  # `bastion up`'s, not a service's
    assert "BASTION_METRICS_PORT" in setting_variables("oauth")  # inherited, yet oauth serves none: see below


@pytest.mark.parametrize("svc", services())
def test_each_service_gets_the_secrets_it_needs_and_no_other(svc):
    env = _environment(svc)
    private = {name for name in env if name in up_private_variables()[svc] | UP_OPTIONAL_SECRETS}
    assert private >= up_private_variables()[svc], f"{svc} lacks {sorted(up_private_variables()[svc] - private)}"
    given_elsewhere = {
        name for other, need in up_private_variables().items() if other != svc for name in need
    } - up_private_variables()[svc]
    assert not (set(env) & given_elsewhere - UP_OPTIONAL_SECRETS), f"{svc} gets another service's secret"
    for name in up_private_variables()[svc] - set(SEED_VARIABLES):
        assert REQUIRED.search(env[name]), f"{svc}: {name} must be ${{VAR:?message}}, so a missing one stops Compose"


def test_required_variables_say_what_to_set():
    text = (Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml").read_text()
    required = REQUIRED.findall(text)
    assert {name for name, _ in required} >= {
        "BASTION_SESSION_SECRET",
        "BASTION_SECRETS_KEY",
        "BASTION_BUS_SIGNING_KEY",
        "BASTION_CHECKPOINT_KEY",
        "BASTION_VALKEY_PASSWORD",
        "BASTION_CLICKHOUSE_URL",
        "BASTION_NATS_CREDENTIALS_DIR",
    }
    for name, message in required:
        assert name in message or len(message) > 20, f"${{{name}:?...}} needs a message saying what to set"


def _seed_secret(svc: str, path: str) -> dict[str, Any]:
    mounted = [s for s in _service(svc).get("secrets", []) if isinstance(s, dict) and s.get("target") == path]
    assert len(mounted) == 1, f"{svc}: no Compose secret is mounted at {path}"
    return mounted[0]


@pytest.mark.parametrize("svc", [*services(), "cli"])
def test_each_container_holds_only_its_roles_seed(svc):
    env = _environment(svc)
    expected = {"BASTION_NATS_NKEY_SEED_FILE": ADMIN if svc == "cli" else svc}
    sources = []
    for variable, role in expected.items():
        secret = _seed_secret(svc, env[variable])
        assert secret["source"] == f"nkey_{role}", f"{svc}: {variable} is {secret['source']}, not {role}'s seed"
        assert (secret["uid"], secret["gid"], secret["mode"]) == (UID, UID, 0o400), f"{svc}: {secret}"
        sources.append(secret["source"])
    assert sorted(s["source"] for s in _service(svc)["secrets"]) == sorted(sources), f"{svc} holds extra secrets"


def test_only_the_admin_service_and_the_cli_hold_the_admin_seed():
    holders = [svc for svc, spec in _services().items() for s in spec.get("secrets", []) if s["source"] == "nkey_admin"]
    assert sorted(holders) == ["admin", "cli"]


def test_one_seed_per_role_from_the_environment():
    secrets = compose()["secrets"]
    assert secrets == {f"nkey_{role}": {"environment": f"BASTION_NKEY_{role.upper()}"} for role in ROLES}


def test_nats_loads_the_authorization_rendered_from_the_permissions_table():
    nats = _service("nats")
    assert {c["source"]: c["target"] for c in nats["configs"]} == {
        "nats_conf": "/etc/nats/bastion.conf",
        "nats_authorization": "/etc/nats/authorization.conf",
    }
    assert nats["command"] == ["--config", "/etc/nats/bastion.conf"]
    configs = compose()["configs"]
    assert re.fullmatch(
        r"\$\{BASTION_NATS_CREDENTIALS_DIR:\?[^}]+\}/authorization\.conf", configs["nats_authorization"]["file"]
    ), "the block must be the file `bastion config nats-credentials` writes, not a hand-written one"
    conf = configs["nats_conf"]["content"]
    assert "include ./authorization.conf" in conf.splitlines()
    assert "authorization" not in conf.replace("include ./authorization.conf", ""), "no hand-written permissions"
    assert "jetstream" in conf


def test_nats_carries_the_largest_request_body():
    conf = compose()["configs"]["nats_conf"]["content"]
    megabytes = int(re.search(r"max_payload:\s*(\d+)MB", conf).group(1))  # type: ignore[union-attr]
    assert megabytes * 1024 * 1024 > IngressSettings.model_fields["max_body_bytes"].default


def test_valkey_has_the_acl_bastion_up_gives_its_own(tmp_path):
    conf = compose()["configs"]["valkey_conf"]["content"]
    password = "${BASTION_VALKEY_PASSWORD:?set BASTION_VALKEY_PASSWORD (hex, no URL characters)}"
    acl = EmbeddedValkey(tmp_path, password=password)._config().read_text().splitlines()
    assert acl and set(acl) <= set(conf.splitlines()), f"the ACL drifted from cli/stack.py: {acl}"
    assert "appendonly yes" in conf.splitlines(), "budget spend must survive a Valkey restart"
    url = _environment("policy")["BASTION_REDIS_URL"]
    assert url == f"redis://{VALKEY_USER}:{password}@valkey:6379/0"
    assert _service("valkey")["configs"] == [{"source": "valkey_conf", "target": "/etc/valkey/valkey.conf"}]


def test_clickhouse_is_yours():
    assert "clickhouse" not in _services()
    assert REQUIRED.fullmatch(_environment("audit")["BASTION_CLICKHOUSE_URL"])


def test_ingress_oauth_and_admin_agree_on_the_public_url():
    urls = {svc: _environment(svc)["BASTION_PUBLIC_URL"] for svc in ("ingress", "oauth", "admin")}
    assert len(set(urls.values())) == 1, urls


def test_the_bootstrap_token_is_optional_and_only_the_admin_services():
    assert _environment("admin")["BASTION_ADMIN_BOOTSTRAP_TOKEN"] == "${BASTION_ADMIN_BOOTSTRAP_TOKEN:-}"
    holders = [svc for svc in _services() if "BASTION_ADMIN_BOOTSTRAP_TOKEN" in _environment(svc)]
    assert holders == ["admin"]


def test_work_signing_and_sealing_keys_are_one_value_each():
    for variable, holders in (
        ("BASTION_BUS_SIGNING_KEY", ("policy", "executor")),
        ("BASTION_SECRETS_KEY", ("admin", "executor", "oauth", "cli")),
    ):
        for svc in holders:  # each holder reads the one variable of the environment, nothing else
            found = REQUIRED.fullmatch(_environment(svc)[variable])
            assert found and found.group(1) == variable, f"{svc}: {variable}"


def _healthcheck_url(svc: str) -> str | None:
    check = _service(svc).get("healthcheck")
    if check is None:
        return None
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", " ".join(check["test"]))
    assert found, f"{svc}: healthcheck {check['test']} asks no URL"
    return f":{found.group(1)}{found.group(2)}"


@pytest.mark.parametrize("svc", services())
def test_metrics_and_health_where_the_service_has_them(svc):
    env = _environment(svc)
    if svc in observed_services():
        assert env["BASTION_METRICS_HOST"] == "0.0.0.0", f"{svc}: /metrics must be reachable from outside"
        metrics = f":{env['BASTION_METRICS_PORT']}/metrics"
    else:  # a variable it does not act on would only mislead
        assert not {"BASTION_METRICS_PORT", "BASTION_OTLP_ENDPOINT"} & set(env), f"{svc} serves no metrics"
        metrics = None
    own_port = {"ingress": "BASTION_PORT", "admin": "BASTION_ADMIN_PORT"}  # their own /healthz
    expected = f":{env[own_port[svc]]}/healthz" if svc in own_port else metrics
    assert _healthcheck_url(svc) == expected
    assert _service(svc)["restart"] == "unless-stopped"


def test_every_bastion_container_drops_privileges():
    for svc in [*services(), "cli"]:
        spec = _service(svc)
        assert spec["cap_drop"] == ["ALL"] and "no-new-privileges:true" in spec["security_opt"], svc
        assert spec["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


@pytest.mark.parametrize("svc", ["ingress", "admin", "codemode"])
def test_an_audit_journal_is_the_containers_own_volume(svc):
    env = _environment(svc)
    assert env["BASTION_AUDIT_JOURNAL_DIR"] in _service(svc)["volumes"], "an anonymous volume per container"
    assert env["BASTION_INSTANCE"], "a fixed slot name, so a restarted container replays its journal"


def test_the_admin_service_is_published_on_the_hosts_loopback_only():
    assert _service("admin")["ports"] == ["127.0.0.1:${BASTION_ADMIN_HTTP_PORT:-8421}:8421"]


def test_the_file_is_valid_compose():
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    broken = {**compose(), "services": {"x": {"image": "i", "restart": 3}}}
    assert list(validator.iter_errors(broken)), "the schema check must catch a wrong type"
