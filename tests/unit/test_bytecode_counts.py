"""The cost budget's bytecode counter (tests/support/bytecode_counts.py) on code whose instructions are
known: compiled here under file names of the areas it tells apart and started from a frame of its own,
since the tests' own code, and what it calls, is not counted. The `with` block's exit is the standard
library's: only the areas asked are compared."""

from __future__ import annotations

import dis
import re
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.bytecode_counts import BytecodeCounter
from tests.support.cost_counts import LIBS, SERVICES, TIMED_ROOTS

pytestmark = pytest.mark.unit

SOURCE = """
def straight(a, b):
    c = a + b
    return c * 2

def turns(n):
    total = 0
    for i in range(n):
        total += i
    return total

def search(pattern, text):
    return pattern.search(text)

def calls(inner, n):
    return [inner(i) for i in range(n)]

def measured(counting, work, *args):
    with counting():
        return work(*args)
"""


def compiled(filename: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(SOURCE, filename, "exec"), namespace)
    return namespace


LIB = compiled(str(LIBS / "common" / "known.py"))
INGRESS = compiled(str(SERVICES / "ingress" / "known.py"))
TIMED = compiled(TIMED_ROOTS[0])  # the KV watch's file: time drives it


def counted(work: Callable[..., Any], *args: Any) -> Counter[str]:
    """The instructions of `work(*args)` per area, called from a frame that started before the count."""
    counter = BytecodeCounter()
    LIB["measured"](counter.counting, work, *args)
    counts = counter.counts()
    counts.pop("bytecodes_stdlib", None)  # contextlib's exit of the block
    return counts


def test_code_without_branches_counts_each_of_its_instructions_once() -> None:
    straight = LIB["straight"]
    executed = [i for i in dis.get_instructions(straight) if i.opname != "RESUME"]  # the frame's call event
    assert counted(straight, 1, 2) == Counter({"bytecodes_libs": len(executed)})


def test_a_loop_counts_the_same_instructions_per_turn() -> None:
    per_turns = {n: counted(LIB["turns"], n)["bytecodes_libs"] for n in (10, 100, 1000)}
    per_turn = (per_turns[1000] - per_turns[100]) / 900
    assert per_turn == (per_turns[100] - per_turns[10]) / 90  # exact: no sampling, no clock
    assert 4 <= per_turn <= 10  # FOR_ITER, STORE, LOAD x2, BINARY_OP, STORE, JUMP_BACKWARD on 3.11


def test_a_c_call_counts_a_few_instructions_however_long_it_runs() -> None:
    pattern = re.compile("needle")
    short, long = "x" * 10, "x" * 5_000_000  # the long search takes milliseconds, the short one nanoseconds
    assert counted(LIB["search"], pattern, short) == counted(LIB["search"], pattern, long)
    assert 0 < counted(LIB["search"], pattern, short)["bytecodes_libs"] < 10


def test_instructions_are_counted_in_the_area_of_the_code_that_runs_them() -> None:
    counts = counted(INGRESS["calls"], LIB["turns"], 20)
    alone = counted(LIB["calls"], LIB["turns"], 20)
    assert counts["bytecodes_ingress"] > 0
    assert counts["bytecodes_libs"] == alone["bytecodes_libs"] - counts["bytecodes_ingress"] > 0


def test_each_functions_instructions_are_named_and_sum_to_its_areas() -> None:
    counter = BytecodeCounter()
    INGRESS["measured"](counter.counting, INGRESS["calls"], LIB["turns"], 20)
    functions, areas = counter.by_function(), counter.counts()
    turns = functions[f"{LIBS / 'common' / 'known.py'}:6(turns)"]
    assert turns == areas["bytecodes_libs"] == sum(counted(LIB["turns"], n)["bytecodes_libs"] for n in range(20))
    ingress = {where: count for where, count in functions.items() if "ingress" in where}
    assert ingress.keys() >= {f"{SERVICES / 'ingress' / 'known.py'}:15(calls)"}
    assert sum(ingress.values()) == areas["bytecodes_ingress"]


def test_code_objects_of_one_name_are_summed_not_overwritten() -> None:
    # two functions of one file, line and name, different code: as namedtuple makes each class's
    # `__new__` from "<string>", line 1
    same = str(LIBS / "common" / "same.py")
    one: dict[str, Any] = {}
    two: dict[str, Any] = {}
    exec(compile("def f(n):\n    return n\n", same, "exec"), one)
    exec(compile("def f(n):\n    return [n, n, n, n]\n", same, "exec"), two)
    both: dict[str, Any] = {}  # started from code that is counted: the test's own would not be
    exec(compile("def both(f, g):\n    return f(1), g(2)\n", str(LIBS / "common" / "both.py"), "exec"), both)
    counter = BytecodeCounter()
    LIB["measured"](counter.counting, both["both"], one["f"], two["f"])
    alone = counted(one["f"], 1)["bytecodes_libs"] + counted(two["f"], 2)["bytecodes_libs"]
    assert one["f"].__code__ != two["f"].__code__
    assert counter.by_function()[f"{same}:1(f)"] == alone


def test_what_time_drives_is_left_out_with_what_it_calls() -> None:
    assert counted(TIMED["calls"], LIB["turns"], 20) == Counter()
    assert counted(LIB["calls"], TIMED["turns"], 20).keys() == {"bytecodes_libs"}


def test_the_tracer_that_was_set_before_is_set_again() -> None:
    def tracer(*_: Any) -> None:
        return None

    before = sys.gettrace()
    sys.settrace(tracer)
    try:
        counted(LIB["turns"], 3)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(before)
