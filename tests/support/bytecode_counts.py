"""Python bytecode instructions executed on one thread, per area, for the cost budget
(`tests/integration/test_cost_budget.py`, docs/benchmarks.md "The cost budget").

A count of calls weighs a 0.1 µs call as much as a 50 µs one: a change that moves work from C callbacks
into a Python loop, or from a short per-string walk into a regex over the whole text, lowers calls and
raises CPU. Instructions follow the interpreter's work closer: a Python loop of N turns executes a few
instructions per turn; a C function (a regex, a decoder) is one call instruction however long it runs.

Counted with the interpreter's trace hook (`sys.settrace`, an `opcode` event per instruction executed,
line events off), deterministic, and slow (a traced instruction costs a Python call): used for a short
window. The areas are `cost_counts.area`'s; what `cost_counts.not_counted` names (the work of
`TIMED_ROOTS`, the test's own code), and everything it calls, is left out.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

from tests.support.cost_counts import area, not_counted

Tracer = Callable[[FrameType, str, Any], Any]


def _untraced(_frame: FrameType, _event: str, _arg: Any) -> Tracer:
    """The local tracer of a frame whose instructions are not counted; the frames it starts inherit it."""
    return _untraced


def _code_counter() -> tuple[Tracer, Callable[[], int]]:
    """A local tracer counting the instructions of the frames it is set on, and what reads its count."""
    count = 0

    def counted(_frame: FrameType, event: str, _arg: Any) -> Tracer:
        nonlocal count
        if event == "opcode":  # not the frame's return or exception events
            count += 1
        return counted

    return counted, lambda: count


class BytecodeCounter:
    """Instructions executed per function, and per area, by the frames that start while `counting` holds
    the trace hook. One counter per function (code object): an area's count is its functions' sum."""

    def __init__(self) -> None:
        self._codes: dict[CodeType, Callable[[], int]] = {}
        self._tracers: dict[CodeType, Tracer] = {}

    def _tracer_of(self, code: CodeType) -> Tracer:
        if not_counted((code.co_filename, code.co_firstlineno, code.co_name)):
            tracer: Tracer = _untraced
        else:
            tracer, self._codes[code] = _code_counter()
        self._tracers[code] = tracer
        return tracer

    def _started(self, frame: FrameType, _event: str, _arg: Any) -> Tracer:
        """The global tracer: called as each frame starts or a coroutine resumes (`call` events only)."""
        parent = frame.f_back
        if parent is not None and parent.f_trace is _untraced:
            tracer = _untraced
        else:
            tracer = self._tracers.get(frame.f_code) or self._tracer_of(frame.f_code)
        frame.f_trace_lines = False
        frame.f_trace_opcodes = tracer is not _untraced
        return tracer

    @contextlib.contextmanager
    def counting(self) -> Iterator[BytecodeCounter]:
        """Counts while the block runs, on this thread; another tracer (a debugger) is put back after."""
        before = sys.gettrace()
        sys.settrace(self._started)
        try:
            yield self
        finally:
            sys.settrace(before)

    def counts(self) -> Counter[str]:
        """`bytecodes_<area>` -> instructions executed so far."""
        totals: Counter[str] = Counter()
        for code, read in self._codes.items():
            totals[f"bytecodes_{area(code.co_filename)}"] += read()
        return totals

    def by_function(self) -> Counter[str]:
        """`file:line(name)` -> instructions executed so far: where an area's count comes from. Code
        objects of one name (a comprehension or a lambda made anew, a module reloaded) are summed."""
        found: Counter[str] = Counter()
        for code, read in self._codes.items():
            found[f"{code.co_filename}:{code.co_firstlineno}({code.co_name})"] += read()
        return +found
