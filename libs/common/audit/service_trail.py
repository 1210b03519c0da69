"""A producing service's own audit trail (admin, ingress, codemode).

Its journal slot, its publisher on its own hash chain and, where credentials are checked, the log of
refused ones; started and closed in the one order that loses no event.

Start: the slot is opened (`audit_journal.open_slot`: the replica's `BASTION_INSTANCE` or the
service's name, so a restarted replica finds its predecessor's), the publisher started, then what a
killed predecessor left in the journal replayed through it. Close: the refusal log first (its last
window's events go out with the publisher's drain), then the publisher, then the journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.client import Client as NATS

from libs.common.audit.audit_chain import producer_id
from libs.common.audit.audit_journal import AuditJournal, open_slot
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.runtime.refusals import RefusalLog
from libs.common.settings import RefusalSettings

__all__ = ["ServiceTrail"]


class _Journaled(Protocol):
    """A service's settings with its audit journal's (`AuditJournalSettings`) and its replica name."""

    instance: str
    audit_journal_dir: str
    audit_journal_segment_bytes: int


@dataclass(frozen=True, slots=True)
class ServiceTrail:
    publisher: AuditPublisher
    journal: AuditJournal | None
    refusals: RefusalLog | None = None
    """Requests refused for their credential, counted and audited per window (None: not counted here)."""

    @classmethod
    async def start(
        cls,
        nc: NATS,
        service: str,
        settings: _Journaled,
        *,
        refusals: RefusalSettings | None = None,
        **publishing: Any,
    ) -> ServiceTrail:
        """The journal as `settings` says (its `audit_journal_dir` empty: none).

        With `refusals`, refused credentials counted and audited per window. `publishing`:
        `AuditPublisher`'s options."""
        journal = open_slot(
            settings.audit_journal_dir, settings.instance or service, segment_bytes=settings.audit_journal_segment_bytes
        )
        publisher = AuditPublisher(nc, producer=producer_id(service), journal=journal, **publishing)
        await publisher.start()
        if journal is not None:
            journal.replay(publisher.emit)
        log = None
        if refusals is not None:
            log = RefusalLog(
                publisher.emit, window=refusals.auth_refusal_window, max_buckets=refusals.auth_refusal_buckets
            )
            log.start()
        return cls(publisher, journal, log)

    async def aclose(self) -> None:
        if self.refusals is not None:
            await self.refusals.aclose()
        await self.publisher.aclose()
        if self.journal is not None:
            self.journal.close()
