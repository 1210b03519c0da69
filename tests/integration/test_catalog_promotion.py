"""dev -> prod promotion with a signed catalog, through the CLI: a key made with `bastion catalog
keygen`, the dev deployment's approved definitions exported, verified (a changed byte refused),
imported into another deployment (its own NATS; a replay refused), where a server added at run time
in `approve` mode serves exactly those definitions and quarantines anything else."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.stack import EmbeddedNats
from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from services.executor.interceptors import PinningInterceptor
from services.executor.service import ExecutorService
from tests.support.gateway import ADMIN_KEY, ROOT, default_config, running_gateway
from tests.support.polling import poll_until
from tests.support.stores import declared

pytestmark = pytest.mark.integration

DRIFTING = ROOT / "tests" / "support" / "drifting_server.py"


async def _cli(*args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env={"BASTION_PRINCIPAL": "release-bot"})


def _drift(state: Path, calls: Path, **extra: Any) -> dict[str, Any]:
    sandbox = {"read": [str(state.parent)], "write": [str(calls.parent)]}
    return {"command": sys.executable, "args": [str(DRIFTING), str(state), str(calls)], "sandbox": sandbox, **extra}


async def test_a_signed_catalog_pins_the_same_definitions_in_another_deployment(nats_url, redis_url, tmp_path):
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    key, public, manifest = tmp_path / "dev.jwk", tmp_path / "dev.pub.json", tmp_path / "catalog.jws"

    made = await _cli("catalog", "keygen", str(key))
    assert made.exit_code == 0, made.output
    public.write_text(made.output.strip())
    assert '"d"' not in made.output, "the private part is never printed"
    assert (await _cli("catalog", "keygen", str(key))).exit_code == 2, "an existing key is never overwritten"

    # dev: the drifting server trusted on first use, then exported
    async with running_gateway(nats_url, redis_url, tmp_path, default_config({"drift": _drift(state, calls)})):
        exported = await _cli("catalog", "export", "--key-file", str(key), "-o", str(manifest), "--nats-url", nats_url)
        assert exported.exit_code == 0, exported.output
    verified = await _cli("catalog", "verify", str(manifest), "--trust", str(public))
    assert verified.exit_code == 0 and "valid" in verified.output, verified.output

    token = manifest.read_text().strip()
    header, payload, signature = token.split(".")
    tampered = tmp_path / "tampered.jws"
    tampered.write_text(f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}")
    refused = await _cli("catalog", "verify", str(tampered), "--trust", str(public))
    assert refused.exit_code == 1 and "signature does not match" in refused.output, refused.output

    # prod: another NATS, the catalog imported before the server is even configured there
    prod = EmbeddedNats(tmp_path / "prod-nats").start()
    try:
        nc = await connect(prod.url, "test-prod-setup")
        try:
            await declared(nc.jetstream(), subjects.KV_PINS)  # as its executors would
        finally:
            await nc.close()
        imported = await _cli("catalog", "import", str(manifest), "--trust", str(public), "--nats-url", prod.url)
        assert imported.exit_code == 0 and "imported" in imported.output, imported.output
        replay = await _cli("catalog", "import", str(manifest), "--trust", str(public), "--nats-url", prod.url)
        assert replay.exit_code == 1 and "a replay" in replay.output, replay.output

        async with running_gateway(prod.url, redis_url, tmp_path / "prod", default_config()) as gateway:
            raw = default_config({"drift": _drift(state, calls, pinning="approve")})
            await gateway.apply(raw)  # added at run time (hot reload), in approve mode
            await gateway.wait_for_servers("drift")
            executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
            pinning = next(i for i in executor.interceptors.interceptors if isinstance(i, PinningInterceptor))
            async with gateway.client(ADMIN_KEY) as client:
                names = {t.name for t in (await client.list_tools()).tools if t.name.startswith("drift__")}
                assert names == {"drift__add", "drift__leak", "drift__lookup"}  # exactly dev's, approved there
                assert (await client.call_tool("drift__add", {"a": 1, "b": 1})).content[0].text == "2"
            by = {d.approved_sha256 for d in pinning.outcomes["drift"].decisions}
            assert None not in by

            state.write_text("default")  # not in the catalog: approve mode quarantines it
            await poll_until(
                lambda: (
                    (d := pinning.outcomes["drift"].decision("tool", "add")) is not None and d.verdict == "quarantined"
                ),
                "a definition the catalog does not name quarantined",
            )
    finally:
        prod.stop()
    assert json.loads(public.read_text())["kty"] == "OKP"
