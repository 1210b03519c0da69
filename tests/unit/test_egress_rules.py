"""The address rules every upstream connection of the executor is held to (`libs.common.contracts.egress`):
hostile ways of writing a non-public address, DNS answers that point inward, and what an owner's
allow-list does and does not let through."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.layout import resolve_endpoints, service_specs
from libs.common.contracts.config import ConfigError
from libs.common.settings import AdminSettings, ExecutorSettings, OAuthSettings
from libs.common.settings.config_file import parse_config
from libs.common.web.egress_rules import EgressRefused, EgressRules, system_resolver

pytestmark = pytest.mark.unit

LOOPBACK_FORMS = [
    "127.0.0.1",
    "127.1",  # inet_aton's short form
    "2130706433",  # decimal
    "017700000001",  # octal
    "0x7f.1",  # hex
    "0x7f000001",
    "0177.0.0.1",
    "127.0.0.1.",  # trailing dot
    "[::1]",
    "::1",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "::ffff:7f00:1",
    "[::127.0.0.1]",  # IPv4-compatible
    "2002:7f00:1::",  # 6to4
    "localhost",
    "localhost.",
    "LocalHost",
    "api.localhost",
]
OTHER_INWARD = {
    "169.254.169.254": "cloud metadata",
    "169.254.1.1": "link-local",
    "[fe80::1]": "link-local",
    "[fd00:ec2::254]": "cloud metadata",
    "64:ff9b::a9fe:a9fe": "cloud metadata",  # NAT64 form of 169.254.169.254
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.0.1": "private",
    "[fc00::1]": "private",
    "[fd12:3456::1]": "private",
    "100.64.0.1": "shared (carrier-grade NAT)",
    "100.100.100.200": "cloud metadata",
    "0.0.0.0": "unspecified",
    "0": "unspecified",
    "[::]": "unspecified",
    "224.0.0.1": "multicast",
    "[ff02::1]": "multicast",
    "metadata.google.internal": "cloud metadata",
    "metadata.google.internal.": "cloud metadata",
}


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_every_way_of_writing_loopback_is_refused(host: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        EgressRules().check_host(host)
    assert "loopback" in str(refused.value)


@pytest.mark.parametrize(("host", "kind"), OTHER_INWARD.items())
def test_metadata_private_shared_link_local_unspecified_and_multicast_are_refused(host: str, kind: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        EgressRules().check_host(host)
    assert kind in str(refused.value)


@pytest.mark.parametrize(
    "host", ["93.184.215.14", "8.8.8.8", "[2606:4700:4700::1111]", "api.example.com", "172.32.0.1"]
)
def test_public_addresses_and_names_pass_as_written(host: str) -> None:
    EgressRules().check_host(host)


def test_the_refusal_names_host_address_and_how_an_owner_allows_it() -> None:
    with pytest.raises(EgressRefused) as refused:
        EgressRules().check_host("[::ffff:169.254.169.254]")
    message = str(refused.value)
    assert message.startswith("refused to connect to [::ffff:169.254.169.254]: ")
    assert "169.254.169.254 is a cloud metadata address" in message
    assert "'allow_private_hosts'" in message and "'egress.allow_private_hosts'" in message
    assert "adding '::ffff:169.254.169.254'" in message  # the entry that would allow it


def test_an_allowed_host_is_matched_exactly_as_written() -> None:
    rules = EgressRules(["127.0.0.1", "[::1]", "Internal.Example."])
    for allowed in ("127.0.0.1", "127.0.0.1.", "[::1]", "::1", "[0:0::1]", "internal.example", "INTERNAL.example."):
        rules.check_host(allowed)
    # other spellings of an allowed address are other hosts: each needs its own entry
    for other in ("127.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]", "localhost", "127.0.0.2"):
        with pytest.raises(EgressRefused):
            rules.check_host(other)


async def test_every_address_of_a_dns_answer_is_checked() -> None:
    """A name whose answer holds one inward address among public ones (DNS rebinding's other form)
    is refused: the connection could be steered to any of them."""

    def answer(host: str, port: int) -> list[str]:
        return ["93.184.215.14", *system_resolver("127.0.0.1", port)]

    with pytest.raises(EgressRefused) as refused:
        await EgressRules(resolver=answer).addresses("docs.example", 443)
    assert "docs.example" in str(refused.value) and "resolves to 127.0.0.1" in str(refused.value)
    assert EgressRules(resolver=lambda h, p: ["93.184.215.14"]).addresses_blocking("docs.example", 443) == [
        "93.184.215.14"
    ]


async def test_an_allowed_name_is_not_checked_once_resolved() -> None:
    def inward(host: str, port: int) -> list[str]:
        return system_resolver("127.0.0.1", port)

    assert await EgressRules(["mcp.internal"], resolver=inward).addresses("mcp.internal", 80) == ["mcp.internal"]
    with pytest.raises(EgressRefused):
        await EgressRules(["other.internal"], resolver=inward).addresses("mcp.internal", 80)


def test_the_config_takes_both_lists_of_hosts() -> None:
    config = parse_config(
        {
            "mcpServers": {"api": {"url": "http://10.0.0.5/mcp", "allow_private_hosts": ["10.0.0.5"]}},
            "egress": {"allow_private_hosts": ["mcp.internal", "[fd00::5]"]},
        }
    )
    assert config.mcp_servers["api"].allow_private_hosts == ["10.0.0.5"]
    assert config.egress.allow_private_hosts == ["mcp.internal", "[fd00::5]"]


@pytest.mark.parametrize("entry", ["http://10.0.0.5", "10.0.0.5:8080", "10.0.0.5/mcp", "two words"])
def test_an_entry_that_is_no_host_is_refused_with_the_field_named(entry: str) -> None:
    with pytest.raises(ConfigError) as server:
        parse_config({"mcpServers": {"api": {"url": "http://10.0.0.5/mcp", "allow_private_hosts": [entry]}}})
    assert "mcpServers.api.allow_private_hosts" in str(server.value) and "is not a host" in str(server.value)
    with pytest.raises(ConfigError) as section:
        parse_config({"egress": {"allow_private_hosts": [entry]}})
    assert "egress.allow_private_hosts" in str(section.value)


def test_bastion_up_hands_the_section_to_the_executor_and_the_oauth_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config({"egress": {"allow_private_hosts": ["10.0.0.5", "[fd00::5]", "mcp_box"]}})
    environ = {"BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS": '["auth.corp.example"]'}
    ep = resolve_endpoints(config, None, None, tmp_path, {})
    specs = {spec.name: spec.env or {} for spec in service_specs(config, ep, "session", environ)}
    monkeypatch.setenv("BASTION_EGRESS", specs["executor"]["BASTION_EGRESS"])
    assert ExecutorSettings().egress.allow_private_hosts == ["10.0.0.5", "[fd00::5]", "mcp_box"]
    # the admin service's test of a server before it is saved reaches what the executors may
    monkeypatch.setenv("BASTION_EGRESS", specs["admin"]["BASTION_EGRESS"])
    assert AdminSettings().egress.allow_private_hosts == ["10.0.0.5", "[fd00::5]", "mcp_box"]
    # the oauth service's own list is kept, the section's hosts added: upstreams' OAuth endpoints on them work too
    monkeypatch.setenv("BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS", specs["oauth"]["BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS"])
    assert OAuthSettings().upstream_oauth_allow_hosts == ["auth.corp.example", "10.0.0.5", "fd00::5"]
    # a file without the section leaves both services as their own settings say
    bare = parse_config({})
    plain = {spec.name: spec.env or {} for spec in service_specs(bare, ep, "session", {})}
    assert "BASTION_EGRESS" not in plain["executor"] and "BASTION_EGRESS" not in plain["admin"]
    assert "BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS" not in plain["oauth"]
