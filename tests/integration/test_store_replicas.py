"""Replication as settings: every stream, KV bucket and object store gets
`BASTION_NATS_REPLICAS` replicas when its owner creates it; a start raises an existing store with
fewer to that count and never lowers one (the audit streams used to be re-declared at every start
with the default of one replica); a count the servers cannot honour fails the start, saying so.

Real nats-servers: one, and three clustered on loopback (`cli.nats_cluster`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from cli.nats_cluster import EmbeddedNatsCluster
from libs.common.bus.permissions import AUDIT, OWNERS, ROLES
from libs.common.bus.stores import STORES, StoreError, declare, declare_owned, owned_by
from libs.common.contracts import subjects
from libs.common.settings import AuditSettings, StoreSettings
from services.audit.service import AuditService
from tests.support.cluster_ready import places
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


async def _replicas(js: nats.js.JetStreamContext) -> dict[str, int]:
    return {stream: (await js.stream_info(stream)).config.num_replicas or 1 for stream in OWNERS}


def test_every_owned_store_has_a_configuration_and_every_configured_one_an_owner() -> None:
    assert set(STORES) == set(OWNERS)
    buckets = {getattr(subjects, n) for n in dir(subjects) if n.startswith("KV_") and n != "KV_ROOT"}
    streams = {subjects.kv_stream(b) for b in buckets} | {subjects.obj_stream(subjects.OBJ_BLOBS)}
    streams |= {subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM}
    assert streams == set(OWNERS), "a store without an owner (permissions.OWNERS) or config (stores.STORES)"
    assert sorted(stream for role in ROLES for stream in owned_by(role)) == sorted(OWNERS)


async def test_an_owner_applies_its_limits_to_a_store_it_finds(nats_url: str) -> None:
    """The audit stream made with the defaults, then its owner started with other limits: the
    stream takes them (settings are the source of truth for limits)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        first = await declare(js, subjects.AUDIT_STREAM, StoreSettings())
        assert first.max_age == 7 * 24 * 3600 and first.max_bytes == -1 and first.num_replicas == 1
        tighter = StoreSettings(audit_stream_max_age=3600, audit_stream_max_bytes=64 * 1024 * 1024)
        again = await declare(js, subjects.AUDIT_STREAM, tighter)
        assert again.max_age == 3600 and again.max_bytes == 64 * 1024 * 1024
        blobs = await declare(js, subjects.obj_stream(subjects.OBJ_BLOBS), StoreSettings(blob_ttl=60))
        assert blobs.max_age == 60 and blobs.max_bytes == 4 * 1024**3
    finally:
        await nc.close()


async def test_three_replicas_on_one_server_fail_the_start_and_change_nothing(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await declare_owned(js, AUDIT, StoreSettings())
        with pytest.raises(StoreError, match=r"BASTION_NATS_REPLICAS=3 needs a NATS cluster") as raised:
            await declare_owned(js, AUDIT, StoreSettings(nats_replicas=3))
        assert subjects.AUDIT_STREAM in str(raised.value)
        assert (await js.stream_info(subjects.AUDIT_STREAM)).config.num_replicas == 1
        with pytest.raises(StoreError, match="create stream KV_bastion_catalog"):  # a new store likewise
            await declare(js, subjects.kv_stream(subjects.KV_CATALOG), StoreSettings(nats_replicas=3))
    finally:
        await nc.close()


async def test_on_a_cluster_a_start_raises_replicas_and_never_lowers_them(tmp_path: Path) -> None:
    """Every owner's stores made with one replica, raised to three by starting the owners with
    BASTION_NATS_REPLICAS=3 (the documented path), then kept at three by starts with the default of
    one: by each owner's declaration, and by the real audit service, whose start re-declared the
    audit streams with one replica before."""
    cluster = await asyncio.to_thread(EmbeddedNatsCluster(tmp_path / "cluster").start)
    try:
        urls = cluster.url
        nc = await nats.connect(urls.split(","))
        js = nc.jetstream()
        try:
            await poll_until(lambda: places(js, 3), "the cluster to place three replicas", every=0.2)
            for role in ROLES:
                await declare_owned(js, role, StoreSettings())
            assert set((await _replicas(js)).values()) == {1}

            for role in ROLES:
                await declare_owned(js, role, StoreSettings(nats_replicas=3))
            assert set((await _replicas(js)).values()) == {3}

            async def two_followers() -> bool:  # the leader and two more servers hold it
                cluster = (await js.stream_info(subjects.AUDIT_STREAM)).cluster
                return cluster is not None and len(cluster.replicas or []) == 2

            await poll_until(two_followers, "two followers of the audit stream's leader", every=0.2)

            for role in ROLES:
                await declare_owned(js, role, StoreSettings())
            audit = AuditService(AuditSettings(nats_url=urls, clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}"))
            await audit.start()
            await audit.stop()
            assert set((await _replicas(js)).values()) == {3}, "a start with the default lowered a store"
        finally:
            await nc.close()
    finally:
        await asyncio.to_thread(cluster.stop)
