"""OAuth service: Bastion's authorization server toward agents, and its client toward upstreams.

One dispatch table maps NATS subjects to handlers; every subject is served in the queue group
`oauth`, so replicas share the work. HTTP reaches the service through ingress as
`subjects.OAUTH_HTTP`, whose handler routes by path (`http.Router`). Each half of the service
(`agents`, ...) contributes its routes and handlers in `install()`; state lives only in KV, so any
replica answers any step of a flow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from pydantic import ValidationError

from libs.common.bus import permissions
from libs.common.bus.nats import connect_service, drain_or_close, kv_bucket, processed
from libs.common.bus.starting import patient_start, start_owning
from libs.common.contracts import subjects
from libs.common.contracts.oauth import HttpExchangeRequest
from libs.common.runtime import metrics, observability
from libs.common.runtime.probes import Probes
from libs.common.runtime.sealing import Sealer
from libs.common.settings import OAuthSettings

from . import agents, upstream
from .context import NatsHandler, OAuthContext
from .http import HttpError, Router

__all__ = ["OAuthService"]

log = logging.getLogger(__name__)


class OAuthService:
    def __init__(self, settings: OAuthSettings) -> None:
        self.settings = settings
        self.router = Router.empty()
        self.handlers: dict[str, NatsHandler] = {}
        self._nc: NATS | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.metrics_server: metrics.MetricsServer | None = None
        self.probes: Probes | None = None

    async def start(self) -> None:
        self.metrics_server = observability.start("oauth", self.settings)
        sealer = Sealer(self.settings.secrets_key)
        if not sealer.enabled:  # the signing key and upstream tokens are never kept in plain text
            raise ValueError("the oauth service needs BASTION_SECRETS_KEY (Fernet key(s), newest first)")
        self._nc = nc = await connect_service(
            self.settings, role=permissions.OAUTH, name=f"bastion-oauth{self.settings.instance}"
        )
        # its state, keys, revocations, upstream tokens
        self.probes = await start_owning("oauth", permissions.OAUTH, self.settings, nc)
        js = nc.jetstream()

        def bucket(name: str) -> Awaitable[KeyValue]:
            return patient_start(f"bucket {name}", lambda: kv_bucket(js, name))

        ctx = OAuthContext(
            settings=self.settings,
            nc=nc,
            state=await bucket(subjects.KV_OAUTH),
            registrations=await bucket(subjects.KV_OAUTH_REGISTRATIONS),
            public=await bucket(subjects.KV_OAUTH_PUBLIC),
            revoked=await bucket(subjects.KV_OAUTH_REVOKED),
            sealer=sealer,
        )
        self.handlers[subjects.OAUTH_HTTP] = self._http
        for part in (agents, upstream):
            for subject, handler in (await part.install(ctx, self.router)).items():
                if subject in self.handlers:
                    raise ValueError(f"two handlers for {subject}")
                self.handlers[subject] = handler
        for subject in self.handlers:
            await nc.subscribe(subject, queue=subjects.QUEUE_OAUTH, cb=self._on_message)
        await processed(nc)
        log.info("oauth service ready (%d routes)", len(self.router.exact) + len(self.router.prefixes))
        if self.probes is not None:
            self.probes.started("oauth")

    async def _on_message(self, msg: Msg) -> None:
        # each request runs on its own task: password hashing must not hold up the subscription
        task = asyncio.create_task(self._answer(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _answer(self, msg: Msg) -> None:
        handler = self.handlers[msg.subject]
        try:
            reply = await handler(msg.data)
        except Exception:
            log.exception("oauth handler for %s failed", msg.subject)
            return
        if msg.reply:
            await msg.respond(reply)

    async def _http(self, payload: bytes) -> bytes:
        try:
            request = HttpExchangeRequest.model_validate_json(payload)
        except ValidationError:
            response = HttpError(400, "invalid_request", "malformed forwarded request").response()
        else:
            response = await self.router.dispatch(request)
        return response.model_dump_json().encode()

    async def stop(self) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=5)
        if self._nc is not None:
            await drain_or_close(self._nc)
        # past the grace, or arrived during the drain: ended here, never left running after stop()
        leftover = list(self._inflight)
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        await observability.stop(self.metrics_server, self.probes)
        self.metrics_server = None
