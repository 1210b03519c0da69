"""Skills (`io.modelcontextprotocol/skills`) through the gateway, official SDK on both sides: an
upstream's skills are listed as `skill://<server>/...` with their manifests renamed alike, got and
read from their server under the key's grants (a skill outside them is neither listed, got nor
read), an oversized one is never served, and the gateway declares the extension."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from libs.common.contracts.skills import EXTENSION
from tests.support.apps_gateway import apps_gateway, gateway, rpc
from tests.support.gateway import ADMIN_HEADERS, ADMIN_KEY, legacy_initialize

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]
__all__ = ["apps_gateway", "gateway"]  # the fixtures, used by name

HOWTO = "skill://apps/board-howto/SKILL.md"
RUNBOOK = "skill://apps/ops/secret-runbook/SKILL.md"
TIPS = "skill://apps/board-howto/references/tips.md"
HOWTO_KEY = "bk_test_skill_howto_key_00000"
"""Granted the board-howto skill only."""
ONCALL_KEY = "bk_test_skill_oncall_key_0000"
"""Granted the gateway's own runbook skill only."""
RUNBOOK_OWN = "skill://_gateway/runbook/SKILL.md"
STEPS_OWN = "skill://_gateway/runbook/notes/steps.md"


@pytest.fixture(scope="module")
def apps_keys() -> list[dict[str, Any]]:
    return [
        {"name": "howto", "key": HOWTO_KEY, "tools": ["apps/skill:board-howto"]},
        {"name": "oncall", "key": ONCALL_KEY, "tools": ["_gateway/skill:runbook"]},
    ]


async def test_the_gateway_declares_skills_and_lists_each_upstream_skill_under_its_server(gateway):
    async with httpx2.AsyncClient(timeout=30) as http:
        init = (await http.post(gateway.url, headers=ADMIN_HEADERS, json=legacy_initialize())).json()
    assert EXTENSION in init["result"]["capabilities"]["extensions"]
    listed = (await rpc(gateway, ADMIN_KEY, "skills/list", {}))["result"]["skills"]
    by_uri = {skill["uri"]: skill for skill in listed}
    assert set(by_uri) == {HOWTO, RUNBOOK, RUNBOOK_OWN}  # the 17 MiB one is not served
    howto = by_uri[HOWTO]
    assert howto["frontmatter"] == {"name": "board-howto", "description": "How to read the board"}
    assert [f["uri"] for f in howto["resources"]] == [HOWTO, TIPS]
    assert all(f["digest"].startswith("sha256:") and f["size"] > 0 for f in howto["resources"])


async def test_a_skill_is_got_and_its_files_read_from_its_server(gateway):
    got = (await rpc(gateway, ADMIN_KEY, "skills/get", {"uri": HOWTO}))["result"]["skill"]
    assert got["uri"] == HOWTO and got["frontmatter"]["name"] == "board-howto"
    async with gateway.client(ADMIN_KEY) as agent:
        tips = await agent.read_resource(TIPS)
        assert tips.contents[0].text == "Cards move left to right.\n" and str(tips.contents[0].uri) == TIPS
        assert "show_board" in (await agent.read_resource(HOWTO)).contents[0].text


async def test_a_skill_outside_the_grants_is_invisible_and_unreadable(gateway):
    listed = (await rpc(gateway, HOWTO_KEY, "skills/list", {}))["result"]["skills"]
    assert [skill["uri"] for skill in listed] == [HOWTO]
    refused = await rpc(gateway, HOWTO_KEY, "skills/get", {"uri": RUNBOOK})
    assert refused["error"]["code"] == -32602
    async with gateway.client(HOWTO_KEY) as agent:
        assert "Cards" in (await agent.read_resource(TIPS)).contents[0].text
        with pytest.raises(MCPError):
            await agent.read_resource(RUNBOOK)


async def test_an_oversized_skill_is_refused_though_its_server_answers_for_it(gateway):
    refused = await rpc(gateway, ADMIN_KEY, "skills/get", {"uri": "skill://apps/huge/SKILL.md"})
    assert "more than the 16777216" in refused["error"]["message"], refused


@pytest.mark.parametrize("uri", ["skill://apps/../echo/x/SKILL.md", "skill://nosuch/x/SKILL.md", "skill://apps/x/y.md"])
async def test_a_skill_uri_of_another_place_is_refused(gateway, uri):
    refused = await rpc(gateway, ADMIN_KEY, "skills/get", {"uri": uri})
    assert refused["error"]["code"] == -32602, (uri, refused)


async def test_the_gateways_own_skill_is_listed_got_and_read_under_its_grant(gateway):
    listed = (await rpc(gateway, ONCALL_KEY, "skills/list", {}))["result"]["skills"]
    assert [skill["uri"] for skill in listed] == [RUNBOOK_OWN]  # big, Bad_Name and leaky are refused
    runbook = listed[0]
    assert runbook["frontmatter"] == {"name": "runbook", "description": "Our on-call runbook"}
    steps = next(f for f in runbook["resources"] if f["uri"] == STEPS_OWN)
    assert steps["digest"] == "sha256:" + hashlib.sha256(b"1. Breathe.\n").hexdigest() and steps["size"] == 12
    got = (await rpc(gateway, ONCALL_KEY, "skills/get", {"uri": RUNBOOK_OWN}))["result"]["skill"]
    assert got == runbook
    async with gateway.client(ONCALL_KEY) as agent:
        assert (await agent.read_resource(STEPS_OWN)).contents[0].text == "1. Breathe.\n"
    async with gateway.client(HOWTO_KEY) as other:  # not granted: unreadable, and got as no skill
        with pytest.raises(MCPError):
            await other.read_resource(STEPS_OWN)
    assert (await rpc(gateway, HOWTO_KEY, "skills/get", {"uri": RUNBOOK_OWN}))["error"]["code"] == -32602


@pytest.mark.parametrize(
    "uri", ["skill://_gateway/big/SKILL.md", "skill://_gateway/leaky/secret.txt", "skill://_gateway/runbook/../x"]
)
async def test_an_own_skill_file_refused_at_load_is_not_served(gateway, uri):
    async with gateway.client(ADMIN_KEY) as agent:
        with pytest.raises(MCPError) as refused:
            await agent.read_resource(uri)
    assert "not for agents" not in str(refused.value)
