"""A payload too large to scan whole, cut into pieces that are each scanned as a whole payload is.

Guardrails fail closed: a payload over `max_scan_bytes` is not passed unscanned, it is scanned in
pieces of at most that many characters. Small strings are grouped into one piece until it is full
(so neighbouring strings are still read joined, `deep`); a string longer than a piece is read in
windows: window k covers the characters [k * size, (k + 1) * size + OVERLAP) of the string (size
at least `OVERLAP`), so consecutive windows overlap by `OVERLAP` characters.

Why that finds what straddles a border: every match starts in exactly one window's own stretch
[k * size, (k + 1) * size), and that window also holds the `OVERLAP` characters after it, so any
match up to `OVERLAP` long is whole in it. The patterns' spans are bounded well below that: token
formats by their counted repetitions (at most a few hundred characters), an AWS secret's search
around its key id by 300 characters, a PEM block's END by 20,000 characters after its BEGIN, the
deep read's joins by 512, `deny` terms by 1,024 characters. The few unbounded repetitions (`{30,}`
in some token formats, a PEM body without its END line, a `deny` regex) can only run past a window
when the token itself is longer than `OVERLAP`: a match that reaches its window's end is extended
(`extend_cut`) over the rest of its run of token characters (to the next whitespace, quote or
backslash, which no pattern's character class but a PEM body's crosses), so its tail is redacted
too rather than left for the next window, which would not see the token's start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from .base import Finding
from .walk import Path

__all__ = ["OVERLAP", "Piece", "extend_cut", "pieces"]

OVERLAP: Final = 64 * 1024
"""Characters each window of a long string shares with the next one."""
_RUN: Final = re.compile(r"[^\s\"'\\]*")


@dataclass(slots=True)
class Piece:
    """Strings scanned together.

    (Path, key, text) as the walk gives them, a window's text for a long string, with where that text
    starts in its string and where the window was cut."""

    items: list[tuple[Path, str | None, str]] = field(default_factory=list)
    offsets: dict[Path, int] = field(default_factory=dict)
    cut: dict[Path, tuple[int, str]] = field(default_factory=dict)
    """path -> (where in its string the window ends, the whole string), for a window that is not the last."""
    size: int = 0


def pieces(items: Sequence[tuple[Path, str | None, str]], size: int) -> Iterator[Piece]:
    """`items` (a payload's strings) as pieces of at most `size` characters.

    (A window: `size` plus `OVERLAP`), in order."""
    piece = Piece()
    for path, key, text in items:
        if len(text) > size:
            yield from _windows(path, key, text, size)
            continue
        if piece.items and piece.size + len(text) > size:
            yield piece
            piece = Piece()
        piece.items.append((path, key, text))
        piece.size += len(text)
    if piece.items:
        yield piece


def _windows(path: Path, key: str | None, text: str, size: int) -> Iterator[Piece]:
    size = max(size, OVERLAP)  # a smaller step would read each character many times over
    start = 0
    while True:
        end = min(len(text), start + size + OVERLAP)
        window = Piece([(path, key, text[start:end])], {path: start}, size=end - start)
        if end < len(text):
            window.cut[path] = (end, text)
        yield window
        if end == len(text):
            return
        start += size


def extend_cut(finding: Finding, shift: int, cut: tuple[int, str] | None) -> Finding:
    """`finding` (found in a piece's text starting `shift` characters into its string) as a span of the whole string.

    One that ran to the end of a window that was cut runs on to the end of its run."""
    start, end = finding.start + shift, finding.end + shift
    if cut is not None and end == cut[0]:
        end = _RUN.match(cut[1], end).end()  # type: ignore[union-attr]  # `*` always matches
    return Finding(finding.detector, finding.entity, start, end)
