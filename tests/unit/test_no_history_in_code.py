"""Code says why, not when: no comment or docstring cites an issue, a finding or a round of work.

A citation ("issue 24 item 7", "finding 5", "fourth session") means something only to whoever
remembers that tracker or that day; the reason itself is what a reader needs. Dated history belongs
in docs/benchmarks.md, a results log, which this test leaves alone.
"""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("libs", "services", "cli", "tests", "bench", "tools")
SUFFIXES = {".py", ".sh", ".js", ".mjs"}
ORDINALS = "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth"
CITATION = re.compile(
    r"\bissues? #?\d+"  # issue 26, issues 24
    r"|\bfindings? #?\d+"  # finding 5
    r"|\bhardening issue\b"
    rf"|\b(?:{ORDINALS}) session\b"  # fourth session
    r"|\bround #?\d+",  # round 3
    re.IGNORECASE,
)


def _code_files() -> list[Path]:
    return sorted(
        path
        for folder in FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.suffix in SUFFIXES and path.is_file() and "node_modules" not in path.parts
    )


@pytest.mark.parametrize(
    "text",
    [
        "(issue 26 item 3)",
        "Issue 30's attack",
        "see issue #12",
        "finding 5 of the hardening issue",
        "Finding 1: a huge name",
        "(docs/benchmarks.md, fourth session)",
        "measured in round 2",
    ],
)
def test_a_citation_is_caught(text: str) -> None:
    assert CITATION.search(text), text


@pytest.mark.parametrize(
    "text",
    [
        "the tool `get_issue` issues a token",
        "the first round's audit row",  # an agent's rounds of tool calls
        "each session of a client",
        "round trip",
        "rounds = 3",
    ],
)
def test_ordinary_words_are_not_citations(text: str) -> None:
    assert not CITATION.search(text), text


def test_the_code_folders_hold_code() -> None:
    files = _code_files()
    assert any(path.parent.name == "common" for path in files) and len(files) > 200, "the scan found no code"


def test_no_code_cites_an_issue_or_a_round_of_work() -> None:
    this = Path(__file__).resolve()
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _code_files()
        if path != this
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if CITATION.search(line)
    ]
    assert not found, "say why, not when (no issue, finding or session numbers):\n" + "\n".join(found)
