"""Needs: what agents ask for when they want a tool, written down ahead of time.

A tool's description says what it does; an agent says what it wants ("sign off on the MR" for
`approve_merge_request`). Search embeds a tool's known needs beside its definition and ranks by
both (`vectors.VectorStore`), so a need phrased the way agents phrase them lands next to the
tool: on the repository's graded set, recall@1 71.5 -> 87.5 % (docs/code-mode.md).

Where needs come from:
- **shipped**: `models/tool-needs.jsonl`, 13,715 needs for the 1,587 tools of 68 public MCP
  servers (tools/search_model/README.md: who wrote them, and how they are kept apart from the
  graded set). A line applies to a tool of the same name and the same description, whatever the
  operator named its server: the same definition gets the same needs.
- **the operator's**: `BASTION_SEARCH_NEEDS_FILE`, lines `{"server", "tool", "needs"}` in the
  deployment's own server names, for its own tools (or to add to the shipped ones).
- **written by the deployment's LLM** for every tool that has none of the above
  (`needs_writer`), kept in `BASTION_SEARCH_NEEDS_WRITTEN_FILE`.

Each line is `{"tool": name, "needs": [...]}` with `server` and/or `description_sha256`
(`fingerprint`) saying which tools of that name it is for: a line applies where every field it
gives matches.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .toolset import ToolSpec

__all__ = ["SHIPPED", "Line", "Needs", "NeedsError", "fingerprint", "load", "parse", "read_bytes", "sample"]

SHIPPED = Path(__file__).with_name("models") / "tool-needs.jsonl"
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
MAX_NEEDS_PER_TOOL: Final = 32
"""More say little more about a tool and cost start-up time (each need is embedded once)."""
MAX_NEED_CHARS: Final = 300
REFERENCE_NEEDS: Final = 1000
"""Needs sampled (deterministically) to measure how close a tool sits to needs in general."""


class NeedsError(ValueError):
    """A needs file that cannot be used, and where."""


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a needs file: the needs, and which tools of that name they are for."""

    server: str | None
    description_sha256: str | None
    needs: tuple[str, ...]

    def applies(self, spec: ToolSpec, digest: str) -> bool:
        return self.server in (None, spec.server) and self.description_sha256 in (None, digest)


@dataclass(frozen=True, slots=True)
class Needs:
    lines: Mapping[str, tuple[Line, ...]] = field(default_factory=dict)
    """Tool name -> the lines for tools of that name, in file order (the shipped file's first)."""
    reference: tuple[str, ...] = ()
    """A fixed sample of the shipped needs (of the operator's when the shipped are off): the
    yardstick of how near a tool sits to needs at large (`vectors`: hubness)."""

    def __len__(self) -> int:
        """Lines of needs known."""
        return sum(len(lines) for lines in self.lines.values())

    def of(self, spec: ToolSpec) -> tuple[str, ...]:
        """The needs of every line that applies to `spec`, each once, at most `MAX_NEEDS_PER_TOOL`."""
        lines = self.lines.get(spec.tool, ())
        if not lines:
            return ()
        digest = fingerprint(spec.description)
        found = (need for line in lines if line.applies(spec, digest) for need in line.needs)
        return tuple(dict.fromkeys(found))[:MAX_NEEDS_PER_TOOL]

    def merged(self, more: Mapping[str, tuple[Line, ...]]) -> Needs:
        """These needs and the lines `more` (after these: a tool keeps the needs it had first)."""
        return Needs(_joined([self.lines, more]), self.reference)

    def every(self) -> list[str]:
        return sorted({need for lines in self.lines.values() for line in lines for need in line.needs})


def fingerprint(description: str) -> str:
    """The sha256 of a description with its white space collapsed."""
    return hashlib.sha256(" ".join(description.split()).encode()).hexdigest()


def parse(rows: Iterable[bytes], source: str, skipped: list[int] | None = None) -> Needs:
    """Needs from JSON lines.

    A line that is not one names its file and number, or, given `skipped`, is left out and its number
    added there (a file we append to, that a crash may cut)."""
    lines: dict[str, tuple[Line, ...]] = {}
    for number, row in enumerate(rows, 1):
        if not row.strip():
            continue
        try:
            tool, line = _fields(orjson.loads(row))
        except (orjson.JSONDecodeError, ValueError) as exc:
            if skipped is not None:
                skipped.append(number)
                continue
            raise NeedsError(f"{source} line {number}: {exc}") from None
        lines[tool] = (*lines.get(tool, ()), line)
    return Needs(lines)


def _fields(row: Any) -> tuple[str, Line]:
    if not isinstance(row, dict):
        raise ValueError("expected an object")
    unknown = set(row) - {"tool", "needs", "server", "description_sha256", "written_for"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    tool, needs = row.get("tool"), row.get("needs")
    server, digest = row.get("server"), row.get("description_sha256")
    if not isinstance(tool, str) or not tool:
        raise ValueError('"tool" must be a tool name')
    if server is None and digest is None:
        raise ValueError('give "server" or "description_sha256": which tools the needs are for')
    if not (server is None or (isinstance(server, str) and server)):
        raise ValueError('"server" must be a server name')
    if not (digest is None or (isinstance(digest, str) and len(digest) == 64)):
        raise ValueError('"description_sha256" must be 64 hex digits')
    if not isinstance(needs, list) or not all(isinstance(n, str) and n.strip() for n in needs):
        raise ValueError('"needs" must be a list of non-empty strings')
    if any(len(n) > MAX_NEED_CHARS for n in needs):
        raise ValueError(f"a need is longer than {MAX_NEED_CHARS} characters")
    return tool, Line(server, digest, tuple(" ".join(n.split()) for n in needs))


def load(shipped: bool = True, extra: Path | None = None) -> Needs:
    """The shipped needs (unless `shipped` is False) and those of the file `extra`."""
    parts = [_read(path) for path in ([SHIPPED] if shipped else []) + ([extra] if extra else [])]
    return Needs(_joined([part.lines for part in parts]), sample(parts[0]) if parts else ())


def _joined(parts: Iterable[Mapping[str, tuple[Line, ...]]]) -> dict[str, tuple[Line, ...]]:
    """The lines of every part, each tool's in the parts' order."""
    lines: dict[str, tuple[Line, ...]] = {}
    for part in parts:
        for tool, more in part.items():
            lines[tool] = (*lines.get(tool, ()), *more)
    return lines


def sample(needs: Needs) -> tuple[str, ...]:
    """`REFERENCE_NEEDS` of the needs of `needs`, the same ones on every run."""
    every = needs.every()
    if len(every) <= REFERENCE_NEEDS:
        return tuple(every)
    return tuple(random.Random(0).sample(every, REFERENCE_NEEDS))


def _read(path: Path) -> Needs:
    return parse(read_bytes(path).splitlines(), str(path))


def read_bytes(path: Path) -> bytes:
    """The bytes of the needs file `path`, at most `MAX_FILE_BYTES` of them."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise NeedsError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES} a needs file may have")
        return path.read_bytes()
    except OSError as exc:
        raise NeedsError(f"cannot read the needs file {path}: {exc.strerror or exc}") from None
