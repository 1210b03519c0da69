"""`notes`: an in-memory notebook, the second example server.

    python examples/servers/notes_server.py                 # stdio
    python examples/servers/notes_server.py --http --port 0 # streamable HTTP at /mcp

Tools: `add_note`, `list_notes`, `search` and `echo` (the echo server has an `echo` too, so the
gateway has two servers sharing a tool name and must keep them apart by namespace).
Resources: `notes://all` (every note as JSON) and the template `notes://{note_id}` (one note).
Prompt: `summarize` (asks the model to summarize the notes, optionally on one topic).
"""

from __future__ import annotations

import itertools

from _runner import HandshakeCounter, parse_args, run
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import ToolAnnotations
from pydantic import BaseModel

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


class Note(BaseModel):
    id: int
    title: str
    text: str


_notes: dict[int, Note] = {}
_ids = itertools.count(1)

mcp = MCPServer(
    "notes", version="1.0.0", instructions="A scratch notebook kept in memory.", middleware=[HandshakeCounter()]
)


@mcp.tool(annotations=ADDITIVE)
def add_note(title: str, text: str) -> Note:
    """Store a note and return it with its id."""
    note = Note(id=next(_ids), title=title, text=text)
    _notes[note.id] = note
    return note


@mcp.tool(annotations=READ_ONLY)
def list_notes() -> list[Note]:
    """Every note, oldest first."""
    return list(_notes.values())


@mcp.tool(annotations=READ_ONLY)
def search(query: str) -> list[Note]:
    """Notes whose title or text contains `query` (case-insensitive)."""
    needle = query.lower()
    return [n for n in _notes.values() if needle in n.title.lower() or needle in n.text.lower()]


@mcp.resource("notes://all", mime_type="application/json", description="Every note, oldest first")
def all_notes() -> str:
    return "[" + ",".join(n.model_dump_json() for n in _notes.values()) + "]"


@mcp.resource("notes://{note_id}", mime_type="text/plain", description="One note by id: its title, then its text")
def one_note(note_id: str) -> str:
    note = _notes.get(int(note_id)) if note_id.isdigit() else None
    if note is None:
        raise ResourceError(f"no note with id {note_id!r}")
    return f"{note.title}\n\n{note.text}"


@mcp.prompt()
def summarize(topic: str = "") -> str:
    """Ask for a summary of the notes (read them from the `notes://all` resource), on `topic` if given."""
    focus = f" about {topic}" if topic else ""
    return f"Summarize my notes{focus} in three bullet points. They are in the resource notes://all."


@mcp.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return `text` prefixed with `notes:` (same tool name as the echo server's, different server)."""
    return f"notes: {text}"


if __name__ == "__main__":
    run(mcp, parse_args(__doc__ or ""))
