"""A person signs in to the admin service through an external OpenID provider: the
admin service's `/login` sends the browser to the oauth service, whose "Sign in with Test IdP" goes to
the real npm `oidc-provider`; the provider's user claim names a Bastion user, and the admin session
is that of the person principal bound to that user (`user_id`), with that principal's roles."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from libs.common.contracts.messages import AuditEvent
from tests.support.admin_sign_in import sign_in_to_admin, with_openid_provider
from tests.support.audit_rows import audit_rows_when
from tests.support.oidc_idp import gateway_federated_to_provider

pytestmark = pytest.mark.integration

CSRF = {"X-Bastion-CSRF": "1"}
PERSON = "alice@example.com"


async def test_a_person_signs_in_to_the_admin_service_through_an_external_openid_provider(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    # the provider's `preferred_username` (Bastion's default user claim) is the login: `alice` -> user alice
    config = {"mcpServers": {}, "users": [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]}
    async with gateway_federated_to_provider(nats_url, redis_url, tmp_path, config, admin=True) as (gateway, public):
        assert gateway.admin is not None
        admin = gateway.admin.url
        async with httpx2.AsyncClient(base_url=gateway.admin_api, timeout=20, headers=gateway.admin_headers) as owner:
            # alice has no password in Bastion: the provider is her only way in
            person = {"name": PERSON, "kind": "person", "user_id": "alice", "roles": [{"role": "viewer"}]}
            assert (await owner.post("/principals", json=person)).status_code == 201

            browser, signed_in = await sign_in_to_admin(admin, public, with_openid_provider("alice"))
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
        browser, refused = await sign_in_to_admin(admin, public, with_openid_provider("bob"))
        await browser.aclose()
        assert refused.status_code == 403 and "no admin principal" in refused.text
        assert "set-cookie" not in refused.headers
        # someone the provider knows and Bastion does not: the oauth service stops it before the admin service
        browser, stranger = await sign_in_to_admin(admin, public, with_openid_provider("mallory"))
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
