"""What an ingress replica keeps per agent session (`SessionState`) goes when the session ends, on
every replica: a replica hears of another's `DELETE /mcp` through the KV watch. The log level a
session set used to stay in every replica's memory after the session ended, one entry per session
for the life of the process."""

from __future__ import annotations

import time

import orjson
import pytest

from services.ingress.sessions.session_state import SessionState

pytestmark = pytest.mark.unit


def test_an_ended_sessions_level_is_forgotten_on_every_replica():
    state = SessionState()
    for n in range(100):
        state.put(f"s{n}.level", orjson.dumps("debug"))
    for n in range(100):
        state.put(f"s{n}.ended", orjson.dumps(time.time() + 3600))  # ended on another replica
    assert state.levels == {}
    assert all(state.is_ended(f"s{n}") for n in range(100))


async def test_a_session_ended_here_forgets_its_level():
    state = SessionState()  # no KV attached: this replica only
    await state.set_level("s1", "info")
    await state.set_level("s2", "error")
    await state.end("s1", time.time() + 3600)
    assert state.levels == {"s2": "error"}
