"""The repository carries everything it needs: no tracked file reaches for a `shared/` folder
beside the checkout (where a maintainer may keep reference material a user's clone lacks)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

OUTSIDE = re.compile(
    r"""\.\./shared\b"""  # ../shared, ../../shared/data, ...
    r"""|/work/shared\b"""
    r"""|parents?\[\d+\][^\n]*["']shared["']"""  # Path(__file__).parents[3] / "shared"
    r"""|["']\.\.["']\s*,\s*["']shared["']"""  # os.path.join("..", "shared")
)


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30)
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_the_pattern_catches_the_ways_a_file_reaches_outside() -> None:
    for text in ('Path("../shared/data")', "ROOT.parents[1] / 'shared' / 'data'", 'os.path.join("..", "shared")'):
        assert OUTSIDE.search(text), text
    assert not OUTSIDE.search('session_secret="shared-test-secret"')


def test_no_tracked_file_refers_to_a_shared_folder_beside_the_repository() -> None:
    me = Path(__file__).resolve()
    offenders = []
    for path in _tracked_files():
        if path == me or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary data
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in OUTSIDE.finditer(text)]
    assert not offenders, "files reaching outside the repository:\n" + "\n".join(offenders)
