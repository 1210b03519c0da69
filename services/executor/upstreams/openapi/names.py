"""Tool names for operations: stable, readable, valid everywhere (`[A-Za-z0-9_-]`, at most 64 characters).

A name comes from the curation's rename, else the operationId (characters outside the set become `_`),
else the method and path (`GET /pets/{petId}` is `get_pets_petId`). Names that come out alike are told
apart by a short hash of each operation's method and path, except the one name that is exactly what
it says (a rename first, else an operationId used unchanged), which keeps it. So a name depends only on its
own operation and the ones it collides with, never on the order of the document or on operations
added elsewhere in it. The gateway then namespaces each name like any tool (`libs.common.contracts.naming`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Final

from .operations import Operation

__all__ = ["MAX_TOOL_NAME", "identities", "tool_names"]

MAX_TOOL_NAME: Final = 64
_INVALID: Final = re.compile(r"[^A-Za-z0-9_-]+")
_TEMPLATE: Final = re.compile(r"\{([^{}]*)\}")


def _digest(text: str, size: int) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).hexdigest()


def _fit(name: str, source: str) -> str:
    """`name` cut to the limit, with a hash of `source` so two long names cut alike stay apart."""
    if len(name) <= MAX_TOOL_NAME:
        return name
    suffix = _digest(source, 4)
    return f"{name[: MAX_TOOL_NAME - len(suffix) - 1].rstrip('_-')}_{suffix}"


def _clean(text: str) -> str:
    return _INVALID.sub("_", text).strip("_")


def _from_path(operation: Operation) -> str:
    segments = [_clean(_TEMPLATE.sub(r"\1", s)) for s in operation.path.split("/")]
    return "_".join([operation.method, *(s for s in segments if s)]) if any(segments) else f"{operation.method}_root"


def _natural(operation: Operation, renames: Mapping[str, str]) -> tuple[str, int]:
    """The name the operation asks for, and how firmly.

    2 a rename, 1 an operationId used unchanged, 0 a name made up (characters replaced, cut, or from the
    method and path)."""
    renamed = renames.get(operation.operation_id or "") or renames.get(operation.key)
    if renamed is not None:
        return renamed, 2
    if operation.operation_id is not None:
        cleaned = _clean(operation.operation_id)
        if re.search(r"[A-Za-z0-9]", cleaned):
            fitted = _fit(cleaned, operation.operation_id)
            return fitted, int(fitted == operation.operation_id)
    return _fit(_from_path(operation), operation.key), 0


def tool_names(operations: Sequence[Operation], renames: Mapping[str, str]) -> list[str]:
    """One name per operation, in their order; `renames` maps an operationId (or `METHOD /path`) to a name."""
    wanted = [_natural(op, renames) for op in operations]
    names = [name for name, _ in wanted]
    size = 3
    while True:
        owners: dict[str, list[int]] = {}
        for index, name in enumerate(names):
            owners.setdefault(name, []).append(index)
        clashes = [indexes for indexes in owners.values() if len(indexes) > 1]
        if not clashes:
            return names
        for indexes in clashes:
            claims = [wanted[i][1] if names[i] == wanted[i][0] else 0 for i in indexes]
            best = max(claims)
            keeper = indexes[claims.index(best)] if best and claims.count(best) == 1 else None
            for i in indexes:
                if i != keeper:
                    suffix = _digest(operations[i].key, size)
                    base = wanted[i][0][: MAX_TOOL_NAME - len(suffix) - 1].rstrip("_-")
                    names[i] = f"{base}_{suffix}"
        size += 2


def identities(operation: Operation, name: str) -> tuple[str, ...]:
    """The operation's stable names besides its tool name `name`.

    Its operationId (else `METHOD /path`, the key its curation is written under) and the name it has
    without a rename. Cedar policies judge the tool under each (docs/policy.md), so renaming it in
    `operations.<id>.name` keeps it in a policy written against the name it had."""
    stable = (operation.operation_id or operation.key, _natural(operation, {})[0])
    return tuple(n for n in dict.fromkeys(stable) if n != name)
