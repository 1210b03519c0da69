"""The tool call and policy signer the grant tests sign and check grants for: one caller's call of
echo's `echo`, a signer under policy's key, and an expiry a minute away."""

from __future__ import annotations

import time
from typing import Any

from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts.messages import Caller, ToolCall

CALL = ToolCall(caller=Caller(key_id="k1", key_name="ci"), server="echo", tool="echo", name="echo__echo", timeout=5)
SIGNER = WorkSigner("policy-key")
LATER = time.time() + 60
"""An expiry no test outlives."""


def changed(**update: Any) -> ToolCall:
    """`CALL` with `update` applied: a call a grant for `CALL` must not cover."""
    return CALL.model_copy(update=update)
