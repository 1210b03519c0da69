"""bench/mypyc_core.py's adaptation of the tree it compiles: a class left without its marker fails to
compile or to start (a subclass of a built-in, an interpreted subclass of a compiled step), and an edit
whose text moved would leave the compiled build failing its calls at run time, not at build time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from mypyc_core import EDITS, MODULES, NOT_NATIVE, SEALED, adapt  # noqa: E402

pytestmark = pytest.mark.unit

SOURCE = '''"""A module."""

from __future__ import annotations

from dataclasses import dataclass


class Carried(bytes):
    """Bytes."""


@dataclass
class Pending:
    reply: object = None

    class Inner:
        pass
'''


def test_each_class_gets_the_marker_its_kind_needs_and_the_import_once() -> None:
    adapted = adapt("libs/common/contracts/carried.py", SOURCE)
    assert "@mypyc_attr(native_class=False)\nclass Carried(bytes):" in adapted
    assert "@mypyc_attr(allow_interpreted_subclasses=True)\n@dataclass\nclass Pending:" in adapted
    assert "    class Inner:" in adapted and "@mypyc_attr(allow_interpreted_subclasses=True)\n    class" not in adapted
    assert adapted.count("from mypy_extensions import mypyc_attr") == 1
    assert adapted.index("from __future__") < adapted.index("from mypy_extensions")


def test_a_sealed_class_and_a_module_not_compiled_are_left_as_they_are() -> None:
    sealed = adapt(
        "services/ingress/web/response_writes.py", "from __future__ import annotations\n\nclass HeadWithBody:\n"
    )
    assert "mypyc_attr(allow" not in sealed
    assert adapt("services/ingress/mcp_edge/chain.py", SOURCE) == SOURCE


def test_every_edit_finds_its_text_once_in_this_checkout() -> None:
    for where, text, _ in EDITS:
        assert (ROOT / where).read_text().count(text) == 1, f"{where}: {text!r}"
    for path in (*MODULES, *NOT_NATIVE, *SEALED):
        assert (ROOT / path).is_file(), path
    for path, names in {**NOT_NATIVE, **SEALED}.items():
        for name in names:
            assert f"\nclass {name}" in (ROOT / path).read_text(), f"{path}: {name}"


def test_an_edit_whose_text_is_gone_stops_the_build() -> None:
    with pytest.raises(SystemExit, match="gone or repeated"):
        adapt("libs/common/bus/relay.py", "nothing of the kind\n")
