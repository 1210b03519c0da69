"""An outcome too large for one NATS message: its result through the object store, or an answer that says why not."""

from __future__ import annotations

import logging

from libs.common.bus.blobs import Blobs
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, GatewayError

from .error_mapping import describe_exception
from .replies import undeliverable

__all__ = ["oversized"]

log = logging.getLogger(__name__)


async def oversized(outcome: CallOutcome, size: int, limit: int, blobs: Blobs | None) -> CallOutcome:
    """`outcome` (`size` bytes encoded) made to fit a message.

    Its result goes through the object store, up to `limit` (`max_result_bytes`); beyond that (or if it
    cannot be stored) the agent hears why at once."""
    if outcome.raw_result is None:  # an upstream error with huge `data`: the message is what matters
        error = outcome.error or GatewayError(kind=ErrorKind.INTERNAL, message="empty outcome")
        slim = GatewayError(kind=error.kind, message=error.message[:8192], code=error.code, logged=error.logged)
        return outcome.model_copy(update={"error": slim})
    if size > limit:
        log.warning("call %s: result of %d bytes is over the limit of %d", outcome.id, size, limit)
        message = (
            f"the upstream's result is {size:,} bytes, over the gateway's limit of {limit:,} bytes "
            "(BASTION_MAX_RESULT_BYTES); the request did run upstream"
        )
        return undeliverable(outcome, ErrorKind.RESULT_TOO_LARGE, message)
    assert blobs is not None
    try:
        name = await blobs.put(outcome.raw_result, what="result")
    except Exception as exc:
        message = f"the upstream's result ({size:,} bytes) could not be stored for transfer: {describe_exception(exc)}"
        return undeliverable(outcome, ErrorKind.GATEWAY_UNAVAILABLE, message)
    return outcome.model_copy(update={"raw_result": None, "result_blob": name})
