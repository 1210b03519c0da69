"""A KV bucket is created and configured by its owner alone (`libs.common.bus.stores`), whenever it starts.

The revocation list is read by ingress (a watch) and written by the oauth service, its owner; ingress
usually starts first. Its entries must still expire (`REVOCATION_TTL`, longer than any access token),
and a bucket an older release created without a TTL is brought to it by its owner when that starts.
Real nats-server, the real watch ingress runs, the real oauth service.
"""

from __future__ import annotations

import pytest
from nats.js.api import StorageType
from nats.js.errors import BucketNotFoundError

from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.oauth import REVOCATION_TTL
from libs.common.runtime.sealing import new_key
from libs.common.settings import OAuthSettings
from services.oauth.service import OAuthService
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


async def test_a_reader_that_starts_first_waits_for_the_owner_and_then_sees_its_entries(nats_url: str) -> None:
    """Ingress watches the revocation list the oauth service owns, and usually starts first: its
    view is complete (empty) at once, it creates nothing, and the owner's entries reach it once the
    owner has created the bucket, with its TTL."""
    nc = await connect(nats_url, "test-reader")
    seen: dict[str, bytes] = {}
    try:
        watch = BucketWatch(  # as ingress watches it
            nc, subjects.KV_OAUTH_REVOKED, lambda key, value, _revision: seen.update({key: value}), seen.pop
        )
        await watch.start()
        try:
            with pytest.raises(BucketNotFoundError):
                await nc.jetstream().key_value(subjects.KV_OAUTH_REVOKED)  # the reader created nothing
            oauth = OAuthService(OAuthSettings(nats_url=nats_url, secrets_key=new_key()))
            await oauth.start()
            try:
                revoked = await nc.jetstream().key_value(subjects.KV_OAUTH_REVOKED)
                assert (await revoked.status()).ttl == REVOCATION_TTL
                await revoked.put("jti-1", b"{}")
                await poll_until(lambda: "jti-1" in seen, "the owner's entry in the reader's view")
            finally:
                await oauth.stop()
        finally:
            await watch.stop()
    finally:
        await nc.close()


async def test_the_writer_brings_an_older_bucket_without_a_ttl_to_it(nats_url: str) -> None:
    nc = await connect(nats_url, "test-older-release")
    js = nc.jetstream()
    try:
        await js.create_key_value(bucket=subjects.KV_OAUTH_REVOKED, history=1, storage=StorageType.FILE)  # no TTL
        oauth = OAuthService(OAuthSettings(nats_url=nats_url, secrets_key=new_key()))
        await oauth.start()
        try:
            revoked = await (await js.key_value(subjects.KV_OAUTH_REVOKED)).status()
            assert revoked.ttl == REVOCATION_TTL
        finally:
            await oauth.stop()
    finally:
        await nc.close()
