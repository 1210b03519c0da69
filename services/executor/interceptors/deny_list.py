"""`BASTION_DENY_LIST`: the same refusals for every caller, at each of the three hook points.

- listing: tools and prompts its `tools` patterns name are hidden (neither published nor callable);
- before the call: a call to one of them by name is refused, and so are arguments over
  `max_argument_bytes`;
- after the result: its `terms` are replaced by `[REDACTED]` wherever they appear in a string of the
  result (case-insensitive), the rest of the result shared, not copied.

Deliberately small: the guardrails (docs/guardrails.md) bind rules to callers and tools and detect
far more; this one proves the seam and serves a deployment that needs only a list.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import orjson

from libs.common.contracts.grants import GrantSet
from libs.common.settings import DenyList

from ..guardrails.walk import Path, rewrite, strings
from .interface import InterceptedCall, InterceptedListing, Interceptor, Refused

__all__ = ["REDACTED", "DenyListInterceptor"]

REDACTED = "[REDACTED]"
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
"""Characters JSON text writes escaped: a term holding one is not found as is in a result's JSON."""


class DenyListInterceptor(Interceptor):
    name: ClassVar[str] = "deny_list"

    def __init__(self, rules: DenyList) -> None:
        self._hidden = GrantSet.compile(rules.tools)
        self._max_bytes = rules.max_argument_bytes
        self._terms = (
            re.compile("|".join(re.escape(t) for t in sorted(rules.terms, key=len, reverse=True)), re.IGNORECASE)
            if rules.terms
            else None
        )
        self._prefilter = not any(_JSON_ESCAPED.search(t) for t in rules.terms)
        """Every term reads the same inside JSON text: one search of the result's JSON can rule them out."""

    async def at_listing(self, listing: InterceptedListing) -> None:
        server, hidden = listing.server, self._hidden
        tools: list[dict[str, Any]] = []
        for tool in listing.tools:
            if hidden.allows(server, str(tool.get("name", ""))):
                listing.decide(self.name, "tools", "hide", f"tool {tool.get('name')!r}")
            else:
                tools.append(tool)
        prompts: list[dict[str, Any]] = []
        for prompt in listing.prompts:
            if hidden.allows(server, f"prompt:{prompt.get('name', '')}"):
                listing.decide(self.name, "tools", "hide", f"prompt {prompt.get('name')!r}")
            else:
                prompts.append(prompt)
        listing.tools, listing.prompts = tools, prompts

    async def before_call(self, call: InterceptedCall) -> None:
        if self._hidden.allows(call.server, call.name):
            raise Refused(
                f"{call.server}/{call.name} is on this gateway's deny list (BASTION_DENY_LIST)",
                rule="tools",
                detail=call.name,
            )
        if self._max_bytes is not None:
            size = len(orjson.dumps(call.arguments, option=orjson.OPT_NON_STR_KEYS))
            if size > self._max_bytes:
                raise Refused(
                    f"the arguments are {size:,} bytes, over this gateway's limit of {self._max_bytes:,} bytes "
                    "(BASTION_DENY_LIST max_argument_bytes); the request was not sent",
                    rule="max_argument_bytes",
                    detail=f"{size} bytes",
                )

    async def after_result(self, call: InterceptedCall, result: dict[str, Any]) -> dict[str, Any]:
        pattern = self._terms
        if pattern is None:
            return result
        # one serialization and one search decide the common case: no term anywhere
        if self._prefilter and pattern.search(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode()) is None:
            return result
        changes: dict[Path, str] = {}
        found = 0
        for path, _key, value in strings(result):
            redacted, count = pattern.subn(REDACTED, value)
            if count:
                changes[path] = redacted
                found += count
        if not changes:
            return result
        call.decide(self.name, "terms", "redact", "result", f"{found} match(es)")
        rewritten: dict[str, Any] = rewrite(result, changes)
        return rewritten
