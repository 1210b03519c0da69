"""`$ref` resolution within and across documents.

A reference is a document (relative to the one it is written in) and a JSON pointer into it (RFC 6901,
percent-decoded as a URI fragment).

Objects other than schemas (parameters, request bodies, responses, path items) are followed through
chains of references here (`follow`); schemas keep theirs, and `schemas.py` decides what to inline
and what to keep as `$defs`, so a recursive schema never expands without end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from .source import DocumentError, Reader

__all__ = ["Location", "RefError", "Resolver", "pointer_text"]

_MAX_HOPS: Final = 32


class RefError(DocumentError):
    """A `$ref` that cannot be followed (missing target, unsupported form, forbidden document)."""


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """Where a node lives: its document and the JSON pointer to it."""

    document: str
    pointer: str

    @property
    def uri(self) -> str:
        return f"{self.document}#{self.pointer}"


def pointer_text(parts: list[str] | tuple[str, ...]) -> str:
    """`["paths", "/pets/{id}"]` -> `/paths/~1pets~1{id}`."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _pointer_parts(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise RefError(f"#{pointer}: only JSON pointers are supported as fragments, not anchors")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


class Resolver:
    """Resolves references for one API; documents are read through `reader` (bounded, narrowed)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.root = reader.root

    def document(self, location: str) -> Any:
        return self.reader.read(location)

    def split(self, ref: Any, base: str) -> Location:
        """The location `ref` (a `$ref` value written in document `base`) names."""
        if not isinstance(ref, str):
            raise RefError(f"a $ref must be a string, got {type(ref).__name__}")
        target, _, fragment = ref.partition("#")
        document = self.reader.resolve(target, base) if target else base
        return Location(document, unquote(fragment))

    def at(self, location: Location) -> Any:
        """The node at `location`; `RefError` when there is none."""
        node = self.document(location.document)
        for part in _pointer_parts(location.pointer):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise RefError(f"unresolvable $ref {location.pointer!r}{self._in(location)}: nothing there")
        return node

    def target(self, ref: Any, base: str) -> tuple[Location, Any]:
        location = self.split(ref, base)
        return location, self.at(location)

    def follow(self, node: Any, base: str) -> tuple[Any, str]:
        """`node` with its chain of `$ref`s followed, and the document it was found in."""
        seen: list[str] = []
        while isinstance(node, dict) and "$ref" in node:
            location, node = self.target(node["$ref"], base)
            base = location.document
            if location.uri in seen or len(seen) >= _MAX_HOPS:
                raise RefError(f"$ref {node_name(location)} refers to itself")
            seen.append(location.uri)
        return node, base

    def _in(self, location: Location) -> str:
        return "" if location.document == self.root else f" in {location.document}"


def node_name(location: Location) -> str:
    """A short readable name of where a node lives, for messages."""
    return f"'#{location.pointer}'"
