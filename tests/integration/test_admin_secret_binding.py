"""Stored secrets go only where they were stored for, attacked as an operator and a viewer would on a real
admin service (its own NATS, egress rules as `bastion up` gives them: public addresses only): a masked
header kept while the URL moves to the attacker's listener is refused on every path that unmasks (the
server routes, the console's test, a configuration import), and the listener hears nothing; the console's
test reaches no loopback or metadata address an owner did not allow; nothing arriving through the API is
expanded from the admin service's environment; naming a variable of the executors' environment is the
owner's; and no validation message repeats the value it refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from cli.stack import EmbeddedNats
from libs.common.contracts.egress import EgressSection
from libs.common.web.guarded_http import shared_tls
from tests.support.admin_api import base_url, principal_token, running_admin
from tests.support.recording_listener import recording

pytestmark = pytest.mark.integration

STORED = "Bearer ghp_the-owners-stored-token-0123456789"
PROVIDER_KEY = "sk-proj-the-owners-provider-key-0123456789"
ENV_SECRET = "sk-proj-admin-environment-secret-9876543210"
LEAK_VAR = "BASTION_TEST_BINDING_LEAK"


@dataclass
class Stack:
    url: str
    owner: str
    operator: str
    viewer: str

    def client(self, token: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, verify=shared_tls())


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """One admin service whose console test may reach public addresses only, as `bastion up` runs it
    when the configuration allows no private host."""
    server = EmbeddedNats(Path(tmp_path_factory.mktemp("binding")) / "nats").start()
    try:
        async with running_admin(server.url, egress=EgressSection()) as (admin, owner):
            operator = await principal_token(admin, owner, "olga@example.com", {"role": "operator"}, kind="person")
            viewer = await principal_token(admin, owner, "vic@example.com", {"role": "viewer"}, kind="person")
            yield Stack(base_url(admin), owner, operator, viewer)
    finally:
        server.stop()


async def stored_server(owner: httpx.AsyncClient, name: str) -> None:
    entry = {"url": "https://api.githubcopilot.com/mcp/", "headers": {"Authorization": STORED}, "disabled": True}
    made = await owner.post("/servers", json={"name": name, "config": entry})
    assert made.status_code == 201, made.text
    assert made.json()["config"]["headers"] == {"Authorization": "***"}


def unbound(answer: httpx.Response, secret: str = "header 'Authorization'") -> None:
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "secret_unbound" and secret in body["message"], body
    assert "give it again" in body["message"] and STORED not in answer.text and PROVIDER_KEY not in answer.text


async def test_a_masked_header_never_follows_a_changed_url_on_any_path(stack: Stack) -> None:
    async with stack.client(stack.owner) as owner, stack.client(stack.operator) as operator, recording() as ear:
        await stored_server(owner, "gh")
        moved = {"url": ear.url(), "headers": {"Authorization": "***"}, "disabled": True}
        unbound(await operator.post("/console/servers/test", json={"name": "gh", "config": moved}))
        unbound(await operator.put("/servers/gh", json={"config": moved}))
        imported = yaml.safe_dump({"mcpServers": {"gh": moved}})
        for route in ("/config/plan", "/config/apply"):
            unbound(await operator.post(route, json={"yaml": imported}))
        unbound(await owner.put("/servers/gh", json={"config": moved}))  # the owner gives it again too
        assert ear.heard == []
        assert (await owner.get("/servers/gh")).json()["config"]["url"] == "https://api.githubcopilot.com/mcp/"

        # the same destination keeps it; a secret given again may go anywhere the rules allow
        kept = {"url": "https://api.githubcopilot.com/mcp/", "headers": {"Authorization": "***"}, "prices": {"*": 1}}
        assert (await operator.put("/servers/gh", json={"config": {**kept, "disabled": True}})).status_code == 200
        own = {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer mine"}, "disabled": True}
        assert (await operator.put("/servers/gh", json={"config": own})).status_code == 200


async def test_a_mask_with_nothing_stored_is_refused_not_stored(stack: Stack) -> None:
    async with stack.client(stack.operator) as operator:
        entry = {"url": "https://example.com/mcp", "headers": {"X-Api-Key": "***"}, "disabled": True}
        refused = await operator.post("/servers", json={"name": "masked-new", "config": entry})
        assert refused.status_code == 422 and refused.json()["error"] == "invalid_mask", refused.text
        assert "header 'X-Api-Key'" in refused.json()["message"]


async def test_an_openapi_secret_is_bound_to_its_document_base_url_and_token_url(stack: Stack) -> None:
    api = {
        "document": "https://api.example.com/openapi.json",
        "base_url": "https://api.example.com/v1",
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": "https://auth.example.com/token",
            "client_id": "bastion",
            "client_secret": "client-secret-of-the-owner-0123",
        },
    }
    async with stack.client(stack.owner) as owner, stack.client(stack.operator) as operator:
        made = await owner.post("/servers", json={"name": "rest", "config": {"openapi": api, "disabled": True}})
        assert made.status_code == 201, made.text
        masked = made.json()["config"]["openapi"]
        assert masked["auth"]["client_secret"] == "***"
        for moved in (
            {"document": "https://evil.example/openapi.json"},
            {"base_url": "https://evil.example/v1"},
            {"auth": {**masked["auth"], "token_url": "https://evil.example/token"}},
        ):
            answer = await operator.put("/servers/rest", json={"config": {"openapi": {**masked, **moved}}})
            assert answer.status_code == 422 and answer.json()["error"] == "secret_unbound", answer.text
            assert "openapi.auth.client_secret" in answer.json()["message"]
            assert "client-secret-of-the-owner" not in answer.text
        same = await operator.put("/servers/rest", json={"config": {"openapi": masked, "disabled": True}})
        assert same.status_code == 200, same.text


async def test_a_provider_key_is_bound_to_its_base_url_and_an_env_variable_is_the_owners(stack: Stack) -> None:
    base = {"base_url": "https://api.openai.com/v1", "models": ["gpt-bound"]}
    async with stack.client(stack.owner) as owner, stack.client(stack.operator) as operator, recording() as ear:
        made = await owner.post("/llm-providers", json={"name": "openai", "config": {**base, "api_key": PROVIDER_KEY}})
        assert made.status_code == 201, made.text
        moved = {**base, "base_url": ear.url("v1"), "api_key": "***"}
        unbound(await operator.put("/llm-providers/openai", json={"config": moved}), "api_key")
        imported = yaml.safe_dump({"llm": {"providers": {"openai": moved}}})
        unbound(await operator.post("/config/apply", json={"yaml": imported}), "api_key")
        kept = await operator.put("/llm-providers/openai", json={"config": {**base, "api_key": "***", "retries": 1}})
        assert kept.status_code == 200, kept.text

        # a variable of the executors' environment, sent to a URL the operator picks: the owner's alone
        env = {**base, "models": ["gpt-env"], "api_key_env": "BASTION_SECRETS_KEY"}
        refused = await operator.post("/llm-providers", json={"name": "stolen", "config": env})
        assert refused.status_code == 403 and refused.json()["permission"] == "servers:command", refused.text
        assert "'api_key_env'" in refused.json()["message"]
        imported = yaml.safe_dump({"llm": {"providers": {"stolen": env}}})
        planned = await operator.post("/config/plan", json={"yaml": imported})
        assert planned.json()["providers_need_command"] == {"stolen": ["api_key_env", "base_url"]}, planned.text
        assert (await operator.post("/config/apply", json={"yaml": imported})).status_code == 403
        assert (await owner.post("/llm-providers", json={"name": "envkey", "config": env})).status_code == 201
        elsewhere = {**env, "base_url": ear.url("v1")}
        refused = await operator.put("/llm-providers/envkey", json={"config": elsewhere})
        assert refused.status_code == 403 and "'base_url'" in refused.json()["message"], refused.text
        priced = await operator.put("/llm-providers/envkey", json={"config": {**env, "retries": 0}})
        assert priced.status_code == 200, priced.text  # the rest of a provider stays an operator's
        assert ear.heard == []


async def test_the_console_test_reaches_no_address_an_owner_did_not_allow(stack: Stack) -> None:
    async with stack.client(stack.owner) as owner, stack.client(stack.operator) as operator, recording() as ear:
        entries = [
            {"url": url}
            for url in (
                ear.url(),
                f"{stack.url}/servers",
                "http://169.254.169.254/latest/meta-data/",
                "http://[::1]:9/",
            )
        ]
        for entry in [*entries, {"url": ear.url(), "type": "sse"}]:
            answer = await operator.post("/console/servers/test", json={"name": "probe", "config": entry})
            assert answer.status_code == 200 and not answer.json()["ok"], answer.text
            assert "refused to connect" in answer.json()["error"], answer.json()
        assert ear.heard == []
        allowing = {"url": ear.url(), "allow_private_hosts": ["127.0.0.1"]}
        refused = await operator.post("/console/servers/test", json={"name": "probe", "config": allowing})
        assert refused.status_code == 403 and refused.json()["permission"] == "servers:command"
        allowed = await owner.post("/console/servers/test", json={"name": "probe", "config": allowing})
        assert allowed.status_code == 200 and not allowed.json()["ok"]
        assert ear.heard and ear.heard[0].startswith(b"POST /mcp")  # the owner's allowance lets it through


async def test_nothing_from_the_api_is_expanded_from_the_admin_environment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEAK_VAR, ENV_SECRET)  # the admin service runs in this process: its environment
    leaky = {
        "mcpServers": {
            "leak": {"url": "https://example.com/mcp", "allow_private_hosts": [f"${{{LEAK_VAR}}}"]},
            "shown": {"url": "https://example.com/mcp", "tools": [f"${{{LEAK_VAR}}}"], "disabled": True},
        }
    }
    async with stack.client(stack.viewer) as viewer, stack.client(stack.operator) as operator:
        refused = await viewer.post("/config/plan", json={"yaml": yaml.safe_dump(leaky)})
        assert refused.status_code == 403 and ENV_SECRET not in refused.text  # permission first
        for route in ("/config/plan", "/config/apply"):
            answer = await operator.post(route, json={"yaml": yaml.safe_dump(leaky)})
            assert answer.status_code == 422 and ENV_SECRET not in answer.text, answer.text
            assert "is a ${VAR}" in answer.json()["message"]
        assert (await operator.get("/servers/shown")).status_code == 404
        keyed = {"keys": [{"name": "from-env", "key_env": LEAK_VAR, "tools": []}]}
        async with stack.client(stack.owner) as owner:
            answer = await owner.post("/config/plan", json={"yaml": yaml.safe_dump(keyed)})
            assert answer.status_code == 422 and "key_env" in answer.json()["message"], answer.text


SECRETISH = "sk-proj-refused-value-0123456789abcdef"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/servers", {"name": "v1", "config": {"url": SECRETISH}}),
        ("/servers", {"name": "v2", "config": {"url": f"{SECRETISH}://x"}}),
        ("/servers", {"name": "v3", "config": {"url": "https://x.example", "allow_private_hosts": [f"a/{SECRETISH}"]}}),
        ("/servers", {"name": "v4", "config": {"command": "x", "sandbox": {"write": [f"\x00{SECRETISH}"]}}}),
        ("/servers", {"name": "v5", "config": {"openapi": {"document": "d", "auth": {"type": SECRETISH}}}}),
        ("/servers", {"name": "v6", "config": {"openapi": {"document": "d", "base_url": SECRETISH}}}),
        ("/servers", {"name": "v7", "config": {"url": "https://x.example", "type": SECRETISH}}),
        ("/servers", {"name": "v8", "config": {"url": "https://x.example", "timeout": SECRETISH}}),
        ("/servers", {"name": "v9", "config": {"url": "https://x.example", "pinning": SECRETISH}}),
        ("/llm-providers", {"name": "p1", "config": {"base_url": SECRETISH, "models": ["m"]}}),
        ("/llm-providers", {"name": "p2", "config": {"base_url": "https://x", "api_key_env": SECRETISH, "models": []}}),
        ("/keys", {"name": "k1", "grants": [SECRETISH]}),
        ("/groups", {"id": "g1", "tools": [SECRETISH]}),
        ("/config/plan", {"yaml": yaml.safe_dump({"mcpServers": {"a": {"url": SECRETISH}}})}),
        ("/config/plan", {"yaml": yaml.safe_dump({"registries": {"r": SECRETISH}, "groups": [{"id": "g"}]})}),
        ("/config/plan", {"yaml": yaml.safe_dump({"keys": [{"name": "k", "key": "x", "tools": [SECRETISH]}]})}),
        ("/config/plan", {"yaml": yaml.safe_dump({"mcpServers": {"a/" + SECRETISH: {"url": "https://x"}}})}),
        (
            "/config/plan",
            {"yaml": yaml.safe_dump({"keys": [{"name": "k", "key_sha256": "0" * 64, "team": "nowhere-" + SECRETISH}]})},
        ),
    ],
)
async def test_no_validation_message_repeats_the_value_it_refused(
    stack: Stack, route: str, body: dict[str, object]
) -> None:
    async with stack.client(stack.owner) as owner:
        answer = await owner.post(route, json=body)
    assert answer.status_code == 422, answer.text
    assert SECRETISH not in answer.text, answer.text


async def test_a_credential_exchanged_for_tokens_is_bound_to_its_token_endpoint(stack: Stack) -> None:
    """A service account's key (or an Entra client secret) goes to the token endpoint, not the provider:
    moving `token_url` is moving the secret."""
    base = {
        "kind": "vertex",
        "project": "my-project",
        "location": "us-central1",
        "vertex_auth": "service-account",
        "models": ["gemini-bound"],
    }
    async with stack.client(stack.owner) as owner, stack.client(stack.operator) as operator, recording() as ear:
        made = await owner.post("/llm-providers", json={"name": "vertex", "config": {**base, "api_key": PROVIDER_KEY}})
        assert made.status_code == 201, made.text
        moved = {**base, "token_url": ear.url("token"), "api_key": "***"}
        unbound(await operator.put("/llm-providers/vertex", json={"config": moved}), "api_key")
        kept = await operator.put("/llm-providers/vertex", json={"config": {**base, "api_key": "***", "retries": 1}})
        assert kept.status_code == 200, kept.text

        env = {**base, "models": ["gemini-env"], "api_key_env": "GOOGLE_KEY_JSON"}
        assert (await owner.post("/llm-providers", json={"name": "vertex-env", "config": env})).status_code == 201
        elsewhere = {**env, "token_url": ear.url("token")}
        refused = await operator.put("/llm-providers/vertex-env", json={"config": elsewhere})
        assert refused.status_code == 403 and "'token_url'" in refused.json()["message"], refused.text
        assert ear.heard == []
