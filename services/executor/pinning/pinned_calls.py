"""What a call is checked against besides its definition's verdict: the approved (pinned) definition.

An upstream can change a definition and say nothing; until the next listing finds it
(`BASTION_DRIFT_INTERVAL`), the executor still serves the approved copy. A call is held to that
copy: an argument the approved `inputSchema` does not declare is refused before it is sent, since
only a changed definition would want it. And a read of a
URI under a quarantined resource template is refused like a call of a quarantined tool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.shared.uri_template import UriTemplate

__all__ = ["QuarantinedTemplates", "argument_problem", "declared_arguments"]


def declared_arguments(schema: Any) -> frozenset[str] | None:
    """The only top-level argument names the approved `schema` accepts; None when it accepts any.

    Decided once per listing, so a call is held to it by one set comparison (`frozenset.issuperset`)."""
    if not isinstance(schema, Mapping):
        return None
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    if isinstance(properties, Mapping) and extra is not True and not isinstance(extra, Mapping):
        return frozenset(properties)
    return None


def argument_problem(tool: str, schema: Any, arguments: Mapping[str, Any]) -> str | None:
    """Why `arguments` do not fit the approved `schema` of `tool` (None: they fit).

    An argument the schema does not declare at its top level, unless it allows more. The rest of the
    schema (types, `required`) is checked after the interceptors against the served copy, which until a
    change is found is the approved one (`tools.ToolSet.check_arguments`), as any call's arguments are."""
    declared = declared_arguments(schema)
    if declared is None:
        return None
    unknown = sorted(name for name in arguments if name not in declared)
    if unknown:
        return (
            f"tool {tool!r} was called with {_names(unknown)} that its approved definition does not"
            " have; the upstream's definition may have changed and is being listed again"
        )
    return None


def _names(names: list[str]) -> str:
    quoted = ", ".join(repr(name[:64]) for name in names[:5])
    return f"propert{'y' if len(names) == 1 else 'ies'} {quoted}"


@dataclass(frozen=True, slots=True)
class QuarantinedTemplates:
    """One server's quarantined resource templates and the refusal each answers with."""

    templates: tuple[tuple[UriTemplate | None, str, str], ...] = ()
    """(parsed template or None when it does not parse, its text, the refusal)."""

    @classmethod
    def of(cls, refusals: Mapping[str, str]) -> QuarantinedTemplates:
        parsed: list[tuple[UriTemplate | None, str, str]] = []
        for text, message in refusals.items():
            try:
                template: UriTemplate | None = UriTemplate.parse(text)
            except ValueError:  # too long, too many variables, malformed: matched as text
                template = None
            parsed.append((template, text, message))
        return cls(tuple(parsed))

    def refusal(self, uri: str) -> str | None:
        """The refusal for a read of `uri` when a quarantined template names it.

        (A template that does not parse only names its own text)."""
        for template, text, message in self.templates:
            if uri == text or (template is not None and _matches(template, uri)):
                return message
        return None


def _matches(template: UriTemplate, uri: str) -> bool:
    try:
        return template.match(uri) is not None
    except ValueError:
        return False
