"""Asking the audit service an analytics query over NATS, and telling it to stop when the asker gives up.

The messages and the read-only check are data (`libs.common.analytics.queries`); this is the one
part of analytics that talks to the bus.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client as NATS

from libs.common.analytics.queries import ANSWER_GRACE, AnalyticsAnswer, AnalyticsCancel, AnalyticsQuery
from libs.common.contracts import subjects


async def ask(nc: NATS, query: AnalyticsQuery) -> AnalyticsAnswer:
    """Send `query` to the audit service and wait for its answer (at most `timeout` + `ANSWER_GRACE`).

    A caller that gives up (cancelled, or no answer in time) tells the service to stop the query
    (`AnalyticsCancel`) before raising: a query nobody waits for is never left running."""
    try:
        reply = await nc.request(
            subjects.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=query.timeout + ANSWER_GRACE
        )
    except (asyncio.CancelledError, TimeoutError):
        with contextlib.suppress(Exception):
            cancel = AnalyticsCancel(query_id=query.query_id).model_dump_json().encode()
            await asyncio.shield(nc.publish(subjects.ANALYTICS_CANCEL, cancel))
        raise
    return AnalyticsAnswer.model_validate_json(reply.data)
