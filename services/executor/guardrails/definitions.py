"""Credentials in definitions: the secrets guardrail on what a server lists, once per definition version.

A tool's name, title, description, input and output schemas (defaults and examples included), a
prompt's or resource's every field are text an agent reads, so they pass the same `secrets`
detector as results (the engine, deep read included). A server lists the same definitions again
and again (every `list_changed`, the drift schedule, reconnects): each version is scanned once and
remembered by its pin digest (`libs.common.contracts.pins.definition_sha256`, the digest pinning
records), so listing a server again costs one hash per definition, and the verdict for a pinned
version is found under the very digest its pin record names (`DefinitionScreen.verdict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from libs.common.contracts.guardrails import GuardrailRule, GuardrailsSection
from libs.common.contracts.pins import definition_sha256

from .base import Subject
from .engine import Guardrails

__all__ = ["RULE", "Carried", "DefinitionScreen"]

RULE: Final = "default-definition-secrets"
_REMEMBERED: Final = 65_536
"""Definition versions one screen remembers (a server of 1,500 tools is 1,500)."""
_CLEAN: Final = ()


class Carried(NamedTuple):
    """What a definition carries.

    Where (`secrets: aws_access_key_id at /description`, never the secret) and the definition with each
    credential replaced by its marker."""

    where: tuple[str, ...]
    redacted: dict[str, Any]


class DefinitionScreen:
    def __init__(self, section: GuardrailsSection) -> None:
        rule = GuardrailRule(name=RULE, detector="secrets", where=["definition"], action="redact")
        only = GuardrailsSection(defaults=False, rules=[rule], max_scan_bytes=section.max_scan_bytes)
        self._engine = Guardrails.compile(only)
        self._seen: dict[str, Carried | tuple[()]] = {}
        """Pin digest -> what that definition version carries (`_CLEAN`: nothing)."""
        self.scanned = 0
        """Definition versions scanned (not answered from memory): tests and benchmarks read it."""

    def check(self, server: str, name: str, definition: Mapping[str, Any]) -> Carried | None:
        """What `definition` carries, or None when it is clean."""
        digest = definition_sha256(definition)
        known = self._seen.get(digest)
        if known is None:
            known = self._scan(server, name, definition)
            if len(self._seen) >= _REMEMBERED:
                self._seen.clear()
            self._seen[digest] = known
        return known or None

    def verdict(self, sha256: str) -> Carried | bool | None:
        """What the version with pin digest `sha256` was found to carry: `Carried`, False when clean.

        None when this screen has not scanned that version (or has forgotten it)."""
        known = self._seen.get(sha256)
        if known is None:
            return None
        return known or False

    def _scan(self, server: str, name: str, definition: Mapping[str, Any]) -> Carried | tuple[()]:
        self.scanned += 1
        inspection = self._engine.inspect("definition", Subject(server, name), definition)
        if inspection.action is None:
            return _CLEAN
        where = tuple(f"{d.detector}: {d.entity}" + (f" at {d.path}" if d.path else "") for d in inspection.decisions)
        redacted = inspection.content if isinstance(inspection.content, dict) else {}
        return Carried(where, redacted)
