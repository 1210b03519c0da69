"""The embedded stack keeps its secrets: Valkey answers only policy's password, and what the servers
write (config, logs, the JetStream store, the Valkey AOF, credentials) is private to its owner."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from rich.console import Console
from typer.testing import CliRunner

from cli.audit import tail
from cli.credentials import CredentialsRefused, connect_as_admin, make_credentials
from cli.main import app
from cli.stack import VALKEY_USER, EmbeddedNats, EmbeddedValkey
from libs.common.bus.nats import credentials, kv_bucket, processed
from libs.common.bus.permissions import ADMIN, POLICY, ROLES
from libs.common.contracts import subjects
from libs.common.runtime.sealing import Sealer
from tests.support.nats_refusal import refusal
from tests.support.stores import declared

pytestmark = pytest.mark.integration

PASSWORD = "valkey-password-for-tests-31f0"


def loose(root: Path) -> list[str]:
    """Everything under `root` (itself included) that its group or others could read or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{oct(mode)} {path}")
    return found


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey", password=PASSWORD).start()
    yield server
    server.stop()


def test_valkey_refuses_clients_without_policys_password(valkey: EmbeddedValkey) -> None:
    with redis.Redis(host=valkey.host, port=valkey.port, socket_timeout=5) as anonymous:
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            anonymous.ping()
    with redis.Redis(
        host=valkey.host, port=valkey.port, username=VALKEY_USER, password="wrong", socket_timeout=5
    ) as bad:
        with pytest.raises(AuthenticationError):
            bad.ping()
    with redis.Redis(host=valkey.host, port=valkey.port, username="default", password=PASSWORD, socket_timeout=5) as d:
        with pytest.raises(AuthenticationError):
            d.ping()  # the default user is off, whatever the password


def test_policys_url_works_for_counters_and_scripts_but_not_administration(valkey: EmbeddedValkey) -> None:
    assert PASSWORD in valkey.url
    with redis.Redis.from_url(valkey.url, socket_timeout=5) as client:
        assert client.ping()
        assert client.eval("return redis.call('INCRBY', KEYS[1], 2)", 1, "bastion:test") == 2
        for admin in (client.flushall, client.config_get, lambda: client.keys("*")):
            with pytest.raises(NoPermissionError):
                admin()


def test_valkey_files_are_private_and_the_password_is_not_on_its_command_line(valkey: EmbeddedValkey) -> None:
    with redis.Redis.from_url(valkey.url, socket_timeout=5) as client:
        client.set("bastion:x", "1")  # something in the AOF
    assert (valkey.data_dir / "appendonlydir").is_dir()
    assert loose(valkey.data_dir) == []
    assert valkey.proc is not None
    assert PASSWORD.encode() not in Path(f"/proc/{valkey.proc.pid}/cmdline").read_bytes()


async def test_nats_files_and_credentials_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # as a user's shell would have it: the stack must not depend on it
    try:
        creds = make_credentials(tmp_path / "data", {})
        server = EmbeddedNats(tmp_path / "data" / "nats", authorization=creds.authorization).start()
    finally:
        os.umask(old)
    try:
        nc = await nats.connect(server.url, **credentials(ADMIN, creds.seed_file(ADMIN)))
        await declared(nc.jetstream(), subjects.KV_KEYS)  # the admin role owns it
        kv = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
        await kv.put("probe", b"something in the store")
        await nc.close()
        assert list((tmp_path / "data" / "nats" / "jetstream").rglob("*.blk")), "the store has message blocks"
        assert loose(tmp_path / "data") == []
        assert sorted(p.name for p in (tmp_path / "data" / "credentials").iterdir()) == sorted(
            [*(f"{role}.nk" for role in ROLES), "secrets.key", "checkpoint.key"]
        )
    finally:
        server.stop()


def test_the_secrets_key_is_made_once_and_kept(tmp_path: Path) -> None:
    first = make_credentials(tmp_path, {})
    second = make_credentials(tmp_path, {})
    assert first.secrets_key == second.secrets_key, "sealed values in the kept JetStream store must stay readable"
    assert first.public_keys != second.public_keys, "NKeys are new on every `up`"
    assert first.valkey_password != second.valkey_password
    assert Sealer(first.secrets_key).enabled
    given = make_credentials(tmp_path / "given", {"BASTION_SECRETS_KEY": first.secrets_key})
    assert given.secrets_key == first.secrets_key
    assert not (tmp_path / "given" / "credentials" / "secrets.key").exists()


async def test_nats_credentials_command_makes_a_config_a_production_server_can_include(tmp_path: Path) -> None:
    out = tmp_path / "creds"
    result = CliRunner().invoke(app, ["config", "nats-credentials", str(out)])
    assert result.exit_code == 0, result.output
    assert "authorization.conf" in result.output
    assert loose(out) == []
    data_dir = tmp_path / "nats"
    data_dir.mkdir()
    # as a production nats.conf would: `include` resolves next to the config file (tmp_path/nats/nats.conf)
    # its box reads only its own folder unless told what else its configuration includes
    server = EmbeddedNats(data_dir, authorization="include ../creds/authorization.conf\n", readable=(out,)).start()
    try:
        assert "Authorization Violation" in str(await refusal(server.url))
        for role in ROLES:
            nc = await nats.connect(server.url, **credentials(role, str(out / f"{role}.nk")))
            await processed(nc)  # each role can at least talk to itself
            await nc.close()
    finally:
        server.stop()


def test_an_external_nats_uses_the_seeds_made_for_it_or_none(tmp_path: Path) -> None:
    made = tmp_path / "made"
    CliRunner().invoke(app, ["config", "nats-credentials", str(made)])
    given = make_credentials(tmp_path / "a", {"BASTION_NATS_CREDENTIALS_DIR": str(made)}, new_nkeys=False)
    assert given.seed_files == {role: made / f"{role}.nk" for role in ROLES}
    assert given.authorization.count("nkey:") == len(ROLES)
    assert not (tmp_path / "a" / "credentials" / "policy.nk").exists(), "no new seeds beside the given ones"
    open_bus = make_credentials(tmp_path / "b", {}, new_nkeys=False)
    assert open_bus.seed_files == {} and open_bus.seed_file("policy") == ""
    (made / "audit.nk").write_text("not a seed")
    with pytest.raises(ValueError, match=r"audit\.nk is not an NKey user seed"):
        make_credentials(tmp_path / "c", {"BASTION_NATS_CREDENTIALS_DIR": str(made)})


async def test_the_cli_says_which_credentials_to_set_when_nats_refuses_them(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, {})
    server = EmbeddedNats(tmp_path / "nats", authorization=creds.authorization).start()
    try:
        with pytest.raises(CredentialsRefused, match="refused the connection: set BASTION_NATS_NKEY_SEED_FILE"):
            await connect_as_admin(server.url, "", "test", attempts=1)
        with pytest.raises(CredentialsRefused, match="did not accept these as the admin role's credentials"):
            await connect_as_admin(server.url, creds.seed_file(POLICY), "test", attempts=1)
        nc = await connect_as_admin(server.url, creds.seed_file(ADMIN), "test", attempts=1)
        await nc.close()
    finally:
        server.stop()


async def test_audit_tail_says_which_credentials_to_set_when_nats_refuses_them(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, {})
    server = EmbeddedNats(tmp_path / "nats", authorization=creds.authorization).start()
    console = Console(record=True, width=300)
    try:
        assert await tail(server.url, 5, False, console) == 1
    finally:
        server.stop()
    assert "refused the connection: set BASTION_NATS_NKEY_SEED_FILE" in console.export_text()
