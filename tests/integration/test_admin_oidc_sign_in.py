"""A person signs in to the admin service through an external OpenID provider (issue 26 item 2): the
admin service's `/login` sends the browser to the oauth service, whose "Sign in with Test IdP" goes to
the real npm `oidc-provider`; the provider's user claim names a Bastion user, and the admin session
is that of the person principal bound to that user (`user_id`), with that principal's roles."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from cli.stack import free_port
from libs.common.messages import AuditEvent
from libs.common.sealing import new_key
from tests.support.audit_rows import audit_rows_when
from tests.support.gateway import running_gateway
from tests.support.oidc_idp import (
    CLIENT_ID,
    CLIENT_SECRET,
    federation_options,
    running_oidc_provider,
    sign_in_through_bastion,
)

pytestmark = pytest.mark.integration

CSRF = {"X-Bastion-CSRF": "1"}
PERSON = "alice@example.com"


async def _sign_in(admin: str, public: str, login: str) -> tuple[httpx2.AsyncClient, httpx2.Response]:
    """`/login` at the admin service, the provider's forms as `login`, and back: the browser (its
    cookies) and the last answer, the admin service's, or the oauth service's when it refuses first."""
    browser = httpx2.AsyncClient(timeout=30, follow_redirects=False)
    started = await browser.get(f"{admin}/login", params={"next": "/dashboard"})
    assert started.status_code == 302, started.text
    authorize = started.headers["location"]
    assert authorize.startswith(f"{public}/oauth/authorize?"), authorize
    at_bastion = await sign_in_through_bastion(browser, authorize, login, "Test IdP")
    assert at_bastion.startswith(f"{public}/oauth/federated/callback?"), at_bastion
    federated = await browser.get(at_bastion)
    if federated.status_code != 302:
        return browser, federated
    back = federated.headers["location"]
    assert back.startswith(f"{admin}/login/callback?"), back
    return browser, await browser.get(back)


async def test_a_person_signs_in_to_the_admin_service_through_an_external_openid_provider(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    # the provider's `preferred_username` (Bastion's default user claim) is the login: `alice` -> user alice
    config = {"mcpServers": {}, "users": [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]}
    with running_oidc_provider(CLIENT_ID, CLIENT_SECRET, f"{public}/oauth/federated/callback") as issuer:
        options = federation_options(issuer)
        async with running_gateway(
            nats_url,
            redis_url,
            tmp_path,
            config,
            oauth=True,
            oauth_options=options,
            admin=True,
            secrets_key=new_key(),
            port=port,
            public_url=public,
        ) as gateway:
            assert gateway.admin is not None
            admin = gateway.admin.url
            async with httpx2.AsyncClient(
                base_url=gateway.admin_api, timeout=20, headers=gateway.admin_headers
            ) as owner:
                # alice has no password in Bastion: the provider is her only way in
                person = {"name": PERSON, "kind": "person", "user_id": "alice", "roles": [{"role": "viewer"}]}
                assert (await owner.post("/principals", json=person)).status_code == 201

                browser, signed_in = await _sign_in(admin, public, "alice")
                try:
                    assert signed_in.status_code == 302 and signed_in.headers["location"] == "/dashboard"
                    assert "HttpOnly" in signed_in.headers["set-cookie"]
                    me = (await browser.get(f"{admin}/admin/v1/me")).json()
                    assert (me["principal"], me["via"], me["kind"]) == (PERSON, "session", "person")
                    assert (await browser.get(f"{admin}/admin/v1/servers")).status_code == 200  # a viewer reads
                    group = {"id": "reviewers"}
                    refused = await browser.post(f"{admin}/admin/v1/groups", json=group, headers=CSRF)
                    assert refused.status_code == 403 and refused.json()["permission"] == "groups:write"

                    # the session carries the principal, not a snapshot of its roles: promoted, she may write
                    promoted = await owner.patch(f"/principals/{PERSON}", json={"roles": [{"role": "operator"}]})
                    assert promoted.status_code == 200, promoted.text
                    made = await browser.post(f"{admin}/admin/v1/groups", json=group, headers=CSRF)
                    assert made.status_code == 201, made.text
                finally:
                    await browser.aclose()

            # a Bastion user the provider vouches for, but no admin principal: no session
            browser, refused = await _sign_in(admin, public, "bob")
            await browser.aclose()
            assert refused.status_code == 403 and "no admin principal" in refused.text
            assert "set-cookie" not in refused.headers
            # someone the provider knows and Bastion does not: the oauth service stops it before the admin service
            browser, stranger = await _sign_in(admin, public, "mallory")
            await browser.aclose()
            assert stranger.status_code == 403 and "no Bastion user matches" in stranger.text

            def by_alice(rows: list[AuditEvent]) -> bool:
                return {"session.login", "tool_group.create"} <= {r.action for r in rows if r.actor == PERSON}

            # admin events carry no key name: they are the rows under ""
            rows = await audit_rows_when(gateway.nats_url, "", by_alice)
    created = next(r for r in rows if r.action == "tool_group.create")
    assert (created.actor, created.actor_role, created.actor_address, created.target) == (
        PERSON,
        "operator",
        "127.0.0.1",
        "group.reviewers",
    )
    signed_in_row = next(r for r in rows if r.action == "session.login")
    assert (signed_in_row.actor, signed_in_row.actor_role) == (PERSON, "viewer")  # her role when she signed in
