"""The pure parts of OAuth for agents: redirect URI rules, password hashing, the HTTP-over-NATS
router, the 401 challenge, and how policy resolves a token's user."""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey

from libs.common.contracts.entities import ToolGroup, User
from libs.common.contracts.oauth import JWKS_KEY, AccessTokenKeys, HttpExchangeRequest, HttpExchangeResponse
from services.ingress.auth.access_tokens import AccessTokens, Authenticator
from services.ingress.auth.keys import KeyDirectory
from services.oauth.agents.password_hashing import hash_password, verify_password
from services.oauth.agents.redirect_uris import redirect_uri_problem
from services.oauth.http import HttpError, Router, form_of
from services.policy.view import PolicyView

pytestmark = pytest.mark.unit

BASE = "https://gw.example"


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/callback",
        "http://127.0.0.1:4711/cb",
        "http://localhost/cb",
        "http://[::1]:8080/cb",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
    ],
)
def test_redirect_uris_that_may_be_registered(uri: str) -> None:
    assert redirect_uri_problem(uri) is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example/cb",  # plain http off loopback
        "http://127.0.0.1.evil.example/cb",
        "https://app.example/cb#fragment",
        "javascript:alert(1)",
        "data:text/html,hi",
        "/relative/cb",
        "https:///no-host",
        "https://app.example/" + "x" * 2000,
    ],
)
def test_redirect_uris_that_are_refused(uri: str) -> None:
    assert redirect_uri_problem(uri) is not None


def test_passwords_hash_with_salt_and_verify_in_constant_form() -> None:
    first, second = hash_password("long enough secret"), hash_password("long enough secret")
    assert first != second and first.startswith("scrypt$") and "long enough" not in first
    assert verify_password("long enough secret", first) and verify_password("long enough secret", second)
    assert not verify_password("long enough secreT", first)
    assert not verify_password("long enough secret", "not-a-hash")
    assert not verify_password("x" * 2000, first)
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")


def _request(method: str, path: str, body: str = "", content_type: str = "") -> HttpExchangeRequest:
    headers = {"content-type": content_type} if content_type else {}
    return HttpExchangeRequest(method=method, path=path, body=body, headers=headers, base_url=BASE)


async def test_router_prefers_exact_routes_then_the_longest_prefix_and_never_leaks_failures() -> None:
    async def answer(name: str) -> HttpExchangeResponse:
        return HttpExchangeResponse(status=200, body=name)

    async def exact(_r: HttpExchangeRequest) -> HttpExchangeResponse:
        return await answer("exact")

    async def short(_r: HttpExchangeRequest) -> HttpExchangeResponse:
        return await answer("short")

    async def long(_r: HttpExchangeRequest) -> HttpExchangeResponse:
        return await answer("long")

    async def broken(_r: HttpExchangeRequest) -> HttpExchangeResponse:
        raise RuntimeError("secret detail")

    async def refusing(_r: HttpExchangeRequest) -> HttpExchangeResponse:
        raise HttpError(400, "invalid_grant", "nope")

    router = Router.empty()
    router.add("GET", "/.well-known/x", exact)
    router.add("GET", "/.well-known/", short, prefix=True)
    router.add("GET", "/.well-known/x/", long, prefix=True)
    router.add("POST", "/broken", broken)
    router.add("POST", "/refusing", refusing)
    with pytest.raises(ValueError, match="twice"):
        router.add("POST", "/broken", broken)
    assert (await router.dispatch(_request("GET", "/.well-known/x"))).body == "exact"
    assert (await router.dispatch(_request("GET", "/.well-known/x/mcp"))).body == "long"
    assert (await router.dispatch(_request("GET", "/.well-known/y"))).body == "short"
    assert (await router.dispatch(_request("GET", "/nothing"))).status == 404
    assert (await router.dispatch(_request("GET", "/broken"))).status == 405
    failed = await router.dispatch(_request("POST", "/broken"))
    assert failed.status == 500 and "secret detail" not in failed.body
    refused = await router.dispatch(_request("POST", "/refusing"))
    assert refused.status == 400 and '"error":"invalid_grant"' in refused.body
    assert ("cache-control", "no-store") in refused.headers


def test_forms_must_be_urlencoded_without_repeated_parameters() -> None:
    form = "application/x-www-form-urlencoded"
    assert form_of(_request("POST", "/t", "a=1&b=", form)) == {"a": "1", "b": ""}
    with pytest.raises(HttpError, match="repeated"):
        form_of(_request("POST", "/t", "a=1&a=2", form))
    with pytest.raises(HttpError, match="x-www-form-urlencoded"):
        form_of(_request("POST", "/t", '{"a": 1}', "application/json"))


def _offering_oauth() -> AccessTokens:
    """Access tokens as ingress holds them once the oauth service has published its signing key."""
    tokens = AccessTokens()
    public = ECKey.generate_key("P-256").as_dict(private=False)
    tokens.put_keys(JWKS_KEY, AccessTokenKeys(keys=[{**public, "kid": "k1"}]).model_dump_json().encode())
    return tokens


def test_the_401_challenge_points_at_protected_resource_metadata() -> None:
    auth = Authenticator(KeyDirectory(), _offering_oauth(), lambda: BASE)
    metadata = f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"'
    missing = auth.authenticate(None)
    assert not hasattr(missing, "key_id") and missing.challenge == f"Bearer {metadata}"  # type: ignore[union-attr]
    for credential in ("Bearer bk_unknown_key", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"):
        refused = auth.authenticate(credential)
        challenge = refused.challenge  # type: ignore[union-attr]
        assert challenge.startswith('Bearer error="invalid_token", error_description="')
        assert challenge.endswith(metadata)


def test_without_oauth_no_401_sends_the_agent_to_log_in() -> None:
    """No signing key published (no oauth service): a client told where to log in would start a
    login nobody can complete, so the challenge names no metadata, and says what was wrong."""
    auth = Authenticator(KeyDirectory(), AccessTokens(), lambda: BASE)
    missing = auth.authenticate(None)
    assert missing.challenge == 'Bearer realm="bastion"'  # type: ignore[union-attr]
    refused = auth.authenticate("Bearer bk_unknown_key")
    description = "invalid key: this is not a Bastion virtual key of this gateway"
    assert refused.challenge == f'Bearer error="invalid_token", error_description="{description}"'  # type: ignore[union-attr]


def test_a_token_user_is_resolved_by_policy_like_a_key_bound_to_that_user() -> None:
    view = PolicyView()
    view.put_entity("group.echoers", ToolGroup(id="echoers", tools=["echo/*"]).model_dump_json().encode())
    view.put_entity("user.alice", User(id="alice", name="Alice", groups=["echoers"]).model_dump_json().encode())
    alice = view.compiled("user:alice")
    assert alice is not None and alice.user is not None and alice.user.id == "alice"
    assert alice.grants.allows("echo", "echo") and not alice.grants.allows("notes", "list_notes")
    assert view.compiled("user:mallory") is None  # a token for a deleted user grants nothing
    assert view.compiled("alice") is None  # only the token prefix makes a user a caller
