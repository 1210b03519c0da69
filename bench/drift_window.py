"""How long a silent change goes unseen: from the moment an upstream serves a changed definition (no
notification at all) to the moment the executor holds it quarantined, end to end. docs/benchmarks.md,
docs/supply-chain.md.

    PYTHONPATH=$PWD .venv/bin/python bench/drift_window.py [--rounds 5] [--interval 2.0]

Every service runs in this process (tests.support.gateway: real NATS, Valkey, ClickHouse engine); the
upstream is the suite's drifting server (tests/support/drifting_server.py) over stdio, sandboxed,
on the official SDK, with the default re-list schedule (`--interval`, `BASTION_DRIFT_INTERVAL`).
Each round starts a fresh gateway, calls `add` once (its definition approved on first use), then,
at a random moment of the schedule's period, changes `add`'s description in place. The change's
moment is when the server wrote that it serves it (the mtime of `STATE.served`); the quarantine's
is the first of this process's looks, every 10 ms, that finds the pinning interceptor's verdict
`quarantined`. A look costs nothing on the path measured.
This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from services.executor.interceptors import PinningInterceptor
from services.executor.service import ExecutorService
from tests.support.gateway import ADMIN_KEY, ROOT, Gateway, default_config, gateway_on_own_servers
from tests.support.polling import poll_until

DRIFTING = ROOT / "tests" / "support" / "drifting_server.py"
ROUND_LIMIT = 60.0
"""Seconds a round may wait for the quarantine before it counts as missed."""


def _config(state: Path, calls: Path) -> dict[str, Any]:
    sandbox = {"read": [str(state.parent)], "write": [str(calls.parent)]}
    drift = {"command": sys.executable, "args": [str(DRIFTING), str(state), str(calls)], "sandbox": sandbox}
    return default_config({"drift": drift})


def quarantined(gateway: Gateway, server: str = "drift", tool: str = "add") -> bool:
    """Whether the gateway's executor has quarantined `tool` of `server` (its pinning verdict)."""
    executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
    pinning = next(i for i in executor.interceptors.interceptors if isinstance(i, PinningInterceptor))
    outcome = pinning.outcomes.get(server)
    decision = outcome.decision("tool", tool) if outcome is not None else None
    return decision is not None and decision.verdict == "quarantined"


async def _round(workdir: Path, interval: float) -> float | None:
    state, calls = workdir / "state", workdir / "calls"
    state.write_text("base")
    served = state.with_name(state.name + ".served")
    options = {"executor_options": {"drift_interval": interval}}
    async with gateway_on_own_servers(workdir, _config(state, calls), **options) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            await client.call_tool("drift__add", {"a": 1, "b": 2})  # approved on first use
        await asyncio.sleep(random.uniform(0, interval))  # any moment between two scheduled listings
        state.write_text("description silent")
        deadline = time.monotonic() + ROUND_LIMIT
        while not quarantined(gateway):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.01)
        found = time.time()
        await poll_until(served.exists, "the server's record of serving the change")  # written as it swaps
        return found - served.stat().st_mtime


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    windows: list[float] = []
    missed = 0
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bastion-drift-") as tmp:
            window = await _round(Path(tmp), args.interval)
        if window is None:
            missed += 1
        else:
            windows.append(window)
        print(f"round {n + 1}: {'missed' if window is None else f'{window:.2f} s'}", flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    if windows:
        print(
            f"drift window at interval {args.interval:g} s, {len(windows)} rounds: min {min(windows):.2f} s, "
            f"median {statistics.median(windows):.2f} s, max {max(windows):.2f} s; missed {missed}; load {load}"
        )


if __name__ == "__main__":
    asyncio.run(main())
