"""bench/nats_hop.py's reading of `strace -c`: syscalls per call, and how many of them found nothing (its
`errors` column, present only on rows that have errors). Read wrong, the doc's figures of the NATS hop
(docs/architecture.md, "What the NATS hop costs") would be."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from nats_hop import _strace_counts  # noqa: E402

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed"),
]

_CHILD = """
import os
r, w = os.pipe()
os.set_blocking(r, False)
for _ in range(40):
    os.write(w, b"x")
for _ in range(20):
    try:
        os.read(r, 1 << 16)
    except BlockingIOError:
        pass
"""
"""40 writes; a first read that takes them all, then 19 that find nothing (EAGAIN)."""


def test_syscalls_per_call_and_those_that_found_nothing(tmp_path: Path) -> None:
    out = tmp_path / "child.strace"
    subprocess.run(["strace", "-f", "-c", "-o", str(out), sys.executable, "-I", "-S", "-c", _CHILD], check=True)
    counts = _strace_counts(out, calls=10)
    assert counts["read (nothing there)"] == pytest.approx(1.9)
    assert counts["read"] >= 2.0  # the interpreter's own start reads files too
    assert 4.0 <= counts["write"] < 4.5
    assert "write (nothing there)" not in counts
