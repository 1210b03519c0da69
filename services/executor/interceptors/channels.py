"""Every way an upstream's words reach an agent through the executor, and the hook that checks each.

An upstream controls more than its results: while a call runs it sends progress and log
notifications and asks the agent to sample or elicit; it answers reads, prompts and completions;
its errors carry its own text; a subscribed resource's update names a URI it chose. Each is a
channel a credential can ride to the agent, so each passes the interceptors: results and errors
through `after_result` and `InterceptorChain.run`, the rest through `at_message`
(`InterceptorChain.outgoing`, called by `AgentLink`). tests/integration/test_guardrails_channels.py
sends a credential down every channel of this table from a hostile upstream: a channel added to the
executor without a line here (and a hook) is one the test does not cover, so add it here first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

__all__ = ["UPSTREAM_CHANNELS", "Hook"]

Hook = Literal["after_result", "at_message"]

UPSTREAM_CHANNELS: Final[Mapping[str, Hook]] = {
    "tools/call": "after_result",  # content, structuredContent, isError results
    "error": "at_message",  # the upstream's own error message and data, on any request
    "resources/read": "after_result",
    "prompts/get": "after_result",
    "completion/complete": "after_result",
    "notifications/progress": "at_message",
    "notifications/message": "at_message",
    "notifications/resources/updated": "at_message",
    "sampling/createMessage": "at_message",
    "elicitation/create": "at_message",
}
"""Channel -> the hook that sees it. Task status and results (`tasks/get`, `tasks/result`) are
routed requests like `resources/read`: the after hooks see their answers too, and
tests/integration/test_tasks.py sends a credential down a task's result (the hostile server of the
channels test speaks no tasks, so they are not rows of this table)."""
