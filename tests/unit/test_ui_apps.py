"""MCP Apps naming (`ui_apps`): every place the extension names an app is renamed to
`ui://<server>/...` and back, the rest of `_meta.ui` untouched; a URI that could resolve elsewhere is
refused; and a Cedar policy tells a call an app made from the agent's (`context.initiator`)."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.cedar.cedar_eval import Principal, call_context, evaluate
from libs.common.cedar.cedar_policies import compile_policies
from libs.common.contracts.ui_apps import app_only, named_for_gateway, result_for_gateway, upstream_uri

pytestmark = pytest.mark.unit

CSP = {"connectDomains": ["https://api.example.com"]}


def test_a_tool_names_its_app_under_its_server_in_both_meta_forms_and_keeps_the_rest() -> None:
    tool = {
        "name": "show",
        "_meta": {"ui": {"resourceUri": "ui://board/v", "csp": CSP}, "ui/resourceUri": "ui://board/v"},
    }
    named = named_for_gateway("apps", tool)
    assert named["_meta"] == {
        "ui": {"resourceUri": "ui://apps/board/v", "csp": CSP},
        "ui/resourceUri": "ui://apps/board/v",
    }
    assert tool["_meta"]["ui"]["resourceUri"] == "ui://board/v"  # the catalog's copy is not changed
    plain = {"name": "echo", "_meta": {"other": 1}}
    assert named_for_gateway("apps", plain) is plain


def test_a_read_names_each_ui_content_and_leaves_others() -> None:
    result: dict[str, Any] = {
        "contents": [
            {"uri": "ui://board/v", "mimeType": "text/html;profile=mcp-app", "_meta": {"ui": {"csp": CSP}}},
            {"uri": "memo://x", "text": "x"},
        ]
    }
    named = result_for_gateway("apps", result)
    assert [c["uri"] for c in named["contents"]] == ["ui://apps/board/v", "memo://x"]
    assert named["contents"][0]["_meta"] == {"ui": {"csp": CSP}}
    assert result_for_gateway("apps", {"content": []}) == {"content": []}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("ui://apps/board/v", ("apps", "ui://board/v")), ("ui://a.b-c_d/x?y=1", ("a.b-c_d", "ui://x?y=1"))],
)
def test_a_gateway_uri_gives_its_server_and_the_upstream_uri(uri: str, expected: tuple[str, str]) -> None:
    assert upstream_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "memo://x",
        "ui://apps",
        "ui://apps/",
        "ui://-x/y",
        "ui://apps/a/../b",
        "ui://apps/..",
        "ui://apps/%2E%2e/b",
        "ui://apps/a%2fb",
        "ui://apps/a\\b",
        "ui://apps/a\nb",
        "ui://apps/" + "a" * 2100,
    ],
)
def test_a_uri_that_could_mean_another_place_is_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        upstream_uri(uri)


@pytest.mark.parametrize(
    ("visibility", "only"), [(None, False), (["model", "app"], False), (["model"], False), (["app"], True), ([], True)]
)
def test_only_a_visibility_without_the_model_keeps_a_tool_for_the_app(visibility: Any, only: bool) -> None:
    meta = {"ui": {"resourceUri": "ui://x/y"} | ({} if visibility is None else {"visibility": visibility})}
    assert app_only({"name": "t", "_meta": meta}) is only


def test_a_policy_tells_a_call_the_app_made_from_the_agents() -> None:
    policy = '@id("no-app-writes")\nforbid (principal, action, resource) when { context.initiator == "app" };'
    compiled = compile_policies(policy)
    who, target = Principal("k"), ("apps", "refresh_board", {})
    app = evaluate(compiled, compiled.full, who, target, call_context({}, initiator="app"))
    agent = evaluate(compiled, compiled.full, who, target, call_context({}))
    assert (app.effect, app.policy) == ("deny", "no-app-writes") and agent.effect == "allow"
