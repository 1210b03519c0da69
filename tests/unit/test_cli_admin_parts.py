"""Pure pieces of the admin commands: where the admin API is, value parsing, what `bastion up` hands ingress."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.admin_client import AdminFailure, AdminTarget, api_root, find_admin
from cli.admin_values import parse_budget, parse_pairs, parse_rate
from cli.layout import resolve_endpoints, service_specs
from cli.stackfile import write_stack
from libs.common.settings.config_file import parse_config
from tests.support.processes import fake_bastion_up

pytestmark = pytest.mark.unit


@pytest.fixture
def live_stack(tmp_path: Path):
    """A stack.json whose pid is a live process with 'bastion' in its command line."""
    proc = fake_bastion_up()
    write_stack(tmp_path, {"pid": proc.pid, "admin_url": "http://127.0.0.1:8420/admin/v1", "admin_token": "stack-tok"})
    yield tmp_path
    proc.kill()
    proc.wait()


def pair(target: AdminTarget) -> tuple[str, str]:
    return target.url, target.token


def test_api_root() -> None:
    for url in ("http://h:1", "http://h:1/", "http://h:1/admin/v1", "http://h:1/admin/v1/"):
        assert api_root(url) == "http://h:1/admin/v1"


def test_flags_beat_environment_beat_stack_file(live_stack: Path) -> None:
    env = {"BASTION_ADMIN_URL": "http://env:2", "BASTION_ADMIN_TOKEN": "env-tok"}
    assert pair(find_admin("http://flag:1", "flag-tok", live_stack, env)) == ("http://flag:1/admin/v1", "flag-tok")
    assert pair(find_admin(None, None, live_stack, env)) == ("http://env:2/admin/v1", "env-tok")
    assert pair(find_admin(None, None, live_stack, {})) == ("http://127.0.0.1:8420/admin/v1", "stack-tok")
    # the stack's URL given explicitly still gets the stack's token; any other URL never does
    assert find_admin("http://127.0.0.1:8420", None, live_stack, {}).token == "stack-tok"
    with pytest.raises(AdminFailure, match="no admin token for http://other:1/admin/v1") as failure:
        find_admin("http://other:1", None, live_stack, {})
    assert failure.value.exit_code == 2


def test_no_stack_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AdminFailure, match="bastion up") as failure:
        find_admin(None, None, tmp_path, {})
    assert failure.value.exit_code == 2
    write_stack(tmp_path, {"pid": 2**22 + 12345, "admin_url": "http://x:1", "admin_token": "t"})
    with pytest.raises(AdminFailure, match="stale"):
        find_admin(None, None, tmp_path, {})


def test_value_parsing() -> None:
    assert parse_budget("25") == {"limit_usd": 25.0, "period": "month"}
    assert parse_budget("$2.5/day") == {"limit_usd": 2.5, "period": "day"}
    assert parse_rate("60") == {"requests": 60, "per": "minute"}
    assert parse_rate("5/second") == {"requests": 5, "per": "second"}
    assert parse_pairs(["A=1", "B=x=y"], "--env") == {"A": "1", "B": "x=y"}
    assert parse_budget(None) is None and parse_rate(None) is None


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_budget, "lots"),
        (parse_budget, "5/fortnight"),
        (parse_rate, "0"),
        (parse_rate, "5/week"),
        (lambda value: parse_pairs([value], "--env"), "novalue"),
    ],
    ids=["budget-not-a-number", "budget-period", "rate-zero", "rate-window", "pair-without-value"],
)
def test_a_bad_value_is_a_usage_error(parse, value) -> None:
    with pytest.raises(AdminFailure) as failure:
        parse(value)
    assert failure.value.exit_code == 2 and repr(value) in str(failure.value)


def test_up_gives_no_service_an_admin_token_and_binds_the_admin_service(tmp_path: Path) -> None:
    """`bastion up` makes its owner in KV (`cli.admin_owner`): no bootstrap token, and a token in the
    shell never reaches a service."""
    config = parse_config({"mcpServers": {}, "gateway": {"port": 9999}})
    ep = resolve_endpoints(config, None, None, tmp_path, {"BASTION_ADMIN_PORT": "9998"})
    assert ep.admin_url == "http://127.0.0.1:9998/admin/v1" and ep.dashboard_url == "http://127.0.0.1:9998/dashboard"
    assert ep.console_url == "http://127.0.0.1:9998/console"
    base = {"PATH": "/usr/bin", "BASTION_ADMIN_TOKEN": "from-the-shell", "BASTION_ADMIN_BOOTSTRAP_TOKEN": "boot"}
    specs = {s.name: s for s in service_specs(config, ep, "session", base)}
    admin = specs["admin"].env or {}
    assert admin["BASTION_ADMIN_PORT"] == "9998" and admin["BASTION_ADMIN_HOST"] == "127.0.0.1"
    for spec in specs.values():
        assert not {"from-the-shell", "boot"} & {*(spec.env or {}).values(), *map(str, (spec.secrets or {}).values())}


def test_the_admin_service_binds_loopback_whatever_the_gateway_binds(tmp_path: Path) -> None:
    config = parse_config({"mcpServers": {}, "gateway": {"host": "0.0.0.0", "port": 9999}})
    ep = resolve_endpoints(config, None, None, tmp_path, {}, admin_port=9997)
    assert (ep.admin_host, ep.admin_port, ep.admin_base_url) == ("127.0.0.1", 9997, "http://127.0.0.1:9997")
    public = resolve_endpoints(config, None, None, tmp_path, {"BASTION_ADMIN_PUBLIC_URL": "https://admin.example/"})
    assert public.admin_url == "https://admin.example/admin/v1"
