"""A tool's `inputSchema` compiled to one Python predicate.

"these arguments are valid", decided without jsonschema's generic machinery.

jsonschema validates by walking the schema per call: a generator per keyword, an `is_type` lookup
per check, descend() per subschema. For the schemas tools publish (an object of typed properties,
some required) that is ~7 µs of an executor's call, to learn what is almost always "valid". Here the
walk happens once, when the validator is built: the schema becomes nested closures.

Only a subset of keywords is compiled, each with jsonschema's exact meaning (drafts 6 to 2020-12,
no format assertion, as `ArgumentsValidator` builds its validators). A schema that uses any other
keyword jsonschema knows (`$ref`, `pattern`, `if`, ...) gets no predicate and is validated by
jsonschema alone. The predicate only ever answers the success case: when it says "not valid",
jsonschema runs and words every violation, so a refusal reads exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from jsonschema import Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator

__all__ = ["Predicate", "compile_predicate"]

Predicate = Callable[[Any], bool]
_Compiler = Callable[[Any, Mapping[str, Any], frozenset[str]], Predicate]
"""A keyword's compiler: (its value, the schema it is in, the keywords the draft knows) -> its check."""

_DRAFTS: Final = (Draft6Validator, Draft7Validator, Draft201909Validator, Draft202012Validator)
"""Drafts whose meaning of the compiled keywords is the same (integers include 1.0; numeric exclusive bounds)."""

_ANNOTATIONS: Final = frozenset({"format"})
"""Keywords jsonschema knows that assert nothing here: formats are checked only with a format checker."""


class _Unsupported(Exception):
    """The schema uses a keyword not compiled here."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: Final[Mapping[str, Predicate]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def compile_predicate(schema: Mapping[str, Any] | bool, cls: type[Any]) -> Predicate | None:
    """A predicate true exactly when `cls(schema)` finds no error.

    None when the schema (or its draft) uses something not compiled here."""
    if cls not in _DRAFTS:
        return None
    try:
        return _compile(schema, frozenset(cls.VALIDATORS))
    except _Unsupported:
        return None


_CLASSES: Final[Mapping[str, type]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}
"""Types whose check is exactly one `isinstance` (not "integer" or "number": a bool is neither)."""


def _classes(value: Any) -> tuple[type, ...] | None:
    """The classes `isinstance` checks for the `type` keyword `value`; None when one is not a class check."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in _CLASSES for n in names):
        return None
    return tuple(_CLASSES[n] for n in names)


def _plain_type(schema: Any, known: frozenset[str]) -> tuple[type, ...] | None:
    """The classes a subschema asserts when `type` is all it asserts (`{"type": "string"}`), else None.

    Its parent then checks them with `isinstance` inline: no call per value."""
    if not isinstance(schema, Mapping) or "type" not in schema:
        return None
    if any(k in known and k not in _ANNOTATIONS and k != "type" for k in schema):
        return None
    return _classes(schema["type"])


def _compile(schema: Any, known: frozenset[str]) -> Predicate:
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, Mapping):
        raise _Unsupported
    checks: list[Predicate] = []
    kinds: tuple[type, ...] | None = None
    required: frozenset[str] | None = None
    for keyword, value in schema.items():
        if keyword not in known or keyword in _ANNOTATIONS:
            continue  # an annotation (title, description, $defs, x-...): jsonschema ignores it too
        if keyword == "type" and (classes := _classes(value)) is not None:
            kinds = classes  # checked inline by the fused predicate below
            continue
        if keyword == "required" and isinstance(value, list) and all(isinstance(n, str) for n in value):
            required = frozenset(value)
            continue
        compile_keyword = _KEYWORDS.get(keyword)
        if compile_keyword is None:
            raise _Unsupported
        checks.append(compile_keyword(value, schema, known))
    if kinds is None and required is None:
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]
    return _fused(kinds, required, tuple(checks))


def _fused(kinds: tuple[type, ...] | None, required: frozenset[str] | None, checks: tuple[Predicate, ...]) -> Predicate:
    """One predicate for a schema's `type` (classes), `required` and other checks.

    The first two inline (an `isinstance`, a set comparison): the usual tool schema, an object of typed
    properties some required, is one call and its `properties` check another."""

    def every(v: Any) -> bool:  # a loop, not `all(<generator>)`: no generator per value checked
        if kinds is not None and not isinstance(v, kinds):
            return False
        if required is not None and isinstance(v, dict) and not v.keys() >= required:
            return False
        for check in checks:
            if not check(v):
                return False
        return True

    return every


def _type(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n in _TYPES for n in names):
        raise _Unsupported
    tests = tuple(_TYPES[n] for n in names)
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(test(v) for test in tests)


def _properties(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if not isinstance(value, Mapping):
        raise _Unsupported
    typed: list[tuple[str, tuple[type, ...]]] = []
    compiled: list[tuple[str, Predicate]] = []
    for name, sub in value.items():
        kinds = _plain_type(sub, known)
        if kinds is not None:
            typed.append((name, kinds))  # `{"type": "string"}`: an isinstance here, no call
        else:
            compiled.append((name, _compile(sub, known)))
    typed_, compiled_ = tuple(typed), tuple(compiled)

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for name, kinds in typed_:
            if name in v and not isinstance(v[name], kinds):
                return False
        for name, sub in compiled_:
            if name in v and not sub(v[name]):
                return False
        return True

    return check


def _additional_properties(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if "patternProperties" in schema:
        raise _Unsupported
    declared = schema.get("properties", {})
    if not isinstance(declared, Mapping):
        raise _Unsupported
    names = frozenset(declared)
    sub = _compile(value, known)
    if sub is _always:
        return _always

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for key, item in v.items():
            if key not in names and not sub(item):
                return False
        return True

    return check


def _required(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise _Unsupported
    names = frozenset(value)
    return lambda v: not isinstance(v, dict) or v.keys() >= names  # one set comparison, in C


def _items(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if not isinstance(value, Mapping | bool) or "prefixItems" in schema:
        raise _Unsupported  # a list of schemas (tuple validation, before 2020-12)
    sub = _compile(value, known)

    def check(v: Any) -> bool:
        if not isinstance(v, list):
            return True
        for item in v:
            if not sub(item):
                return False
        return True

    return check


def _strings_only(value: Any) -> tuple[str, ...]:
    """`enum` or `const` values compiled only when all are strings.

    A string equals only a string in jsonschema's `equal` too, so plain `==` is its meaning; anything
    else stays with jsonschema."""
    if not all(isinstance(item, str) for item in value):
        raise _Unsupported
    return tuple(value)


def _enum(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if not isinstance(value, list):
        raise _Unsupported
    allowed = frozenset(_strings_only(value))
    return lambda v: isinstance(v, str) and v in allowed


def _const(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    (only,) = _strings_only([value])
    return lambda v: isinstance(v, str) and v == only


def _bound(value: Any) -> float | int:
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise _Unsupported
    return value  # type: ignore[no-any-return]


def _minimum(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    low = _bound(value)
    return lambda v: not _is_number(v) or v >= low


def _maximum(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    high = _bound(value)
    return lambda v: not _is_number(v) or v <= high


def _exclusive_minimum(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    low = _bound(value)
    return lambda v: not _is_number(v) or v > low


def _exclusive_maximum(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    high = _bound(value)
    return lambda v: not _is_number(v) or v < high


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Unsupported
    return value


def _sized(kind: type[str | list[Any] | dict[str, Any]], least: bool) -> _Compiler:
    def compile_size(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
        n = _count(value)
        if least:
            return lambda v: not isinstance(v, kind) or len(v) >= n
        return lambda v: not isinstance(v, kind) or len(v) <= n

    return compile_size


def _any_of(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if not isinstance(value, list) or not value:
        raise _Unsupported
    subs = tuple(_compile(sub, known) for sub in value)
    return lambda v: any(sub(v) for sub in subs)


def _all_of(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if not isinstance(value, list) or not value:
        raise _Unsupported
    subs = tuple(_compile(sub, known) for sub in value)
    return lambda v: all(sub(v) for sub in subs)


def _one_of(value: Any, schema: Mapping[str, Any], known: frozenset[str]) -> Predicate:
    if not isinstance(value, list) or not value:
        raise _Unsupported
    subs = tuple(_compile(sub, known) for sub in value)
    return lambda v: sum(1 for sub in subs if sub(v)) == 1


_KEYWORDS: Final[Mapping[str, _Compiler]] = {
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional_properties,
    "required": _required,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "minimum": _minimum,
    "maximum": _maximum,
    "exclusiveMinimum": _exclusive_minimum,
    "exclusiveMaximum": _exclusive_maximum,
    "minLength": _sized(str, least=True),
    "maxLength": _sized(str, least=False),
    "minItems": _sized(list, least=True),
    "maxItems": _sized(list, least=False),
    "minProperties": _sized(dict, least=True),
    "maxProperties": _sized(dict, least=False),
    "anyOf": _any_of,
    "allOf": _all_of,
    "oneOf": _one_of,
}
