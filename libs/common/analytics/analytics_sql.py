"""The allow-list every analytics query passes before it reaches ClickHouse (docs/analytics.md, "What a query may use").

A query is parsed (sqlglot, ClickHouse dialect) and the whole tree is walked: one `SELECT` (with
`WITH`, `UNION`, subqueries, joins), reading only tables of the `bastion` database (or a `WITH`
name), calling only the functions listed in `FUNCTIONS` and the table functions in
`TABLE_FUNCTIONS`. Anything else is refused with a message naming the part refused; SQL that does
not parse is refused too (fail closed). Tables ClickHouse reads where sqlglot sees a column (the
right side of `IN`) are refused too (`analytics_hidden_tables`), and every parameter must be the
value of a typed placeholder of the checked query (`analytics_params`).

What runs is not the text the caller wrote but the checked tree written out again (`checked`), so
the engine parses exactly what was checked: a comment, an escape or a quoting trick that
sqlglot and ClickHouse would read differently cannot smuggle a call past the check. The function
check reads the calls off that very text: every `name(` in it is a call the engine will make.

Payload columns (`PAYLOAD_COLUMNS`: arguments, results, admin records and their digests) are
refused unless the query says `payloads` (the auditor role); a `*` over a table that holds them
is refused as well, since it would select them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.dialects.clickhouse import ClickHouse
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from libs.common.analytics.analytics_hidden_tables import names_with_query, table_behind_in
from libs.common.analytics.analytics_params import check_parameters
from libs.common.analytics.analytics_refusal import NotReadOnly

__all__ = [
    "AGGREGATE_COMBINATORS",
    "DATABASE",
    "FUNCTIONS",
    "MAX_SQL_CHARS",
    "PAYLOAD_COLUMNS",
    "PAYLOAD_TABLES",
    "TABLE_FUNCTIONS",
    "NotReadOnly",
    "allowed_function",
    "checked",
    "functions_markdown",
]

MAX_SQL_CHARS: Final = 20_000
DATABASE: Final = "bastion"
"""The only database a query may read (its tables and views: events, rollups, checkpoints)."""

FUNCTIONS: Final[dict[str, tuple[str, ...]]] = {
    "aggregate": (
        "count", "sum", "avg", "min", "max", "any", "anyLast", "any_value", "anyHeavy", "argMin", "argMax",
        "uniq", "uniqExact", "uniqCombined", "uniqCombined64", "uniqHLL12",
        "groupArray", "groupUniqArray", "groupArraySample", "topK", "topKWeighted",
        "quantile", "quantiles", "quantileExact", "quantilesExact", "quantileTDigest", "quantilesTDigest",
        "quantileTiming", "quantilesTiming", "quantileDeterministic", "median", "medianExact",
        "stddevPop", "stddevSamp", "varPop", "varSamp", "covarPop", "covarSamp", "corr",
        "sumMap", "minMap", "maxMap", "histogram", "first_value", "last_value",
    ),
    "window": (
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile",
        "lag", "lead", "lagInFrame", "leadInFrame", "nth_value",
    ),
    "date and time": (
        "now", "now64", "today", "yesterday", "toDate", "toDate32", "toDateTime", "toDateTime64",
        "toStartOfYear", "toStartOfQuarter", "toStartOfMonth", "toStartOfWeek", "toMonday", "toStartOfDay",
        "toStartOfHour", "toStartOfMinute", "toStartOfFiveMinutes", "toStartOfTenMinutes",
        "toStartOfFifteenMinutes", "toStartOfInterval", "dateTrunc", "date_trunc",
        "toYear", "toQuarter", "toMonth", "toWeek", "toISOWeek", "toISOYear", "toDayOfYear", "toDayOfMonth",
        "toDayOfWeek", "toHour", "toMinute", "toSecond", "toYYYYMM", "toYYYYMMDD", "toYYYYMMDDhhmmss",
        "toUnixTimestamp", "toUnixTimestamp64Milli", "toUnixTimestamp64Micro", "toUnixTimestamp64Nano",
        "fromUnixTimestamp", "fromUnixTimestamp64Milli", "fromUnixTimestamp64Micro", "fromUnixTimestamp64Nano",
        "dateDiff", "date_diff", "dateAdd", "date_add", "dateSub", "date_sub", "age", "timeSlot",
        "addSeconds", "addMinutes", "addHours", "addDays", "addWeeks", "addMonths", "addYears",
        "subtractSeconds", "subtractMinutes", "subtractHours", "subtractDays", "subtractWeeks",
        "subtractMonths", "subtractYears", "toIntervalSecond", "toIntervalMinute", "toIntervalHour",
        "toIntervalDay", "toIntervalWeek", "toIntervalMonth", "toIntervalYear",
        "formatDateTime", "parseDateTimeBestEffort", "parseDateTimeBestEffortOrNull",
        "parseDateTime64BestEffort", "parseDateTime64BestEffortOrNull", "toTimeZone",
    ),
    "string": (
        "length", "lengthUTF8", "char_length", "empty", "notEmpty", "lower", "upper", "lowerUTF8", "upperUTF8",
        "concat", "concatWithSeparator", "substring", "substr", "substringUTF8", "left", "right",
        "leftPad", "rightPad", "lpad", "rpad", "trim", "trimLeft", "trimRight", "trimBoth", "ltrim", "rtrim",
        "replace", "replaceAll", "replaceOne", "replaceRegexpAll", "replaceRegexpOne",
        "position", "positionCaseInsensitive", "locate", "like", "notLike", "ilike", "notILike", "match",
        "extract", "extractAll", "splitByChar", "splitByString", "splitByRegexp", "arrayStringConcat",
        "startsWith", "endsWith", "reverse", "repeat", "format", "countSubstrings", "multiSearchAny",
        "hex", "unhex", "base64Encode", "base64Decode", "toValidUTF8",
        "cityHash64", "sipHash64", "xxHash64",
    ),
    "math": (
        "abs", "round", "roundBankers", "floor", "ceil", "ceiling", "trunc", "truncate", "sqrt", "cbrt",
        "exp", "exp2", "exp10", "log", "ln", "log2", "log10", "pow", "power", "greatest", "least",
        "intDiv", "intDivOrZero", "modulo", "plus", "minus", "multiply", "divide", "negate", "sign",
        "isNaN", "isFinite", "isInfinite", "ifNotFinite", "gcd", "lcm",
    ),
    "conditional and logic": (
        "if", "multiIf", "ifNull", "nullIf", "coalesce", "assumeNotNull", "isNull", "isNotNull", "toNullable",
        "and", "or", "not", "xor", "in", "notIn", "equals", "notEquals", "less", "greater", "lessOrEquals",
        "greaterOrEquals", "tuple", "tupleElement",
    ),
    "JSON": (
        "JSONHas", "JSONLength", "JSONType", "JSONExtract", "JSONExtractString", "JSONExtractInt",
        "JSONExtractUInt", "JSONExtractFloat", "JSONExtractBool", "JSONExtractRaw", "JSONExtractKeys",
        "JSONExtractArrayRaw", "JSONExtractKeysAndValues", "JSON_VALUE", "JSON_QUERY", "JSON_EXISTS",
        "isValidJSON", "toJSONString",
    ),
    "array and map": (
        "array", "arrayJoin", "arrayMap", "arrayFilter", "arrayExists", "arrayAll", "arrayCount", "arraySum",
        "arrayAvg", "arrayMin", "arrayMax", "arraySort", "arrayReverseSort", "arrayDistinct", "arrayUniq",
        "arrayEnumerate", "arrayConcat", "arraySlice", "arrayElement", "arrayFirst", "arrayLast", "arrayZip",
        "arrayFlatten", "arrayCompact", "arrayReverse", "arrayIntersect", "arrayCumSum", "arrayDifference",
        "arrayPushBack", "arrayPushFront", "has", "hasAll", "hasAny", "indexOf", "countEqual", "range",
        "map", "mapKeys", "mapValues", "mapContains",
    ),
    "type conversion": (
        "CAST", "accurateCastOrNull", "toString", "toFixedString", "toTypeName", "toBool",
        "toInt8", "toInt16", "toInt32", "toInt64", "toUInt8", "toUInt16", "toUInt32", "toUInt64",
        "toFloat32", "toFloat64", "toDecimal32", "toDecimal64", "toDecimal128",
        "toInt64OrZero", "toInt64OrNull", "toUInt64OrZero", "toUInt64OrNull", "toFloat64OrZero",
        "toFloat64OrNull", "toDateOrNull", "toDateTimeOrNull", "toLowCardinality",
        # type names written with arguments (`CAST(x AS Nullable(String))`): they read like calls
        "Nullable", "LowCardinality", "Array", "Tuple", "Map", "FixedString", "DateTime", "DateTime64",
        "Decimal", "Decimal32", "Decimal64", "Decimal128",
    ),
}  # fmt: skip
"""Every function a query may call, by what it is for. Nothing here reads a file, a URL, another
server, a dictionary, the engine's settings or the host: those functions (`file`, `url`, `s3`,
`remote`, `dictGet`, `getSetting`, `currentUser`, `hostName`, ...) are refused because they are
not listed. Matching ignores case."""

AGGREGATE_COMBINATORS: Final = (
    "If", "Array", "Merge", "State", "MergeState", "SimpleState", "ForEach", "Distinct", "OrNull",
    "OrDefault", "Map", "ArgMin", "ArgMax", "Resample",
)  # fmt: skip
"""Suffixes an aggregate may carry (`countIf`, `quantilesMerge`, `sumIfOrNull`): a combinator
changes how an aggregate folds its rows, never what it can reach."""

TABLE_FUNCTIONS: Final = ("numbers",)
"""Table functions a query may read from: `numbers(n)` counts (to fill gaps in a series); every
other one (`file`, `url`, `s3`, `remote`, `cluster`, `merge`, `view`, `input`, `format`,
`executable`, `dictionary`, ...) reads something outside the database or another table."""

PAYLOAD_COLUMNS: Final = ("arguments", "result", "arguments_sha256", "result_sha256", "before", "after")
"""Columns holding what agents sent and got (and admin records), or digests of them: readable only
by a query with `payloads` (the auditor role)."""
PAYLOAD_TABLES: Final = ("audit_events",)
"""Tables that hold `PAYLOAD_COLUMNS`: a `*` over one would select them."""

_STRUCTURE: Final = frozenset(
    {
        "AS", "FROM", "JOIN", "USING", "OVER", "ON", "IN", "EXISTS", "AND", "OR", "NOT", "WHERE", "HAVING",
        "PREWHERE", "SELECT", "BY", "WHEN", "THEN", "ELSE", "CASE", "DISTINCT", "ALL", "EXCEPT", "UNION",
        "INTERSECT", "LIKE", "ILIKE", "IS", "BETWEEN", "LIMIT", "OFFSET", "WITH", "INTERVAL", "GLOBAL", "ANY",
    }
)  # fmt: skip
"""Words that may stand before `(` without being a call of a function outside the list: clause
keywords (`FROM (`, `AS (`, `OVER (`) and operators whose function forms are harmless (`in`, `and`)."""
_ALLOWED: Final = frozenset(name.lower() for names in FUNCTIONS.values() for name in names)
_AGGREGATES: Final = frozenset(name.lower() for name in FUNCTIONS["aggregate"])
_COMBINATORS: Final = tuple(sorted((c.lower() for c in AGGREGATE_COMBINATORS), key=len, reverse=True))
_TABLE_FUNCTIONS: Final = frozenset(TABLE_FUNCTIONS)
_PAYLOADS: Final = frozenset(PAYLOAD_COLUMNS)
_DIALECT: Final = ClickHouse()
_NOT_NAMES: Final = frozenset(
    {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.L_PAREN, TokenType.COMMA, TokenType.STRING, TokenType.NUMBER}
)


def allowed_function(name: str) -> bool:
    """Whether `name` is a listed function, or a listed aggregate with combinators (`sumIfOrNull`)."""
    lowered = name.lower()
    if lowered in _ALLOWED:
        return True
    while True:
        suffix = next((c for c in _COMBINATORS if lowered.endswith(c) and len(lowered) > len(c)), None)
        if suffix is None:
            return False
        lowered = lowered[: -len(suffix)]
        if lowered in _AGGREGATES:
            return True


@dataclass(frozen=True, slots=True)
class _Parsed:
    tree: exp.Query
    text: str


def _parse(text: str) -> exp.Expr:
    try:
        statements = [s for s in sqlglot.parse(text, read="clickhouse") if s is not None]
    except ParseError as exc:
        raise NotReadOnly(f"not valid SQL: {exc.errors[0]['description'] if exc.errors else exc}") from None
    except SqlglotError as exc:  # the tokenizer's errors are not ParseErrors
        raise NotReadOnly(f"not valid SQL: {exc}") from None
    except RecursionError:
        raise NotReadOnly("not valid SQL: nested too deeply") from None
    if len(statements) != 1:
        raise NotReadOnly(f"exactly one statement is allowed, got {len(statements)}")
    return statements[0]


def _rewritten(statement: exp.Expr) -> str:
    try:
        return statement.sql(dialect="clickhouse", comments=False)
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise NotReadOnly(f"the query cannot be checked: {exc}") from None


def _query(text: str) -> _Parsed:
    statement = _parse(text)
    if not isinstance(statement, exp.Query):
        verb = text.split(None, 1)[0].upper() if isinstance(statement, exp.Command) else statement.key.upper()
        raise NotReadOnly(f"only SELECT (or WITH ... SELECT) is allowed, not {verb}")
    return _Parsed(statement, _rewritten(statement))


def _check_table(table: exp.Table) -> None:
    source = table.this
    if isinstance(source, exp.Placeholder):
        raise NotReadOnly("a table cannot be a query parameter: name a table of the bastion database")
    if isinstance(source, exp.Func):
        name = source.name if isinstance(source, exp.Anonymous) else source.sql_name()
        if table.args.get("db") is not None or table.args.get("catalog") is not None:
            raise NotReadOnly(  # `db.name(...)` is a parameterized view of that database to ClickHouse
                f"table {table.sql(dialect='clickhouse')} is not allowed: "
                "a table function is written without a database"
            )
        if name.lower() not in _TABLE_FUNCTIONS:
            raise NotReadOnly(
                f"table function {name}() is not allowed (only {', '.join(TABLE_FUNCTIONS)}(); "
                "queries read the bastion database)"
            )
        return
    if not isinstance(source, exp.Identifier):
        written = table.sql(dialect="clickhouse")
        raise NotReadOnly(f"table {written} is not allowed: name a table of the bastion database")
    if table.args.get("catalog") is not None:
        raise NotReadOnly(f"table {table.sql(dialect='clickhouse')} is not allowed: name it as bastion.<table>")
    database = table.text("db")
    if database and database != DATABASE:
        raise NotReadOnly(f"database {database} is not allowed: queries read the bastion database only")


def _check_node(node: exp.Expr) -> None:
    if isinstance(node, exp.Command | exp.DDL | exp.DML):
        raise NotReadOnly(f"only SELECT is allowed, found {node.key.upper()}")
    if isinstance(node, exp.Into) or node.args.get("into") is not None:
        raise NotReadOnly("INTO (OUTFILE) is not allowed: the answer is returned, never written")
    # a clause is an argument of the query (or table) node: a function's own `format` argument
    # (`formatDateTime(ts, '%F')` parses as TimeToStr(format=...)) is a value, not the answer's format
    clause_holder = isinstance(node, exp.Query | exp.Table)
    if clause_holder and node.args.get("settings"):
        raise NotReadOnly("a SETTINGS clause is not allowed (limits are set by Bastion)")
    if clause_holder and node.args.get("format") is not None:
        raise NotReadOnly("a FORMAT clause is not allowed (the answer is always JSON rows)")
    if isinstance(node, exp.Placeholder) and not isinstance(node.args.get("kind"), exp.DataType):
        raise NotReadOnly(
            f"query parameter {node.name or '?'} must have a value type like {{name:String}}, not "
            f"{node.args.get('kind') or 'none'} (parameters are values, never names)"
        )
    if isinstance(node, exp.Table):
        _check_table(node)
    hidden = table_behind_in(node)
    if hidden is not None:
        raise NotReadOnly(
            f"IN {hidden.sql(dialect='clickhouse')} is not allowed: ClickHouse reads a name on the right of IN as "
            "a table; write the values (IN (1, 2)), a parameter (IN {ids:Array(String)}) or a subquery "
            "(IN (SELECT ... FROM bastion.<table>))"
        )


def _calls(tokens: list[Token]) -> Iterator[str]:
    """The names the engine will call: every word right before `(` but the clause keywords."""
    for token, following in itertools.pairwise(tokens):
        if following.token_type != TokenType.L_PAREN:
            continue
        if token.token_type in _NOT_NAMES:
            continue  # `quantiles(0.5)(x)`, `((x))`, `f(a, (b))`, `'text' (`: no name is called
        if token.token_type not in (TokenType.VAR, TokenType.IDENTIFIER) and not token.text[:1].isalpha():
            continue  # an operator: `a + (b)`, `x = (1)`, `-> (`
        if token.token_type != TokenType.IDENTIFIER and token.text.upper() in _STRUCTURE:
            continue
        yield token.text


def _check_calls(text: str) -> None:
    try:
        tokens = _DIALECT.tokenize(text)
    except SqlglotError as exc:
        raise NotReadOnly(f"the query cannot be checked: {exc}") from None
    for name in _calls(tokens):
        if not allowed_function(name) and name.lower() not in _TABLE_FUNCTIONS:
            raise NotReadOnly(
                f"function {name}() is not allowed (it is not on the analytics allow-list; docs/analytics.md)"
            )


def _reads_payload_table(tree: exp.Expr) -> bool:
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Identifier) and table.name.lower() in PAYLOAD_TABLES:
            if table.text("db") or not names_with_query(table):
                return True
    return False


def _check_payloads(tree: exp.Expr) -> None:
    for name in tree.find_all(exp.Identifier):
        if name.name.lower() not in _PAYLOADS:
            continue
        parent = name.parent
        if (isinstance(parent, exp.Alias) and name.arg_key == "alias") or isinstance(parent, exp.TableAlias):
            continue  # naming an output `result` reads nothing; using that name later is refused below
        raise NotReadOnly(
            f"column {name.name} holds call payloads: it needs the auditor role (arguments, results, "
            "admin records and their digests)"
        )
    if not _reads_payload_table(tree):
        return
    for star in tree.find_all(exp.Star):
        if isinstance(star.parent, exp.Count):
            continue  # count(*) counts rows
        raise NotReadOnly(
            "* over bastion.audit_events would select the payload columns "
            f"({', '.join(PAYLOAD_COLUMNS)}): name the columns you need"
        )


def _check(parsed: _Parsed, text: str, payloads: bool) -> None:
    for node in parsed.tree.walk():
        _check_node(node)
    _check_calls(text)
    if not payloads:
        _check_payloads(parsed.tree)


def checked(sql: str, *, payloads: bool = False, parameters: Mapping[str, object] | None = None) -> str:
    """The SQL the engine runs for `sql`: the checked tree written out again (no comments, no trailing semicolon).

    Raises `NotReadOnly`, naming the part refused, for anything the allow-list does not admit;
    `payloads`: the caller may read `PAYLOAD_COLUMNS`; `parameters`: the values the query is run with,
    each of which must have a typed placeholder (`analytics_params`)."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise NotReadOnly("the query is empty")
    if len(text) > MAX_SQL_CHARS:
        raise NotReadOnly(f"the query is longer than {MAX_SQL_CHARS} characters")
    parsed = _query(text)
    _check(parsed, text, payloads)  # as written first, so a refusal names the part as the caller wrote it
    again = _query(parsed.text)  # what the engine will parse, checked as such
    if again.text != parsed.text:
        raise NotReadOnly("the query cannot be checked: it does not read back as written")
    _check(again, again.text, payloads)
    check_parameters(again.tree, parameters or {})
    return again.text


def functions_markdown(categories: Iterable[str] = ()) -> str:
    """The allow-list as the Markdown table of docs/analytics.md (a test keeps the two equal)."""
    chosen = list(categories) or list(FUNCTIONS)
    lines = ["| kind | functions |", "|---|---|"]
    lines += [f"| {kind} | {', '.join(f'`{name}`' for name in FUNCTIONS[kind])} |" for kind in chosen]
    lines.append(f"| aggregate combinators | {', '.join(f'`-{c}`' for c in AGGREGATE_COMBINATORS)} |")
    lines.append(f"| table functions | {', '.join(f'`{name}()`' for name in TABLE_FUNCTIONS)} |")
    return "\n".join(lines)
