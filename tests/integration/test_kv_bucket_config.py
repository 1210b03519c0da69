"""A KV bucket is configured the same whichever service creates it first (`libs.common.nats.BUCKET_TTL`).

The revocation list is read by ingress (a watch) and written by the oauth service; ingress usually
starts first. Its entries must still expire (`REVOCATION_TTL`, longer than any access token), and a
bucket an older release created without a TTL is brought to it by its writer when that starts.
Real nats-server, the real watch ingress runs, the real oauth service.
"""

from __future__ import annotations

import pytest
from nats.js.api import StorageType

from libs.common import subjects
from libs.common.kvwatch import BucketWatch
from libs.common.nats import connect
from libs.common.oauth import REVOCATION_TTL
from libs.common.sealing import new_key
from libs.common.settings import OAuthSettings
from services.oauth.service import OAuthService

pytestmark = pytest.mark.integration


def _ignore(*_: object) -> None:
    return None


async def test_a_reader_that_starts_first_creates_the_revocation_list_with_its_ttl(nats_url: str) -> None:
    nc = await connect(nats_url, "test-reader")
    try:
        watch = BucketWatch(nc, subjects.KV_OAUTH_REVOKED, _ignore, _ignore)  # as ingress watches it
        await watch.start()
        await watch.stop()
        status = await (await nc.jetstream().key_value(subjects.KV_OAUTH_REVOKED)).status()
        assert status.ttl == REVOCATION_TTL
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
