"""Skill entries through the gateway (`contracts.skills`): a well-formed entry within the extension's
limits is served with its URIs named `skill://<server>/...`; a malformed or oversized one is not."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.contracts.skills import MAX_FILES, entry_for_gateway, skill_path, skill_problem, upstream_skill_uri

pytestmark = pytest.mark.unit

ROOT = "skill://acme/refunds/SKILL.md"


def _entry(**changes: Any) -> dict[str, Any]:
    files = [{"uri": ROOT, "digest": "sha256:" + "a" * 64, "size": 10}]
    return {"uri": ROOT, "frontmatter": {"name": "refunds", "description": "d"}, "resources": files, **changes}


def test_an_entry_is_named_under_its_server_its_name_unchanged() -> None:
    named = entry_for_gateway("billing", _entry())
    assert named["uri"] == "skill://billing/acme/refunds/SKILL.md"
    assert [f["uri"] for f in named["resources"]] == [named["uri"]]
    assert skill_path(named["uri"]) == "billing/acme/refunds"  # the last segment is still the name
    assert upstream_skill_uri(named["uri"]) == ("billing", ROOT)
    assert entry_for_gateway("b", _entry(resources="dynamic"))["resources"] == "dynamic"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (_entry(), None),
        (_entry(resources="dynamic"), None),
        ({"frontmatter": {}}, "an entry without a uri"),
        (_entry(frontmatter="x"), "an entry without frontmatter"),
        (_entry(resources=None), "resources is neither a list of files nor 'dynamic'"),
        (_entry(resources=[{"uri": "skill://acme/refunds/x.md", "size": 1}]), "resources does not list its SKILL.md"),
        (_entry(resources=[{"uri": ROOT, "size": 16 * 1024 * 1024 + 1}]), "16777217 bytes, more than"),
        (_entry(resources=[{"uri": ROOT, "size": 1}] * (MAX_FILES + 1)), "513 files, more than"),
    ],
)
def test_only_a_well_formed_entry_within_the_limits_is_served(entry: Any, problem: str | None) -> None:
    found = skill_problem(entry)
    assert found == problem if problem is None else found is not None and found.startswith(problem)


@pytest.mark.parametrize("uri", ["skill://acme/SKILL.md.txt", "memo://x/SKILL.md", "skill:///SKILL.md"])
def test_a_uri_naming_no_skill_file_has_no_skill_path(uri: str) -> None:
    assert skill_path(uri) is None
