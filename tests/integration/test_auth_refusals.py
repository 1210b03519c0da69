"""Requests refused for their credential on `/mcp`, `/v1` and the admin API are counted in
`bastion_auth_refused_total` and audited as aggregated `auth.refused` rows (`libs.common.runtime.refusals`),
read back from the audit store and through analytics; the 401 answers stay as they were.

The whole gateway runs in-process on real NATS, Valkey and the chdb engine. Ingress's window is an
hour in the tests that count rows exactly: the test ends it (`RefusalLog.flush`, what the window's
timer calls), so every refusal sent lands in one window whatever the machine's load. The admin
service keeps a short window and its own timer ends it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsQuery
from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.refusals import AUTH_REFUSED_KIND, OVERFLOW, credential_label
from libs.common.runtime.sealing import Sealer, new_key
from services.admin.api.auth import SESSION_COOKIE
from tests.support.audit_rows import kind_rows_when
from tests.support.gateway import ADMIN_KEY, Gateway, legacy_initialize, running_gateway
from tests.support.metrics import Series, moved, scrape
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

COUNTER = "bastion_auth_refused_total"
MCP_ACCEPT = {"accept": "application/json, text/event-stream"}
HOUR = 3600.0
DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
NO_SERVERS: dict[str, Any] = {"keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}]}
"""The bad-key tests' config: they only initialize, so no upstream is started."""


def _documented_query() -> str:
    """The "who is trying keys" query of docs/analytics.md#refused-credentials, as written there."""
    text = DOC.read_text()
    section = text[text.index("## Refused credentials") : text.index("## Tamper evidence")]
    found = re.search(r"```sql\n(.*?)```", section, re.S)
    assert found is not None, "docs/analytics.md: the refused credentials section lost its query"
    return found.group(1)


def _bad_key() -> str:
    return "bk_" + secrets.token_urlsafe(32)


def _no_secret_in(rows: list[AuditEvent], *secrets_sent: str) -> None:
    """Neither a presented secret nor any 12 characters of it appear anywhere in the rows."""
    text = "\n".join(row.model_dump_json() for row in rows)
    for secret in secrets_sent:
        assert secret not in text
        for start in range(len(secret) - 11):
            assert secret[start : start + 12] not in text, f"12 characters of a secret in a row: {secret[start:]}"


def _total(rows: list[AuditEvent], surface: str, credential: str) -> int:
    return sum(r.refusals or 0 for r in rows if r.name == surface and r.credential == credential)


def _totals_reach(expected: dict[tuple[str, str], int]) -> Callable[[list[AuditEvent]], bool]:
    return lambda rows: all(_total(rows, *bucket) >= n for bucket, n in expected.items())


async def _scrape(gateway: Gateway) -> Series:
    """Every in-process service shares one registry: the audit service's `/metrics` shows them all."""
    server = gateway.services[0].metrics_server
    assert server is not None
    return await scrape(server.url)


def _counted(before: Series, after: Series, expected: dict[tuple[str, str], int]) -> None:
    """How far the counter moved between two scrapes, per (surface, reason)."""
    moves = {
        (surface, reason): moved(before, after, COUNTER, surface=surface, reason=reason) for surface, reason in expected
    }
    assert moves == expected


def _end_ingress_window(gateway: Gateway) -> int:
    """End ingress's refusal window now (what its timer does); how many events it sent."""
    refusals = gateway.ingress.trail.refusals if gateway.ingress.trail is not None else None
    assert refusals is not None
    return refusals.flush()


async def _analytics(nats_url: str, sql: str) -> AnalyticsAnswer:
    nc = await connect(nats_url, "test-analytics")
    try:
        reply = await nc.request(subjects.ANALYTICS_QUERY, AnalyticsQuery(sql=sql).model_dump_json().encode(), 10)
    finally:
        await nc.close()
    answer = AnalyticsAnswer.model_validate_json(reply.data)
    assert answer.error is None, answer.error
    return answer


async def _mcp(http: httpx2.AsyncClient, gateway: Gateway, authorization: str | None) -> httpx2.Response:
    headers = MCP_ACCEPT | ({"authorization": authorization} if authorization else {})
    return await http.post(gateway.url, headers=headers, json=legacy_initialize())


async def test_bursts_of_bad_keys_on_mcp_and_v1_are_counted_and_audited_once_per_bucket(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(
        nats_url, redis_url, tmp_path, NO_SERVERS, metrics=True, auth_refusal_window=HOUR, auth_refusal_buckets=50
    ) as gateway:
        base = gateway.url.removesuffix("/mcp")
        on_mcp, on_v1 = _bad_key(), _bad_key()
        before = await _scrape(gateway)
        async with httpx2.AsyncClient(timeout=30) as http:
            for _ in range(7):
                answer = await _mcp(http, gateway, f"Bearer {on_mcp}")
                assert answer.status_code == 401 and answer.json()["error"]["data"]["kind"] == "invalid_key"
                assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
            for _ in range(3):
                answer = await _mcp(http, gateway, None)
                assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Bearer realm="bastion"'
            for _ in range(5):
                answer = await http.get(f"{base}/v1/models", headers={"authorization": f"Bearer {on_v1}"})
                assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_key"
            assert (await _mcp(http, gateway, f"Bearer {ADMIN_KEY}")).status_code == 200  # a good key: not counted
        after = await _scrape(gateway)
        _counted(
            before, after, {("mcp", "invalid"): 7, ("mcp", "missing"): 3, ("llm", "invalid"): 5, ("llm", "missing"): 0}
        )

        assert _end_ingress_window(gateway) == 3  # one event per bucket
        label_mcp, label_v1 = credential_label(on_mcp), credential_label(on_v1)
        expected = {("mcp", label_mcp): 7, ("mcp", "none"): 3, ("llm", label_v1): 5}
        rows = await kind_rows_when(nats_url, AUTH_REFUSED_KIND, _totals_reach(expected))
        assert len(rows) == 3
        by_bucket = {(r.name, r.credential): r for r in rows}
        for (surface, label), count in expected.items():
            row = by_bucket[(surface, label)]
            assert (row.refusals, row.actor_address, row.status) == (count, "127.0.0.1", "denied")
            assert row.error_kind == ("missing" if label == "none" else "invalid")
            assert row.first_seen is not None and row.last_seen is not None and row.first_seen <= row.last_seen
        # the label is the key's kind and the start of its would-be key id, as `bastion keys` shows ids
        assert label_mcp == "bk_ sha256:" + hashlib.sha256(on_mcp.encode()).hexdigest()[:12]
        _no_secret_in(rows, on_mcp, on_v1)

        answer = await _analytics(
            nats_url,
            "SELECT name, credential, error_kind, sum(refusals) AS n FROM bastion.audit_events "
            f"WHERE kind = '{AUTH_REFUSED_KIND}' GROUP BY name, credential, error_kind ORDER BY n DESC",
        )
        assert [tuple(row) for row in answer.rows] == [
            ("mcp", label_mcp, "invalid", 7),
            ("llm", label_v1, "invalid", 5),
            ("mcp", "none", "missing", 3),
        ]
        documented = await _analytics(nats_url, _documented_query())
        assert [row[:5] for row in documented.rows] == [
            ["127.0.0.1", "mcp", "invalid", 7, 1],
            ["127.0.0.1", "llm", "invalid", 5, 1],
            ["127.0.0.1", "mcp", "missing", 3, 1],
        ]


async def test_a_flood_of_distinct_keys_yields_at_most_the_bound_of_rows_in_a_window(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    bound, flood = 4, 40
    async with running_gateway(
        nats_url, redis_url, tmp_path, NO_SERVERS, auth_refusal_window=HOUR, auth_refusal_buckets=bound
    ) as gateway:
        keys = [_bad_key() for _ in range(flood)]
        async with httpx2.AsyncClient(timeout=30) as http:
            for key in keys:
                assert (await _mcp(http, gateway, f"Bearer {key}")).status_code == 401
        assert _end_ingress_window(gateway) == bound + 1
        rows = await kind_rows_when(
            nats_url, AUTH_REFUSED_KIND, lambda found: sum(r.refusals or 0 for r in found) >= flood
        )
    windows: dict[float, list[AuditEvent]] = defaultdict(list)
    for row in rows:
        windows[row.ts].append(row)
    assert len(windows) == 1 and len(rows) == bound + 1
    overflow = [r for r in rows if r.credential == OVERFLOW]
    assert len(overflow) == 1 and overflow[0].refusals == flood - bound and overflow[0].actor_address == OVERFLOW
    assert sorted(r.credential or "" for r in rows if r.credential != OVERFLOW) == sorted(
        credential_label(key) for key in keys[:bound]
    )
    assert sum(r.refusals or 0 for r in rows) == flood
    _no_secret_in(rows, *keys)


async def _gateway_signing_key(gateway: Gateway, secrets_key: str) -> ECKey:
    nc = await connect(gateway.nats_url, "test-signing-key")
    try:
        entry = await (await nc.jetstream().key_value(subjects.KV_OAUTH)).get("signing")
    finally:
        await nc.close()
    sealed = json.loads(entry.value)["private_jwk"]
    return ECKey.import_key(json.loads(Sealer(secrets_key).open_value(sealed)))


def _expired_token(gateway: Gateway, key: ECKey) -> str:
    base, now = gateway.url.removesuffix("/mcp"), int(time.time())
    claims = {"iss": base, "sub": "carol", "aud": gateway.url, "iat": now - 4000, "exp": now - 3600, "jti": "j1"}
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}, claims, key, algorithms=["ES256"])


async def test_a_revoked_key_and_an_expired_access_token_are_classified_as_such(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    revoked_secret = "bk_" + secrets.token_urlsafe(32)
    raw: dict[str, Any] = {"keys": [{"name": "leaver", "key": revoked_secret, "tools": ["*"]}]}
    secrets_key = new_key()
    async with running_gateway(
        nats_url,
        redis_url,
        tmp_path,
        raw,
        executor=False,
        oauth=True,
        admin=True,
        metrics=True,
        secrets_key=secrets_key,
        auth_refusal_window=HOUR,
    ) as gateway:
        key_id = hashlib.sha256(revoked_secret.encode()).hexdigest()
        async with httpx2.AsyncClient(timeout=30, headers=gateway.admin_headers) as admin:
            assert (await admin.post(f"{gateway.admin_api}/keys/{key_id}/revoke")).status_code == 200
        keys = gateway.ingress.keys
        await poll_until(lambda: (r := keys.record(key_id)) is not None and r.revoked, "the revocation in ingress")
        await poll_until(lambda: gateway.ingress.access_tokens.offered, "the oauth signing keys in ingress")
        expired = _expired_token(gateway, await _gateway_signing_key(gateway, secrets_key))
        before = await _scrape(gateway)
        async with httpx2.AsyncClient(timeout=30) as http:
            for _ in range(2):
                answer = await _mcp(http, gateway, f"Bearer {revoked_secret}")
                assert answer.status_code == 401 and answer.json()["error"]["data"]["kind"] == "revoked_key"
            for _ in range(3):
                answer = await _mcp(http, gateway, f"Bearer {expired}")
                assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]
                assert "resource_metadata=" in answer.headers["www-authenticate"]
            base = gateway.url.removesuffix("/mcp")
            answer = await http.get(f"{base}/v1/models", headers={"authorization": f"Bearer {expired}"})
            assert answer.status_code == 401
        after = await _scrape(gateway)
        _counted(
            before, after, {("mcp", "revoked"): 2, ("mcp", "expired"): 3, ("llm", "expired"): 1, ("mcp", "invalid"): 0}
        )

        _end_ingress_window(gateway)
        expected = {
            ("mcp", credential_label(revoked_secret)): 2,
            ("mcp", credential_label(expired)): 3,
            ("llm", credential_label(expired)): 1,
        }
        rows = await kind_rows_when(nats_url, AUTH_REFUSED_KIND, _totals_reach(expected))
        reasons = {(r.name, r.credential): (r.error_kind, r.refusals) for r in rows if r.name in ("mcp", "llm")}
        assert reasons == {
            ("mcp", credential_label(revoked_secret)): ("revoked", 2),
            ("mcp", credential_label(expired)): ("expired", 3),
            ("llm", credential_label(expired)): ("expired", 1),
        }
        assert credential_label(expired).startswith("jwt sha256:")
        _no_secret_in(rows, revoked_secret, expired)


async def test_bad_tokens_and_sessions_on_the_admin_api_are_counted_and_audited_by_its_window(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(
        nats_url,
        redis_url,
        tmp_path,
        executor=False,
        admin=True,
        metrics=True,
        admin_options={"auth_refusal_window": 0.2},
    ) as gateway:
        token, cookie = "bat_" + secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        before = await _scrape(gateway)
        async with httpx2.AsyncClient(timeout=30) as http:
            for _ in range(4):
                answer = await http.get(f"{gateway.admin_api}/keys", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 401 and answer.json()["error"] == "invalid_credentials"
                assert answer.headers["www-authenticate"] == 'Bearer realm="bastion-admin"'
            for _ in range(2):
                http.cookies.set(SESSION_COOKIE, cookie)
                answer = await http.get(f"{gateway.admin_api}/keys")
                assert answer.status_code == 401 and answer.json()["error"] == "session_expired"
            http.cookies.clear()
            assert (await http.get(f"{gateway.admin_api}/keys")).status_code == 401
            assert (await http.get(f"{gateway.admin_api}/keys", headers=gateway.admin_headers)).status_code == 200
        after = await _scrape(gateway)
        _counted(before, after, {("admin", "invalid"): 6, ("admin", "missing"): 1})

        expected = {
            ("admin", credential_label(token)): 4,
            ("admin", credential_label(cookie, "session")): 2,
            ("admin", "none"): 1,
        }
        rows = await kind_rows_when(nats_url, AUTH_REFUSED_KIND, _totals_reach(expected))
        assert {(r.credential, r.error_kind, r.actor_address) for r in rows} == {
            (credential_label(token), "invalid", "127.0.0.1"),
            (credential_label(cookie, "session"), "invalid", "127.0.0.1"),
            ("none", "missing", "127.0.0.1"),
        }
        assert {(surface, label): _total(rows, surface, label) for surface, label in expected} == expected
        assert credential_label(token).startswith("bat_ sha256:")
        _no_secret_in(rows, token, cookie, gateway.admin_token)
