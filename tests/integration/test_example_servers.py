"""The example servers show the whole protocol, and the example config says truly what they offer.

Each server runs over stdio under the official client; what it lists is compared with the
comment beside it in examples/bastion.yaml (`# tools: a, b; prompt: p; resource: r; ...`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KINDS = {"tool": "tools", "prompt": "prompts", "resource": "resources", "resource template": "templates"}


def _documented(server: str) -> dict[str, set[str]]:
    """What the config's comments in `server`'s entry say it offers: `kind: a, b` parts split by `;` or lines."""
    text = (EXAMPLES / "bastion.yaml").read_text()
    block = re.search(rf"^  {server}:\n((?:    .*\n|\s+#.*\n)+)", text, re.M)
    assert block, f"no {server!r} entry in examples/bastion.yaml"
    comments = ";".join(line.split("#", 1)[1] for line in block.group(1).splitlines() if "#" in line)
    found: dict[str, set[str]] = {kind: set() for kind in KINDS.values()}
    for part in comments.split(";"):
        said = re.fullmatch(r"\s*(tool|prompt|resource|resource template)s?: ([^\[]+?)\s*", part)
        if said:
            found[KINDS[said.group(1)]] |= {name.strip() for name in said.group(2).split(",")}
    return found


async def _offered(script: str) -> dict[str, set[str]]:
    params = StdioServerParameters(command=sys.executable, args=[str(EXAMPLES / "servers" / script)])
    async with Client(stdio_client(params)) as client:
        return {
            "tools": {t.name for t in (await client.list_tools()).tools},
            "prompts": {p.name for p in (await client.list_prompts()).prompts},
            "resources": {str(r.uri) for r in (await client.list_resources()).resources},
            "templates": {t.uri_template for t in (await client.list_resource_templates()).resource_templates},
        }


@pytest.mark.parametrize("server", ["echo", "notes"])
async def test_the_example_config_says_what_each_server_offers(server):
    offered = await _offered(f"{server}_server.py")
    assert offered["prompts"] and offered["resources"], "the demo shows prompts and resources, not only tools"
    assert offered == _documented(server)


async def test_a_note_is_readable_through_the_resource_template():
    params = StdioServerParameters(command=sys.executable, args=[str(EXAMPLES / "servers" / "notes_server.py")])
    async with Client(stdio_client(params)) as client:
        await client.call_tool("add_note", {"title": "groceries", "text": "milk"})
        assert (await client.read_resource("notes://1")).contents[0].text == "groceries\n\nmilk"
        assert '"title":"groceries"' in (await client.read_resource("notes://all")).contents[0].text
        prompt = await client.get_prompt("summarize", {"topic": "food"})
        assert "about food" in prompt.messages[0].content.text
