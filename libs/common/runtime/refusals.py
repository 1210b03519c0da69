"""Refused credentials made visible.

Every request turned away for a missing, invalid, expired or revoked credential is counted and audited,
so credential stuffing shows in the metrics and the audit log.

`RefusalLog.refused` is called where a surface answers 401 (ingress's `/mcp` and `/v1`, the admin
API). It adds one to `metrics.AUTH_REFUSED` (labels: surface and reason only, so a flood of
distinct keys or addresses cannot grow the series) and folds the refusal into an aggregation
bucket per (surface, client address, credential label, reason). At the end of each window
(`window` seconds, tumbling) every bucket becomes one `auth.refused` audit event carrying its
count, first and last seen, and the buckets are cleared.

A flood cannot flood the audit: at most `max_buckets` buckets exist per window; a refusal that
would open one more is counted into its surface's single overflow bucket (address and credential
`other`), whose event tallies the reasons it holds. Memory and events per window are therefore
bounded by `max_buckets` plus one per surface, whatever arrives.

What a row says of the credential is `credential_label`: its public kind (`bk_`, `bat_`, `jwt`,
`session`) and the first 12 hex digits of its sha256 (for a virtual key, the start of its key id as
`bastion keys` shows it), never a character of the secret itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from libs.common.contracts.messages import AuditEvent
from libs.common.runtime import metrics

__all__ = [
    "AUTH_REFUSED_KIND",
    "OVERFLOW",
    "RefusalLog",
    "RefusalReason",
    "Surface",
    "credential_label",
]

log = logging.getLogger(__name__)

Surface = Literal["mcp", "llm", "admin"]
RefusalReason = Literal["missing", "invalid", "expired", "revoked"]
AUTH_REFUSED_KIND: Final = "auth.refused"
OVERFLOW: Final = "other"
"""Address and credential of a surface's overflow bucket; its reason is `mixed` when it holds several."""

_PUBLIC_PREFIXES: Final = ("bk_", "bat_")
"""Virtual keys (`keys.KEY_PREFIX`) and admin API tokens (`admin_principals.TOKEN_PREFIX`): public by design."""
_DIGEST_CHARS: Final = 12
_MAX_ADDRESS: Final = 64
"""Characters of a client address kept (an IPv6 address with a zone fits)."""
_WHERE: Final = {"mcp": "/mcp", "llm": "/v1", "admin": "the admin API"}


def credential_label(credential: str | None, kind: str | None = None) -> str:
    """What an audit row may say of a presented credential.

    `none` when nothing was presented, else its public kind and the first 12 hex digits of its sha256
    (`bk_ sha256:3f2a9c01b7de`). `kind` names credentials whose form says nothing (a session cookie)."""
    if not credential:
        return "none"
    digest = hashlib.sha256(credential.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    if kind is None:
        kind = next((p for p in _PUBLIC_PREFIXES if credential.startswith(p)), None)
    if kind is None and credential.startswith("eyJ") and credential.count(".") == 2:
        kind = "jwt"
    return f"{kind} sha256:{digest}" if kind else f"sha256:{digest}"


@dataclass(slots=True)
class _Bucket:
    first: float
    last: float
    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


_Key = tuple[str, str, str, str]
"""(surface, address, credential label, reason); the overflow bucket's reason is ""."""


class RefusalLog:
    """One process's refusals: counted at once, audited once per bucket and window (`run`)."""

    def __init__(
        self,
        emit: Callable[[AuditEvent], object],
        *,
        window: float = 10.0,
        max_buckets: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= 0 or max_buckets < 1:
            raise ValueError("a refusal window must last more than 0 s and hold at least one bucket")
        self._emit, self.window, self.max_buckets, self._clock = emit, window, max_buckets, clock
        self._buckets: dict[_Key, _Bucket] = {}
        self._regular = 0
        """Buckets in `_buckets` that are not an overflow bucket (at most `max_buckets`)."""
        self._task: asyncio.Task[None] | None = None

    def refused(self, surface: Surface, reason: RefusalReason, address: str | None, label: str) -> None:
        """One request refused on `surface`; `label` is `credential_label` of what it presented."""
        metrics.child(metrics.AUTH_REFUSED, surface, reason).inc()
        now = self._clock()
        key: _Key = (surface, (address or "unknown")[:_MAX_ADDRESS], label, reason)
        bucket = self._buckets.get(key)
        if bucket is None:
            if self._regular >= self.max_buckets:
                key = (surface, OVERFLOW, OVERFLOW, "")
                bucket = self._buckets.get(key)
            else:
                self._regular += 1
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(now, now)
        bucket.count += 1
        bucket.last = now
        bucket.reasons[reason] += 1

    def flush(self) -> int:
        """Every bucket of the window as its event, emitted; the buckets cleared. How many events."""
        buckets, self._buckets, self._regular = self._buckets, {}, 0
        now = self._clock()
        for key, bucket in buckets.items():
            self._emit(_event(key, bucket, now))
        return len(buckets)

    async def run(self) -> None:
        """Flush at the end of every window, until cancelled."""
        while True:
            await asyncio.sleep(self.window)
            try:
                self.flush()
            except Exception:  # an emit that failed must not end the windows after it
                log.exception("could not audit the refused credentials of a window")

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="auth-refusals")

    async def aclose(self) -> None:
        """Stop the windows and flush what the last one holds (before the audit publisher closes)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()


def _event(key: _Key, bucket: _Bucket, now: float) -> AuditEvent:
    surface, address, label, reason = key
    if not reason:  # the overflow bucket: its reason if it holds one, else `mixed`
        reason = next(iter(bucket.reasons)) if len(bucket.reasons) == 1 else "mixed"
    tally = ", ".join(f"{n} {why}" for why, n in sorted(bucket.reasons.items()))
    return AuditEvent(
        kind=AUTH_REFUSED_KIND,
        ts=now,
        name=surface,
        status="denied",
        error_kind=reason,
        error=f"{bucket.count} request(s) refused on {_WHERE.get(surface, surface)} for a credential: {tally}",
        latency_ms=0.0,
        execution="not_run",
        actor_address=address,
        credential=label,
        refusals=bucket.count,
        first_seen=bucket.first,
        last_seen=bucket.last,
    )
