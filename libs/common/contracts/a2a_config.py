"""The `a2a:` section of a server entry whose `type` is `a2a`: an A2A agent served as tools (docs/a2a.md)."""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["A2aSection", "skill_tool"]

_NOT_IN_TOOL_NAMES: Final = re.compile(r"[^A-Za-z0-9_.-]")


def skill_tool(skill_id: str) -> str:
    """The tool name an agent's skill is served under (`<server>__<this>`).

    The executor lists it so and the `/a2a` front calls it so: characters a tool name may not hold
    become `_`."""
    return _NOT_IN_TOOL_NAMES.sub("_", skill_id)[:64]


class A2aSection(BaseModel):
    """How the agent's card is read and trusted, and how a long-running task is followed."""

    model_config = ConfigDict(extra="forbid")

    card_path: str = Field(default="/.well-known/agent-card.json", pattern=r"^/[A-Za-z0-9._~/-]{0,200}$")
    """Where, below `url`, the agent serves its card."""
    card_public_key: str | None = Field(default=None, max_length=16384)
    """A public key (PEM, or a JWK as JSON) the card must carry a valid signature of; unset: the
    card is trusted as served (and pinned)."""
    poll_interval: float = Field(default=0.5, gt=0, le=60)
    """Seconds between `GetTask` polls while a task the agent answered with is still working."""
