"""A Code Mode meta-tool call settles the audit journal entry it opened: its event carries the id
the journal gave the request. An entry left open is a bogus "the gateway stopped" row after every
restart of the replica, and a journal that only grows."""

from __future__ import annotations

import pytest

from libs.common.settings import CodeModeSettings
from services.codemode.service import CodeModeService
from tests.support.gateway import default_config, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

CODER_KEY = "bk_test_code_mode_journal_0000"


async def test_a_meta_tool_call_leaves_no_open_journal_entry(nats_url, redis_url, tmp_path):
    config = default_config()
    config["keys"] += [{"name": "coder", "key": CODER_KEY, "tools": ["echo/*"], "code_mode": True}]
    settings = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20)
    journal = tmp_path / "journal"
    async with running_gateway(
        nats_url, redis_url, tmp_path, config, codemode=settings, audit_journal_dir=str(journal)
    ) as gateway:
        codemode = next(s for s in gateway.services if isinstance(s, CodeModeService))
        await poll_until(lambda: ("echo", "echo") in codemode.catalog.pairs, "echo in the codemode catalog")
        async with gateway.client(CODER_KEY) as client:
            listed = await client.call_tool("list_tool_files", {})
            assert not listed.is_error
        assert gateway.ingress.trail is not None
        owed = gateway.ingress.trail.journal
        assert owed is not None
        # the event is emitted, published and acked: nothing stays owed
        await poll_until(lambda: owed.open_records == 0, "the journal to settle", within=10)
