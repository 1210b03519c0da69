"""The refund upstream (`refund_server.py`) as the policy, confirmation and approval-task tests run it:
its server entry writing a ledger in the test's folder, the refund policies of docs/policy.md, the
policies published through the admin API, and what the upstream really ran."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from libs.common.web.guarded_http import shared_tls
from tests.support.gateway import Gateway, gateway_on_own_servers

__all__ = [
    "REFUND_SERVER",
    "billing_server",
    "documented_policy",
    "ledger_of",
    "publish_policies",
    "refund_gateway",
    "runs_in",
]

REFUND_SERVER = Path(__file__).parent / "refund_server.py"
POLICY_DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def documented_policy(policy_id: str) -> str:
    """The Cedar policy `@id(policy_id)` exactly as docs/policy.md shows it: the tests run the example
    a reader copies."""
    for block in re.findall(r"```cedar\n(.*?)```", POLICY_DOC.read_text(), re.S):
        if block.startswith(f'@id("{policy_id}")'):
            return block
    raise AssertionError(f"docs/policy.md: no cedar example with @id({policy_id!r})")


def billing_server(workdir: Path, **more: Any) -> dict[str, Any]:
    """The `billing` server entry: the refund upstream, its ledger (created empty) in `workdir`."""
    ledger = workdir / "ledger.txt"
    ledger.touch()
    return {
        "command": sys.executable,
        "args": [str(REFUND_SERVER)],
        "env": {"LEDGER_FILE": str(ledger)},
        "sandbox": {"write": [str(workdir)]},
        **more,
    }


async def publish_policies(gateway: Gateway, text: str, comment: str) -> None:
    """Publish `text` as the active policy version, as the owner."""
    async with httpx.AsyncClient(
        base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=10, verify=shared_tls()
    ) as owner:
        published = await owner.post("/policies", json={"text": text, "comment": comment})
        assert published.status_code == 200, published.text


@asynccontextmanager
async def refund_gateway(
    workdir: Path, config: dict[str, Any], secrets_key: str, policies: str, comment: str, **policy_options: Any
) -> AsyncIterator[Gateway]:
    """The gateway of `config` on servers of its own under `workdir`, with the admin service, its secrets
    sealed under `secrets_key` (policy signs approved work with it), and `policies` (`comment`) active;
    `policy_options` are further policy settings."""
    policy = {"secrets_key": secrets_key, **policy_options}
    async with gateway_on_own_servers(
        workdir, config, admin=True, secrets_key=secrets_key, policy_options=policy
    ) as gateway:
        await publish_policies(gateway, policies, comment)
        yield gateway


def ledger_of(gateway: Gateway) -> Path:
    return Path(gateway.config.mcp_servers["billing"].env["LEDGER_FILE"])


def runs_in(ledger: Path) -> str:
    """What the upstream really ran, one line per run."""
    return ledger.read_text()
