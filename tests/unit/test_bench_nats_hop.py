"""bench/nats_hop.py's reading of `strace -c`: syscalls per call, and how many of them found nothing (its
`errors` column, present only on rows that have errors). Read wrong, the doc's figures of the NATS hop
(docs/architecture.md, "What the NATS hop costs") would be. The table is one strace 6.1 wrote on this
project's machine for a child that wrote 40 times to a pipe and read it 20 times, 19 finding nothing
(EAGAIN): read as a file, so the test runs wherever the suite does, strace installed or not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from nats_hop import _strace_counts  # noqa: E402

pytestmark = pytest.mark.unit

_TABLE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 98.76    0.449045         120      3741           wait4
  0.67    0.003041          10       284        19 read
  0.10    0.000463           5        78           pread64
  0.08    0.000342           4        69           write
  0.01    0.000037           5         7         6 readlink
------ ----------- ----------- --------- --------- ----------------
100.00    0.454669          55      8196      1300 total
"""


def test_syscalls_per_call_and_those_that_found_nothing(tmp_path: Path) -> None:
    out = tmp_path / "child.strace"
    out.write_text(_TABLE)
    counts = _strace_counts(out, calls=10)
    assert counts["read"] == pytest.approx(28.4)
    assert counts["read (nothing there)"] == pytest.approx(1.9)
    assert counts["write"] == pytest.approx(6.9)
    assert "write (nothing there)" not in counts  # a row with no errors column
    assert "total" not in counts and "readlink" not in counts  # only the syscalls the bench names
