"""Which changes of a server entry are the owner's (`libs.common.contracts.command_servers`), and that only the
owner role holds `servers:command`: a custom role listing it, even one written straight into the
store, grants it nothing."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from libs.common.contracts.admin_principals import RoleBinding
from libs.common.contracts.command_servers import OWNER_ONLY_SERVER_FIELDS, needs_command, owner_only_changes
from libs.common.contracts.config import ServerConfig
from services.admin.roles import BUILTIN_ROLES, OWNER_ONLY, grants_of

pytestmark = pytest.mark.unit

REMOTE = ServerConfig(url="https://mcp.example/mcp", headers={"Authorization": "Bearer x"})
STDIO = ServerConfig(command="python", args=["server.py"], env={"TOKEN": "t"})


class _Sandboxed(BaseModel):
    """A server entry with the fields being added beside this check (a stdio sandbox policy, an SSRF
    allowance): checked as soon as the model has them, without a change here."""

    url: str | None = None
    command: str | None = None
    sandbox: dict[str, bool] | None = None
    allow_private_hosts: bool = False


def test_creating_or_converting_to_a_command_is_the_owners() -> None:
    assert owner_only_changes(None, STDIO) == ["command", "args", "env"]
    assert owner_only_changes(REMOTE, STDIO) == ["command", "args", "env"]
    assert owner_only_changes(STDIO, REMOTE) == ["command", "args", "env"]  # replacing one by a URL, too
    assert not needs_command(None, REMOTE) and not needs_command(REMOTE, None) and not needs_command(STDIO, None)


def test_what_runs_is_the_owners_and_the_rest_an_operators() -> None:
    for change in ({"args": ["evil.py"]}, {"env": {"TOKEN": "t", "LD_PRELOAD": "x"}}, {"cwd": "/tmp"}):
        assert owner_only_changes(STDIO, STDIO.model_copy(update=change)) == list(change), change
    for change in ({"timeout": 5.0}, {"disabled": True}, {"tools": ["read_*"]}, {"prices": {"*": 0.1}}):
        assert not needs_command(STDIO, STDIO.model_copy(update=change)), change
    assert not needs_command(REMOTE, REMOTE.model_copy(update={"url": "https://other.example/mcp"}))


def test_fields_added_later_are_checked_once_they_exist() -> None:
    assert {"command", "args", "env", "cwd", "sandbox", "allow_private_hosts"} == set(OWNER_ONLY_SERVER_FIELDS)
    remote = _Sandboxed(url="https://x.example/")
    assert owner_only_changes(None, remote) == []
    assert owner_only_changes(None, _Sandboxed(url="http://10.0.0.1/", allow_private_hosts=True)) == [
        "allow_private_hosts"
    ]
    confined = _Sandboxed(command="tool", sandbox={"network": False})
    assert owner_only_changes(confined, confined.model_copy(update={"sandbox": {"network": True}})) == ["sandbox"]
    assert owner_only_changes(confined, confined.model_copy(update={"sandbox": None})) == ["sandbox"]
    # a model without them (today's) reads them as absent on both sides
    assert not needs_command(REMOTE, REMOTE.model_copy(update={"timeout": 1.0}))


def test_only_the_owner_role_holds_servers_command() -> None:
    assert set(OWNER_ONLY) == {"servers:command"}
    holders = [role for role, (_, permissions) in BUILTIN_ROLES.items() if "servers:command" in permissions]
    assert holders == ["owner"]
    stored = {"shell": frozenset({"servers:write", "servers:command"})}  # written past the API's refusal
    grants = grants_of([RoleBinding(role="shell")], stored)
    assert grants.allows("servers:write") and not grants.allows("servers:command")


def test_an_openapi_document_on_disk_is_the_owners_and_a_url_an_operators() -> None:
    url = ServerConfig.model_validate({"openapi": {"document": "https://api.example/openapi.json"}})
    local = ServerConfig.model_validate({"openapi": {"document": "/etc/hostname"}})
    assert owner_only_changes(None, url) == [] and owner_only_changes(None, local) == ["openapi.document"]
    assert owner_only_changes(url, local) == ["openapi.document"] and owner_only_changes(local, url) == [
        "openapi.document"
    ]
    moved = local.model_copy(update={"openapi": local.openapi.model_copy(update={"document": "/etc/passwd"})})  # type: ignore[union-attr]
    assert owner_only_changes(local, moved) == ["openapi.document"] and owner_only_changes(local, local) == []
