"""Where ClickHouse reads a table that sqlglot does not show as one.

(Docs/analytics.md, "What a query may use"), measured on the embedded engine:

- The right side of `IN` (`NOT IN`, `GLOBAL IN`, the functions `in` and `notIn`): a name there,
  bare or in parentheses (`x IN system.one`, `x IN (system.one)`, `notIn(x, system.one)`), is a
  table to ClickHouse and a column to sqlglot, so the table check never saw it. Only a list of
  values, a parameter or a subquery may stand there.
- A name in `FROM` that matches a `WITH` name is that WITH query only where ClickHouse says so: a
  `WITH <expression> AS t` names a value, not a query (`FROM t` still reads the table `t`); a WITH
  query's own body reads the table of its name (`WITH t AS (SELECT * FROM t)`); and a WITH query
  is seen only inside the query that declares it. Where in doubt the name is taken for the table,
  which only makes the payload check stricter (a `*` over it is refused).
"""

from __future__ import annotations

from typing import Final

from sqlglot import exp

__all__ = ["names_with_query", "table_behind_in"]

_SET_FUNCTIONS: Final = frozenset(
    {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin", "globalnotnullin"}
)
"""Functions whose second argument ClickHouse reads as a set: a name there is a table."""
_NAMES: Final = (exp.Column, exp.Identifier, exp.Dot, exp.Table, exp.Var)


def _unwrapped(node: exp.Expr | None) -> exp.Expr | None:
    while isinstance(node, exp.Paren | exp.Alias):
        node = node.this
    return node


def table_behind_in(node: exp.Expr) -> exp.Expr | None:
    """The name on the right of `node` if ClickHouse reads that side as a table; else None.

    `node` is an `IN` (or an `in`/`notIn` call)."""
    source: exp.Expr | None = None
    if isinstance(node, exp.In):
        if node.args.get("field") is not None:
            source = node.args["field"]
        elif len(node.expressions) == 1:  # `x IN (name)`: one name in parentheses is still a table
            source = node.expressions[0]
    elif isinstance(node, exp.Anonymous) and node.name.lower() in _SET_FUNCTIONS and len(node.expressions) == 2:
        source = node.expressions[1]
    source = _unwrapped(source)
    return source if isinstance(source, _NAMES) else None


def names_with_query(table: exp.Table) -> bool:
    """Whether `table` names a WITH query in its scope rather than a table of the database.

    `table` is written without a database."""
    name = table.name.lower()
    came_through: exp.CTE | None = None
    node: exp.Expr | None = table
    while node is not None:
        if isinstance(node, exp.CTE):
            came_through = node
        declared = node.args.get("with_") if isinstance(node, exp.Query) else None
        if isinstance(declared, exp.With) and name in _queries_seen(declared, came_through):
            return True
        node = node.parent
    return False


def _queries_seen(declared: exp.With, came_through: exp.CTE | None) -> set[str]:
    """The WITH queries of `declared` that a name inside `came_through` may mean.

    `came_through` is one of them, or None for the query that declares them. In a WITH query's body
    only those declared before it: fewer than ClickHouse sees, so that a doubt reads as the table."""
    ctes = list(declared.expressions)
    if came_through is not None and any(cte is came_through for cte in ctes):
        ctes = ctes[: next(i for i, cte in enumerate(ctes) if cte is came_through)]
    return {cte.alias_or_name.lower() for cte in ctes if not cte.args.get("scalar") and isinstance(cte.this, exp.Query)}
