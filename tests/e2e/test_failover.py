"""The failover benchmark's short version (bench/failover.py, `./run bench --failover`): the same stack
(a 3-server NATS cluster with every store on 3 servers, Valkey, two replicas of ingress, policy,
executor, codemode and audit as processes), the same load (tools/list, tools/call of the ledger
upstream, Code Mode runs, over sessions spread on both ingress replicas) and the same faults in turn
(the audit stream's leading nats-server, one replica of each service, the audit store's owner among
them, and Valkey), with fewer calls. The same end-of-run checks, none on timing: every call answered
(a success or an error docs/reliability.md calls retryable), no tool executed twice for one call, one
audit row per handled request, the hash chains verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.failover import bench, parse_args

pytestmark = pytest.mark.e2e


async def test_the_stack_survives_each_fault_in_turn(tmp_path: Path) -> None:
    args = parse_args(
        [
            "--calls",
            "600",
            "--concurrency",
            "8",
            "--sessions",
            "4",
            "--settle",
            "2",
            "--nats-down",
            "3",
            "--faults",
            "kill",
        ]
    )
    report = await bench(args, tmp_path)
    check = report["checks"]
    assert report["problems"] == [], f"{report['problems']}: {check}"
    assert check["calls"] >= 600
    assert {"call", "list", "code"} <= set(report["mix"]), report["mix"]
    assert set(report["by_replica"]) >= {"0", "1"}, "the load reached both ingress replicas"
    assert [f["fault"].split()[0] for f in report["faults"]] == [
        "nats-server",
        "ingress",
        "policy",
        "executor",
        "codemode",
        "audit",
        "valkey",
    ]
    assert all(f["back_after_s"] > 0 for f in report["faults"]), "every killed part came back"
    assert report["faults"][0]["leader_elected_s"] > 0, "another server leads the audit stream"
    assert "takeover_s" in report["faults"][5], "the standby audit replica took the store over"
    assert check["executed_twice"] == 0 and check["rows_duplicated"] == 0 and check["rows_missing"] == 0
    assert report["chains"]["ok"] and report["chains"]["events"] == check["rows"]
