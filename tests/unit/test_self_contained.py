"""The repository carries everything it needs: no tracked file reaches for a `shared/` folder
beside the checkout (where a maintainer may keep reference material a user's clone lacks)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

FOLDER = "shared"
"""The name of the reference folder beside the checkout; spelt once, so this file does not match itself."""
OUTSIDE = re.compile(
    rf"""\.\./{FOLDER}\b"""  # ../<folder>, ../../<folder>/data, ...
    rf"""|/work/{FOLDER}\b"""
    rf"""|parents?\[\d+\][^\n]*["']{FOLDER}["']"""  # Path(__file__).parents[3] / "<folder>"
    rf"""|["']\.\.["']\s*,\s*["']{FOLDER}["']"""  # os.path.join("..", "<folder>")
)


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30)
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_the_pattern_catches_the_ways_a_file_reaches_outside() -> None:
    reaching = (
        f'Path("../{FOLDER}/data")',
        f"ROOT.parents[1] / '{FOLDER}' / 'data'",
        f'os.path.join("..", "{FOLDER}")',
    )
    for text in reaching:
        assert OUTSIDE.search(text), text
    assert not OUTSIDE.search(f'session_secret="{FOLDER}-test-secret"')


def test_no_tracked_file_refers_to_a_shared_folder_beside_the_repository() -> None:
    offenders = []
    for path in _tracked_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary data
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in OUTSIDE.finditer(text)]
    assert not offenders, "files reaching outside the repository:\n" + "\n".join(offenders)
