"""What ingress tells `libs.common.runtime.refusals` of a request it answered 401.

The surface, why, the client's address and the credential presented (labelled there, never kept)."""

from __future__ import annotations

from typing import Any

from libs.common.runtime.refusals import RefusalLog, Surface, credential_label
from services.ingress.auth.keys import AuthFailure

__all__ = ["note_refusal"]


def note_refusal(
    refusals: RefusalLog | None, surface: Surface, failure: AuthFailure, authorization: str | None, scope: Any
) -> None:
    """Count and audit one refusal.

    The address is the peer's as the ASGI scope has it: on `/v1` a trusted proxy's `X-Forwarded-For`
    already replaced it, `/mcp` reads no forwarded header."""
    if refusals is None:
        return
    _, _, credential = (authorization or "").partition(" ")
    # a header without a scheme (`bk_…` alone) is the credential itself
    credential = credential.strip() or (authorization or "").strip()
    client = scope.get("client")
    refusals.refused(surface, failure.reason, client[0] if client else None, credential_label(credential))
