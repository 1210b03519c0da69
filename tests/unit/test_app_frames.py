"""The policy the playground frames an MCP App under, from what the app declares, and its one-time frames."""

from __future__ import annotations

import pytest

from libs.common.contracts.ui_apps import visible_to_app
from services.admin.console.app_frames import MAX_FRAMES, AppFrames, app_policy

pytestmark = pytest.mark.unit


def _directives(policy: str) -> dict[str, str]:
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in policy.split("; ")}


def test_an_app_that_declares_nothing_gets_no_network_no_frames_and_no_origin_of_ours() -> None:
    policy = _directives(app_policy(None))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'none'"
    assert policy["frame-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["script-src"] == "'unsafe-inline'" and policy["sandbox"] == "allow-scripts"
    assert "'self'" not in " ".join(v for k, v in policy.items() if k != "frame-ancestors")


def test_declared_origins_map_to_their_directives_and_nothing_else_gets_in() -> None:
    declared = {
        "connectDomains": ["https://api.example.com", "wss://live.example.com", "https://a.com; script-src *", "*"],
        "resourceDomains": ["https://*.cdn.example.com", "'unsafe-eval'", "javascript:alert(1)", 'https://x.com"'],
        "frameDomains": ["https://player.example.com:8443"],
    }
    policy = _directives(app_policy(declared))
    assert policy["connect-src"] == "https://api.example.com wss://live.example.com"
    assert policy["script-src"] == "'unsafe-inline' https://*.cdn.example.com"
    assert policy["img-src"] == "data: https://*.cdn.example.com"
    assert policy["frame-src"] == "https://player.example.com:8443"
    assert len(app_policy(declared).split("; ")) == len(policy)  # no directive smuggled in


def test_a_frame_is_served_once_and_the_oldest_go_first() -> None:
    frames = AppFrames()
    first = frames.put("<p>first</p>", None)
    assert frames.take(first) == ("<p>first</p>", app_policy(None))
    assert frames.take(first) is None
    tickets = [frames.put(f"<p>{n}</p>", None) for n in range(MAX_FRAMES + 1)]
    assert frames.take(tickets[0]) is None and frames.take(tickets[-1]) is not None


@pytest.mark.parametrize(
    ("meta", "visible"),
    [
        ({}, True),
        ({"ui": {"visibility": ["app"]}}, True),
        ({"ui": {"visibility": ["model"]}}, False),
        ({"ui": {"visibility": ["model", "app"]}}, True),
        ({"ui": {"visibility": []}}, False),
    ],
)
def test_what_an_app_may_call(meta: dict, visible: bool) -> None:
    assert visible_to_app({"name": "t", "_meta": meta}) is visible
