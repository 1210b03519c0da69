"""Who hears that discovery mode found tools: a session's own streams, or, for sessionless
(2026-07-28) agents, the `subscriptions/listen` streams opened with the same key that asked for
tool list changes; nobody else."""

from __future__ import annotations

import pytest

from services.ingress.catalog.aggregated import Catalog
from services.ingress.sessions.notifications import Listener, Notifier

pytestmark = pytest.mark.unit

CHANGED = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


def heard(listener: Listener) -> list[dict]:
    messages = []
    while not listener.queue.empty():
        messages.append(listener.queue.get_nowait())
    return messages


def test_found_tools_reach_the_session_or_the_keys_sessionless_listeners_only():
    notifier = Notifier(Catalog())
    session_a = notifier.listen("session-a")
    session_b = notifier.listen("session-b")
    key_tools = notifier.listen(None, kinds=frozenset({"tools"}), subscription_id=7, key_id="k1")
    key_prompts = notifier.listen(None, kinds=frozenset({"prompts"}), subscription_id=8, key_id="k1")
    other_key = notifier.listen(None, kinds=frozenset({"tools"}), subscription_id=9, key_id="k2")
    everyone = [session_a, session_b, key_tools, key_prompts, other_key]

    notifier.tools_found("k1", "session-a")
    assert [heard(listener) for listener in everyone] == [[CHANGED], [], [], [], []]

    notifier.tools_found("k1", "")
    stamped = {**CHANGED, "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": 7}}}
    assert [heard(listener) for listener in everyone] == [[], [], [stamped], [], []]

    notifier.tools_found("k3", "")  # a key nobody listens for
    assert [heard(listener) for listener in everyone] == [[], [], [], [], []]
