"""bench/cost_ledger.py's grouping of a process's bytecodes by what they buy
(`bench/hop_profile.py --ledger`): read wrong, docs/benchmarks.md's price list of a `tools/call` would be.
The function names are the ones a profile of this checkout gives (`file:line(name)`, as `_short` writes
them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from cost_ledger import GROUPS, OTHER, group_of, ledger  # noqa: E402

pytestmark = pytest.mark.unit

PROFILE = {
    "services/ingress/audit_events.py:143(record)": 600,
    "libs/common/audit/audit_chain.py:155(_linked_json)": 1200,
    "services/executor/guardrails/walk.py:30(strings)": 1800,
    "services/executor/upstreams/mcp/lean_session.py:74(call_tool)": 1000,
    "mcp/client/session.py:809(protocol_version)": 40,
    "nats/protocol/parser.py:85(parse)": 400,
    "/usr/lib/python3.11/asyncio/tasks.py:637(sleep)": 200,
    "joserfc/registry.py:189(check_registry_header)": 60,
}


def test_each_function_lands_in_the_group_of_the_work_it_serves() -> None:
    assert group_of("services/ingress/audit_events.py:143(record)") == group_of(
        "libs/common/audit/audit_chain.py:155(_linked_json)"
    )
    assert group_of("services/executor/guardrails/walk.py:30(strings)").startswith("guardrails")
    assert group_of("nats/protocol/parser.py:85(parse)").startswith("the bus")
    assert group_of("/usr/lib/python3.11/asyncio/tasks.py:637(sleep)").startswith("event loop")
    assert group_of("joserfc/registry.py:189(check_registry_header)") == OTHER


def test_the_more_specific_group_is_read_first() -> None:
    # the upstream client's path holds "mcp/", the MCP SDK's fragment: the client's group is earlier
    assert group_of("services/executor/upstreams/mcp/lean_session.py:74(call_tool)").startswith("upstream client")
    assert group_of("mcp/client/session.py:809(protocol_version)").startswith("MCP SDK")
    names = [name for name, _ in GROUPS]
    assert len(names) == len(set(names))


def test_a_ledger_sums_per_call_most_first_and_names_each_groups_largest() -> None:
    rows = ledger(PROFILE, calls=10)
    assert [round(count) for _, count, _ in rows] == [180, 180, 100, 40, 20, 6, 4]
    audit = next(row for row in rows if row[0].startswith("audit"))
    assert audit == (audit[0], 180.0, "libs/common/audit/audit_chain.py:155(_linked_json)")
    assert sum(count for _, count, _ in rows) == sum(PROFILE.values()) / 10
