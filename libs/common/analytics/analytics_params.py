"""What a query's parameters may be (docs/analytics.md, "Parameters").

A parameter is a value for a typed placeholder of the checked query (`{name:String}`,
`{ids:Array(String)}`) and nothing else: ClickHouse receives it apart from the SQL text and
parses it as that type, so no value can become SQL. A parameter that no typed placeholder uses is
refused: a driver that finds no placeholder pastes the values into the text with Python `%`
formatting (clickhouse-connect does), and a value pasted inside a string literal closes it and
becomes SQL that the allow-list never saw. `%(x)s`, `%s`, `:x`, `?`, `$1` and `{x}` are therefore
not placeholders: the check refuses them, or reads them as text, and never binds a value to them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from sqlglot import exp

from libs.common.analytics.analytics_refusal import NotReadOnly

__all__ = ["MAX_PARAMETERS", "PARAMETER_NAME", "check_parameters"]

MAX_PARAMETERS: Final = 64
PARAMETER_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
"""A parameter's name: what both ClickHouse and the driver read as one name, and nothing that the
driver reads as something else (`$name$` binary binds, `name_64` precision hints need values that
JSON cannot carry)."""
_VALUE_TYPES: Final = (str, int, float)


def _typed_placeholders(tree: exp.Expr) -> set[str]:
    names = set()
    for placeholder in tree.find_all(exp.Placeholder):
        kind = placeholder.args.get("kind")
        name = placeholder.name
        if not isinstance(kind, exp.DataType) or "identifier" in kind.sql(dialect="clickhouse").lower():
            raise NotReadOnly(f"query parameter {name or '?'} must have a value type like {{name:String}}")
        if not PARAMETER_NAME.fullmatch(name):
            raise NotReadOnly(f"query parameter name {name!r} is not allowed: letters, digits and _ only")
        names.add(name)
    return names


def check_parameters(tree: exp.Expr, parameters: Mapping[str, object]) -> None:
    """Refuse, naming it, any parameter of `parameters` that no typed placeholder of `tree` (the checked query) uses.

    Any value that is not a string or a number, and any placeholder without a value."""
    if len(parameters) > MAX_PARAMETERS:
        raise NotReadOnly(f"at most {MAX_PARAMETERS} query parameters are allowed, got {len(parameters)}")
    typed = _typed_placeholders(tree)
    for name, value in parameters.items():
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            raise NotReadOnly(f"query parameter name {str(name)[:80]!r} is not allowed: letters, digits and _ only")
        if name not in typed:
            raise NotReadOnly(
                f"query parameter {name} is not used by a typed placeholder: write {{{name}:String}} (or another "
                f"type) where the value goes; a value is bound only to a placeholder, never pasted into the SQL "
                f"text, so %({name})s, %s, :{name}, ?, $1 and {{{name}}} are not placeholders"
            )
        if isinstance(value, bool) or not isinstance(value, _VALUE_TYPES):
            raise NotReadOnly(f"query parameter {name} must be a string or a number, not {type(value).__name__}")
    missing = sorted(typed - set(parameters))
    if missing:
        raise NotReadOnly(f"query parameter {missing[0]} has no value: give it in parameters")
