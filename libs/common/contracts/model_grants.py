"""Model grants: which model names a key may use on `/v1` (docs/llm-routing.md, "Grants").

A key, a tool group and a team may each state `models:` (patterns with `*` and `?` wildcards).
A key's model grants are the union of what it, its groups (its own, its user's, team's and
customer's) and its team state. Deny by default once any of them states a list, even an empty
one; when none does, every model is allowed, as before model grants existed, so configurations
that never mention `models:` keep working unchanged. Shared by policy (which decides) and ingress
(which lists only granted models on `GET /v1/models`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_MODEL_GRANTS", "ModelGrants"]

MAX_MODEL_GRANTS = 256
"""Patterns one key, group or team may state at most."""
_NAMED = 10
"""Patterns a refusal names at most."""


@dataclass(frozen=True, slots=True)
class ModelGrants:
    patterns: tuple[str, ...] | None
    """None: no model grant stated anywhere (every model allowed)."""
    _regex: re.Pattern[str] | None

    @classmethod
    def of(cls, stated: Iterable[list[str] | None]) -> ModelGrants:
        lists = [patterns for patterns in stated if patterns is not None]
        if not lists:
            return cls(None, None)
        unique = tuple(dict.fromkeys(p for patterns in lists for p in patterns if p))
        regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in unique)) if unique else None
        return cls(unique, regex)

    def allows(self, model: str) -> bool:
        if self.patterns is None:
            return True
        return self._regex is not None and self._regex.match(model) is not None

    def describe(self) -> str:
        """The grants as a refusal names them."""
        if not self.patterns:
            return "none (a model grant list is stated, and it is empty)"
        more = f" and {len(self.patterns) - _NAMED} more" if len(self.patterns) > _NAMED else ""
        return ", ".join(repr(p) for p in self.patterns[:_NAMED]) + more
