"""Named people, not one token, against a real admin service on a real NATS: the
bootstrap token makes the first owner and nothing else; API tokens are stored as their sha256 only,
shown once, expire, rotate and are revoked; a disabled principal is refused; the last owner stays;
and a person signs in through the oauth service's own login form into a browser session."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import nats
import pytest
from nats.aio.msg import Msg

from libs.common.bus.nats import kv_keys
from libs.common.contracts import subjects
from libs.common.contracts.admin_principals import token_digest
from libs.common.contracts.messages import AuditEvent, audit_events
from libs.common.settings import AdminSettings
from services.admin.api.access_store import AccessStore, PendingLogin, Session
from services.admin.api.tables import Buckets
from services.admin.service import AdminService
from tests.support.admin_api import BOOTSTRAP, base_url, principal_token
from tests.support.admin_sign_in import sign_in_to_admin, with_password
from tests.support.gateway import running_oauth_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def bare(nats_url: str) -> AsyncIterator[AdminService]:
    """An admin service with a bootstrap token and no principal yet."""
    service = AdminService(AdminSettings(nats_url=nats_url, admin_port=0, admin_bootstrap_token=BOOTSTRAP))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def events(nats_url: str) -> AsyncIterator[list[AuditEvent]]:
    client = await nats.connect(nats_url)
    seen: list[AuditEvent] = []

    async def on_message(msg: Msg) -> None:
        seen.extend(e for e in audit_events(msg.data) if e.kind == "admin")

    await client.subscribe(f"{subjects.AUDIT_EVENTS}.>", cb=on_message)
    # a stream takes the events, as the audit service's would: the publisher sends in order, so without
    # one its first event (now a refusal) would be retried ahead of every later one
    await client.jetstream().add_stream(name="TEST_AUDIT", subjects=[f"{subjects.AUDIT_EVENTS}.>"])
    await client.flush()
    yield seen
    await client.close()


async def test_the_bootstrap_token_makes_the_first_owner_and_nothing_else(
    bare: AdminService, events: list[AuditEvent]
) -> None:
    async with httpx.AsyncClient(base_url=base_url(bare), timeout=10, headers=bearer(BOOTSTRAP)) as boot:
        keys = await boot.get("/keys")
        assert keys.status_code == 403 and keys.json()["permission"] == "keys:read"
        viewer = {"name": "not-an-owner", "kind": "automation", "roles": [{"role": "viewer"}]}
        assert (await boot.post("/principals", json=viewer)).status_code == 403
        owner = {
            "name": "alice@example.com",
            "kind": "person",
            "roles": [{"role": "owner"}],
            "token": {"label": "laptop", "expires_in_days": 7},
        }
        made = await boot.post("/principals", json=owner)
        assert made.status_code == 201, made.text
        secret = made.json()["token"]["secret"]
        assert secret.startswith("bat_")
        assert made.json()["token"]["token"]["id"] == token_digest(secret)
        # spent: an owner exists
        again = await boot.post("/principals", json={**owner, "name": "mallory@example.com"})
        assert again.status_code == 401 and "spent" in again.json()["message"]
    async with httpx.AsyncClient(base_url=base_url(bare), timeout=10, headers=bearer(secret)) as alice:
        me = (await alice.get("/me")).json()
        assert (me["principal"], me["via"], me["kind"]) == ("alice@example.com", "token", "person")
        assert "principals:write" in me["permissions"]

    def made_by() -> set[tuple[str | None, str | None, str | None]]:
        return {(e.action, e.actor, e.actor_role) for e in events}

    # the bootstrap's one act is on record, and so are its two refusals (the publisher lingers a moment)
    wanted = {("principal.create", "bootstrap", "bootstrap"), ("api_token.create", "bootstrap", "bootstrap")}
    await poll_until(lambda: wanted <= made_by(), "the bootstrap's events")
    assert sorted(e.tool for e in events if e.action == "refused") == ["keys:read", "principals:write"]
    assert all(secret not in (e.after or "") for e in events)


async def test_without_a_bootstrap_setting_the_token_opens_nothing(nats_url: str) -> None:
    service = AdminService(AdminSettings(nats_url=nats_url, admin_port=0))
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=base_url(service), timeout=10, headers=bearer(BOOTSTRAP)) as http:
            owner = {"name": "eve", "kind": "automation", "roles": [{"role": "owner"}]}
            assert (await http.post("/principals", json=owner)).status_code == 401
    finally:
        await service.stop()


async def test_tokens_are_hashes_shown_once_and_expire_rotate_and_revoke(
    admin: AdminService, owner_token: str, nats_url: str
) -> None:
    ci = await principal_token(admin, owner_token, "ci-bot", {"role": "viewer"})
    async with httpx.AsyncClient(base_url=base_url(admin), timeout=10) as http:
        assert (await http.get("/keys", headers=bearer(ci))).status_code == 200
        listed = (await http.get("/principals/ci-bot/tokens", headers=bearer(owner_token))).json()
        assert [t["id"] for t in listed] == [token_digest(ci)] and ci not in str(listed)

        # only the sha256 is stored, anywhere in the bucket
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value(subjects.KV_ADMIN)
            stored = [bytes((await kv.get(key)).value or b"") for key in await kv_keys(kv)]
        finally:
            await nc.close()
        assert stored and not any(ci.encode() in value or owner_token.encode() in value for value in stored)

        # self-service rotation: the new one works, the old one is refused
        rotated = await http.post("/me/token/rotate", headers=bearer(ci))
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()["secret"]
        assert (await http.get("/keys", headers=bearer(ci))).status_code == 401
        assert (await http.get("/keys", headers=bearer(new))).status_code == 200

        # an owner rotates and revokes it
        token_id = token_digest(new)
        by_owner = await http.post(f"/principals/ci-bot/tokens/{token_id}/rotate", headers=bearer(owner_token))
        newer = by_owner.json()["secret"]
        assert (await http.get("/keys", headers=bearer(new))).status_code == 401
        revoked = await http.post(
            f"/principals/ci-bot/tokens/{token_digest(newer)}/revoke", headers=bearer(owner_token)
        )
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        refused = await http.get("/keys", headers=bearer(newer))
        assert refused.status_code == 401 and "revoked" in refused.json()["message"]

        # a token past its expiry is refused (written with an expiry in the past: no waiting here)
        nc = await nats.connect(nats_url)
        try:
            access = AccessStore(Buckets(nc.jetstream()))
            old, _ = await access.issue_token("ci-bot", "old", 1, "test")
            found = await access.tokens.get(token_digest(old))
            past = found.value.model_copy(update={"expires_at": time.time() - 1})
            await access.tokens.update(found.value.id, past, found.revision)
        finally:
            await nc.close()
        expired = await http.get("/keys", headers=bearer(old))
        assert expired.status_code == 401 and "expired" in expired.json()["message"]

        # a disabled principal is refused whatever token it holds
        fresh = (await http.post("/principals/ci-bot/tokens", json={"label": "f"}, headers=bearer(owner_token))).json()
        assert (await http.get("/keys", headers=bearer(fresh["secret"]))).status_code == 200
        patch = await http.patch("/principals/ci-bot", json={"disabled": True}, headers=bearer(owner_token))
        assert patch.status_code == 200
        assert (await http.get("/keys", headers=bearer(fresh["secret"]))).status_code == 401


async def test_the_last_owner_stays(admin: AdminService, owner_token: str) -> None:
    async with httpx.AsyncClient(base_url=base_url(admin), timeout=10, headers=bearer(owner_token)) as http:
        for method, body in (
            ("DELETE", None),
            ("PATCH", {"disabled": True}),
            ("PATCH", {"roles": [{"role": "viewer"}]}),
        ):
            refused = await http.request(method, "/principals/test-owner", json=body)
            assert refused.status_code == 409 and "last owner" in refused.text
        await principal_token(admin, owner_token, "second-owner", {"role": "owner"})
        assert (await http.patch("/principals/test-owner", json={"roles": [{"role": "viewer"}]})).status_code == 200
        assert (await http.get("/principals")).status_code == 403  # it demoted itself: now a viewer


async def test_a_person_signs_in_through_the_oauth_service(nats_url: str, redis_url: str, tmp_path: Path) -> None:
    """The built-in user store's login form, then a session cookie at the admin service; a change
    needs the CSRF header; a user who is no principal gets no session; signing out ends it."""
    config = {"mcpServers": {}, "users": [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]}
    async with running_oauth_gateway(nats_url, redis_url, tmp_path, config, admin=True) as (gateway, public):
        owner = bearer(gateway.admin_token)
        async with httpx.AsyncClient(base_url=gateway.admin_api, timeout=20, headers=owner) as http:
            for user in ("alice", "bob"):
                assert (
                    await http.put(f"/users/{user}/password", json={"password": f"{user}'s password!"})
                ).status_code == 204
            person = {"name": "alice@example.com", "kind": "person", "user_id": "alice", "roles": [{"role": "viewer"}]}
            assert (await http.post("/principals", json=person)).status_code == 201
        assert gateway.admin is not None
        admin_base = gateway.admin.url

        async def sign_in(user: str) -> httpx2.AsyncClient | httpx2.Response:
            browser, callback = await sign_in_to_admin(admin_base, public, with_password(user, f"{user}'s password!"))
            if callback.status_code != 302:
                await browser.aclose()
                return callback
            assert callback.headers["location"] == "/dashboard"
            cookie = callback.headers["set-cookie"]
            assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
            return browser

        browser = await sign_in("alice")
        assert isinstance(browser, httpx2.AsyncClient)
        try:
            me = (await browser.get("/admin/v1/me")).json()
            assert (me["principal"], me["via"]) == ("alice@example.com", "session")
            assert (await browser.get("/admin/v1/servers")).status_code == 200  # a viewer reads
            no_csrf = await browser.post("/admin/v1/groups", json={"id": "g"})
            assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf"
            with_csrf = await browser.post("/admin/v1/groups", json={"id": "g"}, headers={"X-Bastion-CSRF": "1"})
            assert with_csrf.status_code == 403 and with_csrf.json()["permission"] == "groups:write"  # a viewer
            assert (await browser.post("/logout", headers={"X-Bastion-CSRF": "1"})).status_code == 204
            assert (await browser.get("/admin/v1/me")).status_code == 401
        finally:
            await browser.aclose()

        refused = await sign_in("bob")  # a Bastion user, but no admin principal
        assert isinstance(refused, httpx2.Response) and refused.status_code == 403
        assert "no admin principal" in refused.text

        # a callback with a made-up state opens nothing
        async with httpx.AsyncClient(base_url=admin_base, timeout=10) as stranger:
            forged = await stranger.get("/login/callback", params={"code": "x", "state": "made-up"})
            assert forged.status_code == 403 and "set-cookie" not in forged.headers


async def test_expired_sessions_and_sign_ins_are_refused_and_swept(admin: AdminService, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        access = AccessStore(Buckets(nc.jetstream()))
        now = time.time()
        await access.sessions.create(token_digest("old-session"), Session(principal="test-owner", expires_at=now - 1))
        await access.sessions.create(token_digest("new-session"), Session(principal="test-owner", expires_at=now + 600))
        await access.logins.create(token_digest("old-state"), PendingLogin(verifier="v" * 43, expires_at=now - 1))
        for session, status in (("old-session", 401), ("new-session", 200)):
            cookies = {"bastion_admin_session": session}
            async with httpx.AsyncClient(base_url=base_url(admin), timeout=10, cookies=cookies) as http:
                answer = await http.get("/me")
            assert answer.status_code == status, answer.text
            assert status == 200 or "sign in again" in answer.json()["message"]
        assert await access.sweep() == 2
        assert await access.sessions.find(token_digest("new-session")) is not None
        assert await access.sessions.find(token_digest("old-session")) is None
    finally:
        await nc.close()
