"""A started service's heap: what start-up built is frozen, and young collections are rarer than CPython's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

_PROBE = """
import gc, json
from libs.common.runtime import runner
before = gc.get_threshold()
runner._settle_heap()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_settling_freezes_start_up_and_collects_the_young_generation_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    seen = json.loads(out)
    assert seen["before"][0] == 700  # CPython's default, which under load walks the calls in flight too often
    assert seen["after"] == [10_000, *seen["before"][1:]]  # the older generations keep their ratios
    assert seen["frozen"] > 10_000  # modules, schemas and settings are out of the collector's reach
