"""What an argument broke, worded from the schema's rule alone: never the value the agent sent.

A refusal of arguments reaches the agent and the audit row's `error` column, which analysts read
without `audit:payloads`; an argument may be a secret (a token pasted into the wrong field). So the
message names where (the field's path) and which rule (`must be of type "integer"`, `must be at most
64 characters long`); the schema's own words (its types, bounds, enum, pattern) may be shown, the
instance never is. `BASTION_VALIDATION_VALUES` lets the agent's answer quote its values again
(jsonschema's wording, `tools.format_validation_error`), never the audit row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from jsonschema.exceptions import ValidationError

__all__ = ["path_text", "rule_text", "short_json", "unexpected_properties"]

_MAX_QUOTED_CHARS: Final = 60
"""A value quoted in a message (the schema's enum or pattern, or with `BASTION_VALIDATION_VALUES` the
agent's own value) is cut past this length: a hint, and the answer stays small."""
_MAX_NAME_CHARS: Final = 64


def path_text(parts: Iterable[Any]) -> str:
    """`arguments.to[1].email`: the field, from the root of the arguments."""
    text = "arguments"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{str(part)[:_MAX_NAME_CHARS]}"
    return text


def short_json(value: Any) -> str:
    """`value` in JSON terms (null, true, "text"), cut to a readable length."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= _MAX_QUOTED_CHARS else text[: _MAX_QUOTED_CHARS - 1] + "…"


def _types(rule: Any) -> str:
    names = rule if isinstance(rule, list) else [rule]
    return " or ".join(short_json(n) for n in names)


def _count(noun: str, plural: str) -> Callable[[Any], str]:
    return lambda n: f"{n} {noun if n == 1 else plural}"


_CHARACTERS, _ITEMS, _PROPERTIES = (
    _count("character", "characters"),
    _count("item", "items"),
    _count("property", "properties"),
)


_RULES: Final[Mapping[str, Callable[[Any], str]]] = {
    "type": lambda r: f"must be of type {_types(r)}",
    "enum": lambda r: f"must be one of {short_json(r)}",
    "const": lambda r: f"must be exactly {short_json(r)}",
    "minimum": lambda r: f"must be at least {short_json(r)}",
    "maximum": lambda r: f"must be at most {short_json(r)}",
    "exclusiveMinimum": lambda r: f"must be greater than {short_json(r)}",
    "exclusiveMaximum": lambda r: f"must be less than {short_json(r)}",
    "multipleOf": lambda r: f"must be a multiple of {short_json(r)}",
    "minLength": lambda r: f"must be at least {_CHARACTERS(r)} long",
    "maxLength": lambda r: f"must be at most {_CHARACTERS(r)} long",
    "pattern": lambda r: f"must match the pattern {short_json(r)}",
    "format": lambda r: f"must be a valid {short_json(r)}",
    "minItems": lambda r: f"must have at least {_ITEMS(r)}",
    "maxItems": lambda r: f"must have at most {_ITEMS(r)}",
    "uniqueItems": lambda _: "must not repeat an item",
    "minProperties": lambda r: f"must have at least {_PROPERTIES(r)}",
    "maxProperties": lambda r: f"must have at most {_PROPERTIES(r)}",
    "contains": lambda _: 'must contain an item the schema\'s "contains" accepts',
    "minContains": lambda r: f'must contain at least {r} items the schema\'s "contains" accepts',
    "maxContains": lambda r: f'must contain at most {r} items the schema\'s "contains" accepts',
    "anyOf": lambda r: f"must match at least one of the {len(r)} schemas its anyOf allows",
    "oneOf": lambda r: f"must match exactly one of the {len(r)} schemas its oneOf allows",
    "not": lambda _: 'must not match the schema its "not" names',
    "propertyNames": lambda _: "has a property name its propertyNames rule refuses",
    "dependentRequired": lambda _: "misses a property another one present requires (dependentRequired)",
    "dependencies": lambda _: "misses a property another one present requires (dependencies)",
}


def unexpected_properties(error: ValidationError) -> list[str]:
    """The property names an `additionalProperties: false` (or `unevaluatedProperties`) refused.

    Field names, which the agent chose, never their values."""
    instance, schema = error.instance, error.schema
    if not isinstance(instance, Mapping) or not isinstance(schema, Mapping):
        return []
    declared = schema.get("properties")
    patterns = schema.get("patternProperties")
    known = set(declared) if isinstance(declared, Mapping) else set()
    regexes = [p for p in patterns if isinstance(p, str)] if isinstance(patterns, Mapping) else []
    extra = [str(k) for k in instance if k not in known and not any(_search(p, str(k)) for p in regexes)]
    return sorted(extra)


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def rule_text(error: ValidationError) -> list[str]:
    """`arguments.x: must be ...` lines for one violation, naming only the field and the rule."""
    parts = list(error.absolute_path)
    keyword = error.validator
    if keyword == "required" and isinstance(error.validator_value, list):
        # one error per missing property, named only in the message: `'text' is a required property`
        missing = next((p for p in error.validator_value if error.message.startswith(repr(p))), None)
        if missing is not None:
            return [f"{path_text([*parts, missing])}: required, but missing"]
    if keyword in ("additionalProperties", "unevaluatedProperties"):
        extra = unexpected_properties(error)
        if extra:
            return [f"{path_text([*parts, name])}: not allowed (the schema lists no such property)" for name in extra]
    if keyword is None or error.schema is False:
        return [f"{path_text(parts)}: not allowed here (the schema accepts no value)"]
    worded = _RULES.get(str(keyword))
    if worded is None:
        return [f"{path_text(parts)}: breaks the schema's {short_json(str(keyword))} rule"]
    try:
        return [f"{path_text(parts)}: {worded(error.validator_value)}"]
    except TypeError:  # a rule whose value is of an unexpected kind (an invalid schema): name the keyword
        return [f"{path_text(parts)}: breaks the schema's {short_json(str(keyword))} rule"]
