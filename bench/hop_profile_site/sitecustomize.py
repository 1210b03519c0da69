"""Imported by every Python process started with this folder on PYTHONPATH (`bench/hop_profile.py`):
SIGUSR1 starts a deterministic profile (cProfile on the thread's CPU clock, every function call
counted), the next SIGUSR1 writes it to `$BENCH_PROFILE_DIR/<role>-<pid>.prof` and stops. SIGUSR2 likewise
counts the bytecode instructions the main thread executes per area (`tests.support.bytecode_counts`,
imported at the first signal), written to `<role>-<pid>.bytecodes.json`. Nothing happens without
that variable."""

from __future__ import annotations

import contextlib
import cProfile
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.bytecode_counts import BytecodeCounter

_OUT = os.environ.get("BENCH_PROFILE_DIR")
_profile: cProfile.Profile | None = None
_counting: tuple[contextlib.ExitStack, BytecodeCounter] | None = None


def _role() -> str:
    """The service this process runs, from its main module's path (`.../services/<role>/__main__.py`,
    `.../cli/colocated.py`), read from the end: the folders above it may be named anything."""
    parts = Path(sys.argv[0] if sys.argv else "").parts
    if parts[-2:] == ("cli", "colocated.py"):
        return "colocated"
    if len(parts) >= 3 and parts[-3] == "services":
        return parts[-2]
    return "other"


def _toggle(_signum: int, _frame: FrameType | None) -> None:
    global _profile
    if _profile is None:
        _profile = cProfile.Profile(time.thread_time)  # CPU, not the time a write was preempted
        _profile.enable()
        return
    _profile.disable()
    assert _OUT is not None
    _profile.dump_stats(str(Path(_OUT) / f"{_role()}-{os.getpid()}.prof"))
    _profile = None


def _toggle_bytecodes(_signum: int, _frame: FrameType | None) -> None:
    global _counting
    from tests.support.bytecode_counts import BytecodeCounter  # not at start-up: it imports the MCP SDK

    if _counting is None:
        window, counter = contextlib.ExitStack(), BytecodeCounter()
        window.enter_context(counter.counting())
        _counting = (window, counter)
        return
    window, counter = _counting
    window.close()
    assert _OUT is not None
    counts = {"areas": counter.counts(), "functions": counter.by_function()}
    (Path(_OUT) / f"{_role()}-{os.getpid()}.bytecodes.json").write_text(json.dumps(counts))
    _counting = None


if _OUT:
    signal.signal(signal.SIGUSR1, _toggle)
    signal.signal(signal.SIGUSR2, _toggle_bytecodes)
