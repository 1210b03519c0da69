"""Fake providers of several wires at once, and a gateway's config entry for each (the tests that put
every wire behind Bastion: test_llm_wires.py, test_gemini_front.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from libs.common.runtime.sealing import new_key
from tests.support.gateway import Gateway, gateway_on_own_servers
from tests.support.llm_gateway import PROVIDER_KEY
from tests.support.llm_provider import ScriptedProvider
from tests.support.polling import poll_until
from tests.support.provider_wires.bedrock import ACCESS_KEY, REGION, SECRET_KEY

__all__ = ["started_fakes", "wire_credentials", "wire_provider", "wires_gateway"]


def wire_provider(wire: str, fake: ScriptedProvider) -> dict[str, Any]:
    """The `llm.providers` entry of `fake`: its kind, its model `m-<wire>` at a price, no retries."""
    root = f"http://127.0.0.1:{fake.port}"
    entry: dict[str, Any] = {"kind": wire, "models": [f"m-{wire}"], "retries": 0, "failure_threshold": 50}
    entry["prices"] = {f"m-{wire}": {"input": 1.0, "output": 2.0}}
    if wire != "bedrock":  # Bedrock signs with the AWS credentials of the executor's environment
        entry["api_key_env"] = "BASTION_TEST_PROVIDER_KEY"
    extra = {
        "vertex": {"base_url": f"{root}/v1", "project": "fake-project", "location": "europe-west4"},
        "bedrock": {"base_url": root, "region": REGION},
    }
    return entry | extra.get(wire, {"base_url": fake.base_url})


def wire_credentials(env: pytest.MonkeyPatch) -> None:
    """The provider key the entries name, and AWS credentials botocore's chain finds first (no shared
    files, no instance metadata asked)."""
    env.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
    env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")


@contextlib.asynccontextmanager
async def started_fakes(wires: Iterable[str]) -> AsyncIterator[dict[str, ScriptedProvider]]:
    """A fake provider of each wire, expecting `PROVIDER_KEY` (Bedrock's: a SigV4 signature)."""
    started = {wire: ScriptedProvider(wire, None if wire == "bedrock" else PROVIDER_KEY) for wire in wires}
    for fake in started.values():
        await fake.start()
    try:
        yield started
    finally:
        for fake in started.values():
            await fake.stop()


@contextlib.asynccontextmanager
async def wires_gateway(
    workdir: Path, config: dict[str, Any], fakes: dict[str, ScriptedProvider], **options: Any
) -> AsyncIterator[Gateway]:
    """A module's gateway on servers of its own, with `config`'s `llm` plus a provider of each fake.

    Yielded once ingress serves every wire's model."""
    config["llm"] = {**config.get("llm", {}), "providers": {w: wire_provider(w, fake) for w, fake in fakes.items()}}
    settings = {"secrets_key": new_key(), "audit_journal_dir": str(workdir / "journal"), **options}
    with pytest.MonkeyPatch.context() as env:
        wire_credentials(env)
        async with gateway_on_own_servers(workdir, config, **settings) as gw:
            models = {f"m-{wire}" for wire in fakes}
            await poll_until(lambda: models <= set(gw.ingress.models.models), "every wire's model in the ingress view")
            yield gw
