"""Document schemas to self-contained JSON Schema 2020-12, as tool definitions need them.

Two steps. `SchemaSet.normalized` turns one schema node into 2020-12 without following its `$ref`s:
OpenAPI 3.0 (and Swagger 2.0) specifics become their 2020-12 equivalent (`nullable` a `"null"` type,
`example` `examples`, boolean `exclusiveMinimum` / `exclusiveMaximum` the numeric form, a
`discriminator` over `oneOf` / `anyOf` a `const` of its property in each branch, `type: file` a binary
string), keywords that are not JSON Schema (`xml`, `externalDocs`, `x-*`) are dropped, and so are
properties that do not go in that direction (`readOnly` ones from inputs, `writeOnly` ones from
outputs); each `$ref` is kept as a `Location`. Schemas at a location are normalized once per API.

Then a `Bundle` puts the schemas of one tool together: a referenced schema is inlined where it is
used once and is not recursive, and kept once under `$defs` (its `$ref` rewritten to `#/$defs/<name>`)
where it is used several times or refers back to itself, so recursion never expands without end and a
schema shared by many properties is written once. The result depends only on the document: the same
document gives byte-identical schemas (definition pinning relies on it).

Refused, with where: `$id`, `$dynamicRef`, `$dynamicAnchor`, `$recursiveRef`, `$recursiveAnchor`
(they change how references resolve), anchors as `$ref` fragments, and references that lead nowhere.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any, Final, Literal

from .refs import Location, RefError, Resolver
from .source import DocumentError, is_url

__all__ = ["BOUND_KEYWORDS", "Bundle", "Direction", "SchemaError", "SchemaSet", "is_object_schema"]

Direction = Literal["input", "output"]
Dialect = Literal["3.0", "3.1"]

_MAX_DEPTH: Final = 128
_MAX_NODES: Final = 5_000_000
"""Schema nodes normalized for one API at most: YAML aliases can make a small file a huge tree."""

_ANNOTATIONS: Final = frozenset(
    {"title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples", "$comment"}
)
BOUND_KEYWORDS: Final = (
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
)
"""Bounds a value must keep, under the same names in Swagger 2.0 (schemas and parameters) and every
JSON Schema dialect an OpenAPI document may use."""
_KEYWORDS: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "multipleOf",
        *BOUND_KEYWORDS,
        "maxContains",
        "minContains",
        "maxProperties",
        "minProperties",
        "required",
        "dependentRequired",
        "format",
        "contentEncoding",
        "contentMediaType",
        "title",
        "description",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "examples",
    }
)
_ONE_SCHEMA: Final = frozenset(
    {
        "additionalProperties",
        "propertyNames",
        "items",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
_SCHEMA_LISTS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS: Final = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})
_REFUSED: Final = ("$id", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")
_TYPES: Final = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
_DEF_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]+")


class SchemaError(DocumentError):
    """A schema uses what Bastion does not support, or a reference leads nowhere; names where."""


def is_object_schema(schema: Any) -> bool:
    """True for a schema whose instances are objects only (what MCP requires of an `outputSchema`)."""
    return isinstance(schema, dict) and schema.get("type") == "object"


class _Ref:
    """A `$ref` inside a normalized tree: where it points, and its sibling keywords (3.1 allows them)."""

    __slots__ = ("location", "siblings")

    def __init__(self, location: Location, siblings: dict[str, Any]) -> None:
        self.location = location
        self.siblings = siblings


class SchemaSet:
    """The schemas of one API, normalized once per location and direction."""

    def __init__(self, resolver: Resolver, dialect: Dialect) -> None:
        self.resolver = resolver
        self.dialect = dialect
        self._cache: dict[tuple[Location, Direction], Any] = {}
        self._nodes = 0

    def at(self, location: Location, direction: Direction) -> Any:
        key = (location, direction)
        if key not in self._cache:
            node = self.resolver.at(location)
            self._cache[key] = self.normalized(node, location.document, direction, location.pointer)
        return self._cache[key]

    def normalized(self, node: Any, base: str, direction: Direction, where: str, depth: int = 0) -> Any:
        """`node` (written in document `base`) as 2020-12, its `$ref`s kept as locations."""
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise SchemaError(f"the document's schemas hold more than {_MAX_NODES:,} nodes")
        if depth > _MAX_DEPTH:
            raise SchemaError(f"schema at '#{where}' nests deeper than {_MAX_DEPTH} levels")
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise SchemaError(f"schema at '#{where}' is a {type(node).__name__}, not an object")
        for keyword in _REFUSED:
            if keyword in node:
                raise SchemaError(f"schema at '#{where}' uses {keyword}, which is not supported")
        if "$ref" in node:
            return self._ref(node, base, direction, where, depth)
        return self._schema(node, base, direction, where, depth)

    def _ref(self, node: dict[str, Any], base: str, direction: Direction, where: str, depth: int) -> _Ref:
        try:
            location = self.resolver.split(node["$ref"], base)
            self.resolver.at(location)
        except RefError as exc:
            raise SchemaError(f"schema at '#{where}': {exc}") from None
        siblings: dict[str, Any]
        if self.dialect == "3.0":  # siblings of a 3.0 $ref are ignored, bar the annotations readers rely on
            siblings = {k: node[k] for k in ("description", "title") if k in node}
        else:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            siblings = self._schema(rest, base, direction, where, depth) if rest else {}
        return _Ref(location, siblings)

    def _schema(self, node: dict[str, Any], base: str, direction: Direction, where: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            at = f"{where}/{key}"
            if key in _KEYWORDS:
                out[key] = value
            elif key in _ONE_SCHEMA:
                if key == "items" and isinstance(value, list):  # draft 4 tuple form: 2020-12 prefixItems
                    out["prefixItems"] = [
                        self.normalized(v, base, direction, f"{at}/{i}", depth + 1) for i, v in enumerate(value)
                    ]
                else:
                    out[key] = self.normalized(value, base, direction, at, depth + 1)
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                out[key] = [self.normalized(v, base, direction, f"{at}/{i}", depth + 1) for i, v in enumerate(value)]
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {
                    name: self.normalized(v, base, direction, f"{at}/{_escaped(name)}", depth + 1)
                    for name, v in value.items()
                }
            elif key == "example" and "examples" not in node:
                out["examples"] = [value]
        if node.get("type") == "file":
            out["type"], out["format"] = "string", "binary"
        self._fix_bounds(out, node)
        self._fix_types(out)
        if node.get("nullable") is True or node.get("x-nullable") is True:
            out = _nullable(out)
        if isinstance(node.get("discriminator"), dict):
            self._discriminate(out, node["discriminator"], base)
        if isinstance(out.get("pattern"), str) and not _compiles(out["pattern"]):
            del out["pattern"]  # an ECMA-only construct Python cannot check: not a reason to refuse the tool
        if isinstance(out.get("examples"), list) and direction == "output":
            del out["examples"]
        if not isinstance(out.get("examples", []), list):
            out["examples"] = [out["examples"]]
        self._prune(out, direction)
        return out

    def _fix_bounds(self, out: dict[str, Any], node: dict[str, Any]) -> None:
        """3.0's boolean `exclusiveMinimum: true` next to `minimum` is 2020-12's numeric one."""
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            flag = node.get(exclusive)
            if isinstance(flag, bool):
                del out[exclusive]
                if flag and isinstance(node.get(bound), int | float):
                    out[exclusive] = out.pop(bound)

    def _fix_types(self, out: dict[str, Any]) -> None:
        kind = out.get("type")
        if isinstance(kind, str) and kind not in _TYPES:
            del out["type"]  # `type: any` and friends: no constraint is what was meant
        elif isinstance(kind, list):
            kept = [k for k in kind if k in _TYPES]
            if kept:
                out["type"] = kept
            else:
                del out["type"]
        if "required" in out and not (isinstance(out["required"], list) and out["required"]):
            del out["required"]  # 3.0 `required: []` and the draft-3 boolean form are no constraint

    def _discriminate(self, out: dict[str, Any], discriminator: dict[str, Any], base: str) -> None:
        """Each `oneOf` / `anyOf` branch that is a reference gets its discriminator value as a `const` of the property.

        (JSON Schema's own way to tell the branches apart)."""
        prop = discriminator.get("propertyName")
        if not isinstance(prop, str):
            return
        values: dict[Location, list[str]] = {}
        mapping = discriminator.get("mapping")
        for value, target in (mapping or {}).items() if isinstance(mapping, dict) else ():
            ref = (
                target
                if isinstance(target, str) and ("#" in target or "/" in target)
                else f"#/components/schemas/{target}"
            )
            try:
                values.setdefault(self.resolver.split(ref, base), []).append(str(value))
            except RefError:
                continue
        for keyword in ("oneOf", "anyOf"):
            branches = out.get(keyword)
            if not isinstance(branches, list) or not all(isinstance(b, _Ref) for b in branches):
                continue
            tagged: list[Any] = []
            for branch in branches:
                names = values.get(branch.location) or [branch.location.pointer.rsplit("/", 1)[-1]]
                const: dict[str, Any] = {"const": names[0]} if len(names) == 1 else {"enum": names}
                tagged.append({"allOf": [branch, {"properties": {prop: const}, "required": [prop]}]})
            out[keyword] = tagged

    def _prune(self, out: dict[str, Any], direction: Direction) -> None:
        """Properties that do not travel in `direction`: readOnly ones are not sent, writeOnly ones not answered."""
        properties = out.get("properties")
        if not isinstance(properties, dict):
            return
        hidden = "readOnly" if direction == "input" else "writeOnly"
        dropped = [
            name
            for name, schema in properties.items()
            if (isinstance(schema, dict) and schema.get(hidden) is True)
            or (isinstance(schema, _Ref) and schema.siblings.get(hidden) is True)
        ]
        if not dropped:
            return
        out["properties"] = {k: v for k, v in properties.items() if k not in dropped}
        if isinstance(out.get("required"), list):
            required = [r for r in out["required"] if r not in dropped]
            if required:
                out["required"] = required
            else:
                del out["required"]


def _nullable(out: dict[str, Any]) -> dict[str, Any]:
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"] if kind != "null" else kind
    elif isinstance(kind, list):
        if "null" not in kind:
            out["type"] = [*kind, "null"]
    else:
        annotations = {k: out.pop(k) for k in list(out) if k in _ANNOTATIONS}
        return {**annotations, "anyOf": [out, {"type": "null"}]}
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


def _escaped(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _subschemas(tree: dict[str, Any]) -> Iterator[Any]:
    """The subschemas directly inside a normalized schema."""
    for key, value in tree.items():
        if key in _ONE_SCHEMA:
            yield value
        elif key in _SCHEMA_LISTS:
            yield from value
        elif key in _SCHEMA_MAPS:
            yield from value.values()


def _refs(tree: Any) -> Iterator[_Ref]:
    if isinstance(tree, _Ref):
        yield tree
        yield from _refs(tree.siblings)
    elif isinstance(tree, dict):
        for sub in _subschemas(tree):
            yield from _refs(sub)


class Bundle:
    """The schemas of one tool in one direction: added as parts, then emitted with one shared `$defs`."""

    def __init__(self, schemas: SchemaSet, direction: Direction) -> None:
        self._schemas = schemas
        self._direction = direction
        self._parts: list[Any] = []
        self._inline: set[Location] = set()
        self._names: dict[Location, str] = {}
        self._planned = False

    def add(self, node: Any, base: str, where: str) -> Any:
        """Normalize one part (a parameter's schema, the body's): the handle `emit` takes."""
        tree = self._schemas.normalized(node, base, self._direction, where)
        self._parts.append(tree)
        self._planned = False
        return tree

    def _tree(self, location: Location) -> Any:
        return self._schemas.at(location, self._direction)

    def _plan(self) -> None:
        """Which references are inlined (used once, not recursive) and the `$defs` name of the others."""
        edges: dict[Location, list[Location]] = {}
        sites: dict[Location, int] = {}
        pending = [ref.location for part in self._parts for ref in _refs(part)]
        for location in pending:
            sites[location] = sites.get(location, 0) + 1
        while pending:
            location = pending.pop()
            if location in edges:
                continue
            edges[location] = [ref.location for ref in _refs(self._tree(location))]
            for target in edges[location]:
                sites[target] = sites.get(target, 0) + 1
                pending.append(target)
        recursive = _on_cycles(edges)
        self._inline = {loc for loc, count in sites.items() if count == 1 and loc not in recursive}
        self._names = {}
        used: set[str] = set()
        for location in sorted(set(edges) - self._inline):
            name = (
                _DEF_NAME.sub("_", location.pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~"))
                or "schema"
            )
            if name in used:
                name = f"{name}_{_stable_id(location, self._schemas.resolver.root)}"
            used.add(name)
            self._names[location] = name
        self._planned = True

    def emit(self, part: Any) -> Any:
        """The JSON of a part `add` returned, references inlined or pointing into `defs()`."""
        if not self._planned:
            self._plan()
        return self._emit(part)

    def defs(self) -> dict[str, Any]:
        if not self._planned:
            self._plan()
        return {
            self._names[loc]: self._emit(self._tree(loc)) for loc in sorted(self._names, key=self._names.__getitem__)
        }

    def _emit(self, tree: Any) -> Any:
        if isinstance(tree, _Ref):
            siblings = self._emit(tree.siblings) if tree.siblings else {}
            if tree.location in self._inline:
                return _merged(self._emit(self._tree(tree.location)), siblings)
            return {"$ref": f"#/$defs/{self._names[tree.location]}", **siblings}
        if not isinstance(tree, dict):
            return tree
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if key in _ONE_SCHEMA:
                out[key] = self._emit(value)
            elif key in _SCHEMA_LISTS:
                out[key] = [self._emit(v) for v in value]
            elif key in _SCHEMA_MAPS:
                out[key] = {name: self._emit(v) for name, v in value.items()}
            else:
                out[key] = value
        return out


def _merged(target: Any, siblings: dict[str, Any]) -> Any:
    """An inlined reference with its sibling keywords: merged when they only annotate, else `allOf`."""
    if not siblings:
        return target
    if isinstance(target, dict) and set(siblings) <= _ANNOTATIONS:
        return {**target, **siblings}
    return {"allOf": [target], **siblings}


def _on_cycles(edges: dict[Location, list[Location]]) -> set[Location]:
    """The locations that can reach themselves (Tarjan's strongly connected components, iteratively)."""
    index: dict[Location, int] = {}
    low: dict[Location, int] = {}
    stack: list[Location] = []
    on_stack: set[Location] = set()
    cyclic: set[Location] = set()
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[Location, int]] = [(start, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, [])
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, []):
                    cyclic.update(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cyclic


def _stable_id(location: Location, root: str) -> str:
    """A short hash of where a schema lives, the same on every machine (relative to the root document)."""
    document = location.document
    if not is_url(document) and not is_url(root):
        document = document.removeprefix(root.rsplit("/", 1)[0])
    if document == root:
        document = ""
    return hashlib.blake2b(f"{document}#{location.pointer}".encode(), digest_size=4).hexdigest()
