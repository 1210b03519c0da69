"""The tools one upstream exposes, and argument validation against their `inputSchema`.

Validators are compiled lazily (a server may list hundreds of tools and the agent call three) and
then kept: compiling costs tens of times more than validating. A re-listing keeps the compiled
validator of every tool whose schema did not change.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

from libs.common.contracts.messages import MAX_ALIASES, CatalogTool

from .argument_rules import path_text, rule_text, short_json
from .resilience import retry_safe
from .schema_fastpath import Predicate, compile_predicate

__all__ = [
    "MAX_VIOLATIONS",
    "ArgumentsValidator",
    "ExposurePolicy",
    "ToolEntry",
    "ToolSet",
    "format_validation_error",
    "format_violations",
]

log = logging.getLogger(__name__)


class ExposurePolicy:
    """`ServerConfig.tools`: fnmatch patterns naming the only tools a server exposes (all if None)."""

    def __init__(self, patterns: Iterable[str] | None) -> None:
        self._regex = (
            None if patterns is None else re.compile("|".join(fnmatch.translate(p) for p in patterns) or r"(?!)")
        )

    def allows(self, tool: str) -> bool:
        return self._regex is None or self._regex.match(tool) is not None


MAX_VIOLATIONS = 20
"""Violations listed in one refusal; past it, their count (an answer must stay small)."""

_MAX_COLLECTED = 1000
"""Violations looked for at most: arguments as large as a request may be cannot make this unbounded."""

_PY_STRING = re.compile(r"'([^'\\\"]*)'")
"""A plain Python-quoted string in a jsonschema message (no quotes or escapes inside)."""


def format_validation_error(error: ValidationError, values: bool = False) -> list[str]:
    """`arguments.text: required, but missing`: where, then which rule, one line per field.

    Without `values` (the audit row always, the agent unless `BASTION_VALIDATION_VALUES`), the lines
    name the field and the schema's rule, never what the agent sent (`argument_rules`). With it,
    jsonschema's own wording, its Python reprs re-rendered as JSON (`null is not of type "string"`).
    """
    if not values:
        return rule_text(error)
    parts = list(error.absolute_path)
    message = error.message
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = next((p for p in error.validator_value if message.startswith(repr(p))), None)
        if missing is not None:
            return [f"{path_text([*parts, missing])}: required, but missing"]
    for value in (error.instance, error.validator_value):
        shown = repr(value)
        if shown in message:
            message = message.replace(shown, short_json(value), 1)
    # names quoted by the message itself, e.g. `('e' was unexpected)`
    message = _PY_STRING.sub(lambda m: short_json(m.group(1)), message)
    return [f"{path_text(parts)}: {message}"]


def format_violations(errors: Iterable[ValidationError], values: bool = False) -> str:
    """Every violation, one per line, in document order; the count first when there are several."""
    lines = sorted({line for e in errors for line in format_validation_error(e, values)})
    if len(lines) == 1:
        return lines[0]
    shown = lines[:MAX_VIOLATIONS]
    more = f"\n… and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    return f"{len(lines)} problems with the arguments:\n" + "\n".join(f"- {line}" for line in shown) + more


class ArgumentsValidator:
    """One tool's compiled `inputSchema` validator.

    An invalid schema validates nothing (the upstream will judge the arguments itself) rather than making
    the tool uncallable."""

    __slots__ = ("_validator", "accepts", "key")

    def __init__(self, schema: Mapping[str, Any], key: bytes, tool: str) -> None:
        self.key = key
        self._validator: Validator | None
        self.accepts: Predicate | None = None
        """The schema as one compiled predicate (`schema_fastpath`): True for arguments it accepts; None
        when it cannot be compiled (jsonschema then decides every call)."""
        cls = validator_for(schema, default=Draft202012Validator)
        try:
            cls.check_schema(dict(schema))
        except SchemaError as exc:
            log.warning("tool %r has an invalid inputSchema (%s); its arguments are not checked", tool, exc.message)
            self._validator = None
            return
        # an empty registry: `$ref`s resolve inside the schema only, never over the network
        self._validator = cls(schema, registry=Registry())
        self.accepts = compile_predicate(schema, cls)

    def check(self, arguments: Mapping[str, Any], values: bool = False) -> str | None:
        """None when valid, else a message a person can act on; `values`: it may quote the arguments."""
        if self._validator is None:
            return None
        if self.accepts is not None and self.accepts(arguments):
            return None  # the usual answer, without jsonschema's walk; a refusal is still worded by it
        try:
            errors = list(itertools.islice(self._validator.iter_errors(arguments), _MAX_COLLECTED))
        except Unresolvable:
            return None
        return format_violations(errors, values) if errors else None


class ToolEntry:
    """One exposed tool: its definition, and what calls of it read, decided once per listing."""

    __slots__ = ("aliases", "definition", "name", "retry_safe", "schema_key", "validator")

    def __init__(
        self, name: str, definition: dict[str, Any], validator: ArgumentsValidator | None, aliases: tuple[str, ...]
    ) -> None:
        self.name = name
        self.definition = definition
        self.aliases = aliases
        schema = definition.get("inputSchema")
        self.schema_key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS) if isinstance(schema, dict) else b""
        self.validator = validator if validator is not None and validator.key == self.schema_key else None
        self.retry_safe = retry_safe(definition)
        """A lost connection's call may be sent again (`resilience.retry_safe`)."""


class ToolSet:
    """The exposed tools of one server as last listed: definitions for the catalog, validators for calls."""

    def __init__(
        self,
        definitions: Iterable[dict[str, Any]],
        policy: ExposurePolicy,
        previous: ToolSet | None = None,
        aliases: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        """`aliases`: tool name -> its other stable names, published with it for Cedar (`Listing.aliases`)."""
        old = previous._tools if previous is not None else {}
        others = aliases or {}
        self._tools: dict[str, ToolEntry] = {}
        self.entries: Mapping[str, ToolEntry] = self._tools
        """Name -> tool, read by the call path directly (a lookup, where a method would be a call)."""
        for definition in definitions:
            name = definition.get("name")
            if isinstance(name, str) and policy.allows(name):
                prior = old.get(name)
                self._tools[name] = ToolEntry(
                    name, definition, prior.validator if prior else None, others.get(name, ())
                )

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def definition(self, name: str) -> dict[str, Any] | None:
        tool = self._tools.get(name)
        return tool.definition if tool is not None else None

    def check_arguments(self, name: str, arguments: Mapping[str, Any], values: bool = False) -> str | None:
        """None when the arguments fit the tool's `inputSchema`.

        Else why not (naming fields and rules; `values`: quoting what the agent sent too)."""
        tool = self._tools[name]
        if tool.validator is None:
            schema = tool.definition.get("inputSchema")
            if not isinstance(schema, dict):
                return None
            tool.validator = ArgumentsValidator(schema, tool.schema_key, name)
        return tool.validator.check(arguments, values)

    def catalog(self) -> list[CatalogTool]:
        return [
            CatalogTool(tool=t.name, definition=t.definition, aliases=list(t.aliases[:MAX_ALIASES]))
            for t in self._tools.values()
        ]

    def same_definitions(self, other: ToolSet | None) -> bool:
        return other is not None and [(t.definition, t.aliases) for t in other._tools.values()] == [
            (t.definition, t.aliases) for t in self._tools.values()
        ]
