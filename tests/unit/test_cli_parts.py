"""Pure pieces of the CLI: backoff, endpoint precedence, service environments, stack.json lookup."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cli.colocated import COLOCATED_ENV
from cli.credentials import make_credentials
from cli.layout import SECRET_VARIABLES, SERVICES, resolve_endpoints, service_specs
from cli.stackfile import find_nats_url, read_stack, remove_stack, write_stack
from cli.summary import safe_url
from cli.supervisor import Backoff, ChildSpec, describe_exit
from libs.common.settings import ExecutorSettings, IngressSettings
from libs.common.settings.config_file import load_config
from tests.support.processes import fake_bastion_up

pytestmark = pytest.mark.unit


def test_backoff_doubles_caps_and_resets_after_a_stable_run() -> None:
    backoff = Backoff()
    delays, delay = [], None
    for _ in range(8):
        delay = backoff.next_delay(delay, uptime=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.next_delay(30, uptime=60) == 1
    assert backoff.next_delay(30, uptime=59.9) == 30


def test_describe_exit() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://user:pw@10.0.0.1:4222", "nats://10.0.0.1:4222"),
        ("redis://:pw@cache:6379/0", "redis://cache:6379/0"),
        ("https://h.example/mcp?token=x#f", "https://h.example/mcp"),
        ("chdb:///var/lib/bastion/clickhouse", "chdb:///var/lib/bastion/clickhouse"),
        ("nats://a:p@x:1,nats://y:2", "nats://x:1,nats://y:2"),
    ],
)
def test_safe_url_drops_credentials(url: str, shown: str) -> None:
    assert safe_url(url) == shown


@pytest.fixture
def config(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "mcpServers: {}\n"
        "keys: [{name: demo, key: bk_demo_local_only_change_me_0000, tools: ['*']}]\n"
        "gateway: {host: 127.0.0.1, port: 9999, response_mode: sse, call_timeout: 7}\n"
        "stack: {nats_url: 'nats://from-config:4222', data_dir: state}\n"
    )
    return load_config(cfg)


def test_endpoints_flags_beat_env_beat_config(config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ep = resolve_endpoints(config, None, None, None, {})
    assert (ep.host, ep.port, ep.nats_url, ep.redis_url) == ("127.0.0.1", 9999, "nats://from-config:4222", None)
    assert ep.data_dir == tmp_path / "state"
    assert ep.clickhouse_url == f"chdb://{tmp_path / 'state' / 'clickhouse'}"
    assert ep.mcp_url == "http://127.0.0.1:9999/mcp"

    env = {"BASTION_NATS_URL": "nats://from-env:1", "BASTION_REDIS_URL": "redis://r:1/0"}
    ep = resolve_endpoints(config, "0.0.0.0", 1234, tmp_path / "elsewhere", env)
    assert (ep.nats_url, ep.redis_url, ep.port) == ("nats://from-env:1", "redis://r:1/0", 1234)
    assert ep.mcp_url == "http://127.0.0.1:1234/mcp", "a wildcard bind is reached through loopback"
    assert ep.data_dir == tmp_path / "elsewhere"
    assert resolve_endpoints(config, "::", 5, None, {}).health_url == "http://[::1]:5/healthz"


def seen(spec: ChildSpec) -> dict[str, str]:
    """Every variable a service started from `spec` reads: its environment and its handed secrets."""
    return {**(spec.env or {}), **{k: str(v) for k, v in (spec.secrets or {}).items()}}


def test_service_environments(config, tmp_path: Path) -> None:
    ep = resolve_endpoints(config, None, None, tmp_path, {"BASTION_REDIS_URL": "redis://r:1/0"})
    base = {"PATH": "/usr/bin", "BASTION_SESSION_SECRET": "from-the-shell", "HOME": "/root"}
    specs = {s.name: s for s in service_specs(config, ep, "per-run-secret", base)}
    assert tuple(specs) == SERVICES
    for name, spec in specs.items():
        env = seen(spec)
        assert not SECRET_VARIABLES & set(spec.env or {}), f"a secret in {name}'s environment"
        assert spec.argv == [sys.executable, "-m", f"services.{name}"]
        assert env["PATH"] == os.path.dirname(sys.executable) + os.pathsep + "/usr/bin"
        assert env["BASTION_NATS_URL"] == "nats://from-config:4222"
        # the Redis URL may carry Valkey's password: policy, Valkey's only client, alone gets it
        assert env.get("BASTION_REDIS_URL") == ("redis://r:1/0" if name == "policy" else None)
        assert env["BASTION_CLICKHOUSE_URL"] == f"chdb://{tmp_path / 'clickhouse'}"
        assert spec.log_path == tmp_path / "logs" / f"{name}.log"
        assert not any("bk_demo" in value for value in env.values()), "key secrets never reach a service"
        if name == "ingress":
            assert env["BASTION_SESSION_SECRET"] == "per-run-secret"
            assert (env["BASTION_PORT"], env["BASTION_RESPONSE_MODE"], env["BASTION_CALL_TIMEOUT"]) == (
                "9999",
                "sse",
                "7.0",
            )
        else:
            assert "BASTION_SESSION_SECRET" not in env
        if name == "codemode":  # a script's tool calls get the gateway's call timeout too
            assert env["BASTION_CALL_TIMEOUT"] == "7.0"
        # the producers of audit events write them down first; each replica takes its own slot there
        journaled = name in ("ingress", "admin", "codemode")
        assert env.get("BASTION_AUDIT_JOURNAL_DIR") == (str(tmp_path / "journal") if journaled else None)


def test_each_service_gets_its_own_credentials_and_only_the_secrets_it_needs(config, tmp_path: Path) -> None:
    ep = resolve_endpoints(config, None, None, tmp_path, {})
    ep.redis_url = "redis://policy:valkey-pw@127.0.0.1:1/0"
    creds = make_credentials(tmp_path, {})
    inherited = {
        "PATH": "/usr/bin",
        "BASTION_SECRETS_KEY": "from-the-shell",
        "BASTION_NATS_NKEY_SEED_FILE": "/x",
        "BASTION_OIDC_CLIENT_SECRET": "idp-secret",
        "BASTION_VAULT_TOKEN": "vault-token",
    }
    specs = {s.name: seen(s) for s in service_specs(config, ep, "session", inherited, creds)}
    for name, env in specs.items():
        assert env["BASTION_NATS_NKEY_SEED_FILE"] == str(tmp_path / "credentials" / f"{name}.nk")
        others = [str(p) for role, p in creds.seed_files.items() if role != name]
        assert not set(others) & set(env.values()), f"{name} holds another service's NKey"
    # the admin role (the only one writing keys, servers and policy) is the admin service's alone
    assert [n for n, env in specs.items() if "admin.nk" in str(env.values())] == ["admin"]
    assert not any("ADMIN" in variable for variable in specs["ingress"]), specs["ingress"]
    assert [n for n, env in specs.items() if "valkey-pw" in str(env.values())] == ["policy"]
    holders = [n for n, env in specs.items() if env.get("BASTION_SECRETS_KEY")]
    # oauth: the signing key and upstream tokens; policy: the calls parked for approval
    assert sorted(holders) == ["admin", "executor", "oauth", "policy"]
    for secret in ("idp-secret", "vault-token"):  # the identity provider's and Vault's: the oauth service alone
        assert [n for n, env in specs.items() if secret in env.values()] == ["oauth"]
    assert all(env.get("BASTION_SECRETS_KEY") in (None, creds.secrets_key) for env in specs.values())
    signers = {n: env["BASTION_BUS_SIGNING_KEY"] for n, env in specs.items() if env.get("BASTION_BUS_SIGNING_KEY")}
    assert signers == {"policy": creds.bus_signing_key, "executor": creds.bus_signing_key}


def test_ingress_replicas_share_the_port_and_the_session_secret_apart_in_all_else(config, tmp_path: Path) -> None:
    """`--ingress-replicas 3`: three ingress children on the gateway's port (SO_REUSEPORT), handed the
    one session secret through their pipes; each its own instance, log, journal slot and metrics port."""
    ep = resolve_endpoints(config, None, None, tmp_path, {})
    creds = make_credentials(tmp_path, {})
    ports = {"ingress": 9101, "ingress-2": 9102, "ingress-3": 9103}
    specs = {s.name: s for s in service_specs(config, ep, creds.session_secret, {}, creds, ports, ingress_replicas=3)}
    assert [n for n in specs if n.startswith("ingress")] == ["ingress", "ingress-2", "ingress-3"]
    replicas = [specs[n] for n in ("ingress", "ingress-2", "ingress-3")]
    assert [seen(r)["BASTION_PORT"] for r in replicas] == ["9999"] * 3
    assert [seen(r)["BASTION_REUSE_PORT"] for r in replicas] == ["true"] * 3
    assert [seen(r).get("BASTION_INSTANCE", "") for r in replicas] == ["", "ingress-2", "ingress-3"]
    assert [seen(r)["BASTION_METRICS_PORT"] for r in replicas] == ["9101", "9102", "9103"]
    assert [r.log_path for r in replicas] == [
        tmp_path / "logs" / f"{n}.log" for n in ("ingress", "ingress-2", "ingress-3")
    ]
    assert {r.secrets["BASTION_SESSION_SECRET"] for r in replicas if r.secrets} == {creds.session_secret}
    assert not any("BASTION_SESSION_SECRET" in (r.env or {}) for r in replicas)  # the pipe only
    single = {s.name: s for s in service_specs(config, ep, creds.session_secret, {}, creds, ports)}
    assert "BASTION_REUSE_PORT" not in (single["ingress"].env or {}) and "ingress-2" not in single
    # co-located: the first shares its process with the executor, the others are ingress alone
    together = {
        s.name: s
        for s in service_specs(config, ep, creds.session_secret, {}, creds, ports, colocate=True, ingress_replicas=2)
    }
    assert together["ingress"].argv[-3:] == ["cli.colocated", "executor", "ingress"]
    assert json.loads((together["ingress"].env or {})[COLOCATED_ENV])["ingress"]["BASTION_REUSE_PORT"] == "true"
    assert together["ingress-2"].argv == [sys.executable, "-m", "services.ingress"]
    assert together["ingress-2"].secrets == specs["ingress-2"].secrets


def test_the_session_secret_is_the_stacks_own_derived_from_its_secrets_key(tmp_path: Path) -> None:
    """The same across `up`s of a stack (sessions outlive a restart), another for another secrets key,
    not the secrets key, written nowhere; BASTION_SESSION_SECRET, when set, wins."""
    first, again = make_credentials(tmp_path, {}), make_credentials(tmp_path, {})
    assert first.session_secret == again.session_secret and len(first.session_secret) == 43
    assert first.session_secret != first.secrets_key
    other = make_credentials(tmp_path / "other", {})
    assert other.session_secret != first.session_secret
    assert not any(first.session_secret in f.read_text() for f in tmp_path.rglob("*") if f.is_file())
    assert make_credentials(tmp_path, {"BASTION_SESSION_SECRET": "mine"}).session_secret == "mine"


def test_find_nats_url_precedence(tmp_path: Path) -> None:
    assert find_nats_url("nats://flag:1", tmp_path, {"BASTION_NATS_URL": "nats://env:1"}) == "nats://flag:1"
    assert find_nats_url(None, tmp_path, {"BASTION_NATS_URL": "nats://env:1"}) == "nats://env:1"
    with pytest.raises(LookupError, match="bastion up"):
        find_nats_url(None, tmp_path, {})
    # a live process whose command line says bastion stands in for a running `bastion up`
    stand_in = fake_bastion_up()
    try:
        write_stack(tmp_path, {"pid": stand_in.pid, "nats_url": "nats://stack:1"})
        assert find_nats_url(None, tmp_path, {}) == "nats://stack:1"
    finally:
        stand_in.kill()
        stand_in.wait()
    with pytest.raises(LookupError, match="stale"):
        find_nats_url(None, tmp_path, {})
    assert oct((tmp_path / "stack.json").stat().st_mode & 0o777) == "0o600"
    assert read_stack(tmp_path) == {"pid": stand_in.pid, "nats_url": "nats://stack:1"}
    remove_stack(tmp_path)
    remove_stack(tmp_path)
    assert read_stack(tmp_path) is None


def test_colocated_ingress_and_executor_keep_their_own_environments(config, tmp_path: Path) -> None:
    """One process, two services: each still reads only its own variables (its NKey, the executor's
    signing key), laid over the shared ones while its settings are built; nothing private is inherited."""
    ep = resolve_endpoints(config, None, None, tmp_path, {})
    creds = make_credentials(tmp_path, {})
    inherited = {"PATH": "/usr/bin", "BASTION_SECRETS_KEY": "from-the-shell", "BASTION_BUS_SIGNING_KEY": "shell"}
    separate = {s.name: s for s in service_specs(config, ep, "session", inherited, creds)}
    together = {s.name: s for s in service_specs(config, ep, "session", inherited, creds, colocate=True)}

    assert sorted(together) == sorted(set(SERVICES) - {"executor"})
    joint = together["ingress"]
    assert joint.argv == [sys.executable, "-m", "cli.colocated", "executor", "ingress"]
    assert joint.log_path == tmp_path / "logs" / "ingress.log"
    own = json.loads((joint.env or {})[COLOCATED_ENV])
    shared = {k: v for k, v in (joint.env or {}).items() if k != COLOCATED_ENV}
    handed = joint.secrets or {}
    for name in ("executor", "ingress"):
        alone = separate[name]
        assert {**shared, **own[name]} == alone.env, f"{name} would see a different environment co-located"
        assert handed[name] == alone.secrets, f"{name} would get other secrets co-located"
    assert not SECRET_VARIABLES & {*shared, *own["executor"], *own["ingress"]}, "a secret in the environment"
    for name in ("policy", "audit", "codemode", "oauth"):
        assert together[name] == separate[name]


def test_a_colocated_service_reads_its_settings_from_its_own_variables(monkeypatch) -> None:
    from cli.colocated import _environment

    monkeypatch.setenv("BASTION_LOG_LEVEL", "INFO")
    monkeypatch.delenv("BASTION_BUS_SIGNING_KEY", raising=False)
    with _environment({"BASTION_BUS_SIGNING_KEY": "executor-only", "BASTION_LOG_LEVEL": "DEBUG"}):
        assert ExecutorSettings().bus_signing_key.get_secret_value() == "executor-only"
        assert ExecutorSettings().log_level == "DEBUG"
    assert "BASTION_BUS_SIGNING_KEY" not in os.environ and os.environ["BASTION_LOG_LEVEL"] == "INFO"
    assert IngressSettings().log_level == "INFO"


def test_colocated_services_read_each_its_own_handed_secrets(monkeypatch) -> None:
    """What `bastion up` hands a co-located process: one object per service; each service's settings
    read its own, and settings built outside any (none are) read none."""
    from libs.common.settings import handed_secrets

    handed = {
        "executor": {"BASTION_BUS_SIGNING_KEY": "executor-only"},
        "ingress": {"BASTION_SESSION_SECRET": "ingress"},
    }
    monkeypatch.setattr(handed_secrets, "_handed", handed)
    monkeypatch.delenv("BASTION_BUS_SIGNING_KEY", raising=False)
    with handed_secrets.serving("executor"):
        assert ExecutorSettings().bus_signing_key.get_secret_value() == "executor-only"
        assert IngressSettings().session_secret.get_secret_value() != "ingress"
    with handed_secrets.serving("ingress"):
        assert IngressSettings().session_secret.get_secret_value() == "ingress"
        assert ExecutorSettings().bus_signing_key.get_secret_value() == ""
    assert ExecutorSettings().bus_signing_key.get_secret_value() == ""


def test_a_colocated_services_own_variables_come_by_prefix_or_as_json_and_leave_the_environment() -> None:
    from cli.colocated import own_variables

    environ = {
        "BASTION_NATS_URL": "nats://shared:4222",
        "BASTION_EXECUTOR__NATS_NKEY_SEED_FILE": "/seeds/executor.nk",
        "BASTION_EXECUTOR__BUS_SIGNING_KEY": "from-a-secret",
        "BASTION_INGRESS__NATS_NKEY_SEED_FILE": "/seeds/ingress.nk",
        COLOCATED_ENV: json.dumps({"ingress": {"BASTION_NATS_NKEY_SEED_FILE": "/seeds/json-wins.nk"}}),
    }
    own = own_variables(["executor", "ingress"], environ)

    assert own == {
        "executor": {"BASTION_NATS_NKEY_SEED_FILE": "/seeds/executor.nk", "BASTION_BUS_SIGNING_KEY": "from-a-secret"},
        "ingress": {"BASTION_NATS_NKEY_SEED_FILE": "/seeds/json-wins.nk"},
    }
    assert environ == {"BASTION_NATS_URL": "nats://shared:4222"}  # nothing private left for child processes
