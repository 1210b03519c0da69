"""What a string says once its disguises are taken off: the views of it a credential scan must see.

An upstream that wants a secret past the scan writes it so the patterns miss it and the agent
still reads it: fullwidth letters (NFKC folds them), zero-width and bidi characters between its
characters, spaces between them, `\\uXXXX` or `%XX` escapes, base64, base64url or hex (once, or
nested). `views(text)` returns each disguise undone as a `View`: the derived text and, for any span
of it, the span of the original that produced it, so a redaction covers the encoded form and
nothing decodable is left.

Bounded (`Budget`): a payload decodes at most `max_bytes` characters in all (the engine gives it
64 KiB plus four times the payload's size, more than it can decode, so decoys cannot use it up) and
nests at most `max_depth` encodings. The usual text costs a few C-level checks (`isascii`, `in`, two regex scans).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["SEPARATOR", "Budget", "View", "undisguised_strings", "viewless", "views"]

Origin = Callable[[int, int], tuple[int, int]]
"""The original text's span behind a span of a view."""

_INVISIBLE: Final = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206b"
    "\u206c\u206d\u206e\u206f\u3164\ufeff\uffa0"
)
"""Zero-width, joiner, bidi-control and filler characters: they render as nothing."""
_INVISIBLE_RUN: Final = re.compile("[" + "".join(sorted(_INVISIBLE)) + "]+")
_FOLDABLE: Final = re.compile("[^\\x00-\\x7f" + "".join(sorted(_INVISIBLE)) + "]+")
"""Runs of non-ASCII characters NFKC may fold (invisible ones are dropped, not folded)."""
_ESCAPE: Final = re.compile(r"\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|%([0-9A-Fa-f]{2})")
_BACKSLASH_ESCAPE: Final = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2})")
_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")
"""`_ESCAPE`'s two halves, each with a literal start the regex engine jumps to: whether a text holds
an escape at all costs ~1 µs per 2 KiB instead of the alternation's ~10 (tried at every position)."""
_SPACED: Final = re.compile(r"(?:\S[ \t\u00a0]{1,3}){11,}\S")
"""At least twelve single characters with spaces between them: `A K I A ...`. Its first character
may end a word (`key=A K I A`, `done g h p _`): which one is the token's is read both ways."""
_SHORTEST_SPACED: Final = 23
"""`_SPACED`'s shortest match: twelve characters and the eleven spaces between them."""
_SHAPE: Final = bytes(0x20 if chr(b) in " \t\n\r\f\v" else 0x78 for b in range(256))
_CONTINUATION: Final = bytes(range(0x80, 0xC0))
_SPACED_SHAPE: Final = b" x" * 12
"""What a spaced run looks like once every character is `x` and every space ` `: found by a plain
substring search (5 µs per 10 KB) before the regex (150 µs per 10 KB) is asked where."""
_SPACED_TAIL: Final = _SPACED_SHAPE[2:]
"""Eleven characters each after a gap: in the shape of any text a `_SPACED` match is in, whatever
stands before its first character (a quote, a line break's escape, the start of a slice)."""
_GAP_SHAPE: Final = bytes(0x20 if chr(b) in " \t" else 0x78 for b in range(256))
"""`_SHAPE` with only `_SPACED`'s ASCII gaps as spaces: a line break is no gap, so fewer texts
look spaced out and fewer hold a double gap to make one."""
_TAIL_SEARCH: Final = re.compile(re.escape(_SPACED_TAIL))
"""`_SPACED_TAIL` as a literal expression: the regex engine's search of a two-symbol shape costs
about half of `bytes.find`'s (1.4 against 3.3 µs per 2 KB)."""
_TWO_SPACES: Final = re.compile(b"  ")
"""Likewise for a double space in ASCII text (1.2 against 2.1 µs per 2 KB)."""
_B64: Final = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{27,}={0,2}")
_B64_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_RUN_MAP: Final = bytes(ord("a") if chr(i) in _B64_CHARS else ord(" ") for i in range(256))
_RUN_MIN: Final = b"a" * 27
_ASCII_LEAD: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef")
"""Base64 characters for 0-31: the first of every four encodes the top six bits of a byte, which
is below 0x80 in ASCII, so base64 of text has one of these at every fourth place."""
_HEX_LEAD: Final = frozenset("01234567")
_HEX: Final = re.compile(r"\A(?:[0-9A-Fa-f]{2})+\Z")
_PRINTABLE: Final = re.compile(r"[\t\n\r\x20-\x7e]*")
SEPARATOR: Final = "\x00\x00"
"""Between the strings `undisguised_strings` reads: no run's character, no anchor's, no gap, two in
a row so no spaced run runs across."""


@dataclass(slots=True)
class Budget:
    """What one payload may still decode: characters, and how deep encodings nest."""

    max_bytes: int = 65_536
    max_depth: int = 2

    def take(self, n: int) -> bool:
        if n > self.max_bytes:
            return False
        self.max_bytes -= n
        return True


@dataclass(frozen=True, slots=True)
class View:
    text: str
    origin: Origin


def _identity(start: int, end: int) -> tuple[int, int]:
    return start, end


def _whole(span: tuple[int, int]) -> Origin:
    return lambda _start, _end: span


def views(text: str, budget: Budget, depth: int = 0) -> list[View]:
    """Every disguise of `text` undone.

    Its normalised form (if it differs) and each encoded run decoded, each of those looked at again while
    `budget` allows."""
    if len(text) < _SHORTEST_SPACED and text.isascii() and "\\" not in text and "%" not in text:
        return []  # most strings of a call: too short to be spaced out or hold a run, nothing to decode
    found: list[View] = []
    base = text
    origin: Origin = _identity
    for normal in _normalised(text):
        if not found:
            base, origin = normal.text, normal.origin
        found.append(normal)
    if depth >= budget.max_depth:
        return found
    for start, end in encoded_runs(base):
        decoded = _decoded(base[start:end])
        if decoded is None or not budget.take(len(decoded)):
            continue
        whole = _whole(origin(start, end))  # a finding anywhere in the decoded run: the whole run
        found.append(View(decoded, whole))
        found.extend(View(inner.text, whole) for inner in views(decoded, budget, depth + 1))
    return found


def undisguised_strings(text: str) -> bool:
    """Whether no string of `text` has a view: `text` is a payload's distinct strings joined by `SEPARATOR`.

    Decided on all of them at once with a few C-level scans instead of a call per string, each string
    read once where the payload's JSON repeats one (a result's text in its `content` and its
    `structuredContent`). Never wrongly True: a disguise in any string (non-ASCII text, an escape, a
    run that decodes, a spaced-out run) is one in `text` too (`SEPARATOR` ends every run and spaced
    run). A quote answers False: a string holding JSON is read as JSON only string by string (`deep`)."""
    if not text.isascii() or '"' in text:
        return False
    if "\\" in text and _BACKSLASH_ESCAPE.search(text) is not None:
        return False
    if "%" in text and _PERCENT_ESCAPE.search(text) is not None:
        return False
    if len(text) < _SHORTEST_SPACED:
        return True
    raw = text.encode("ascii")
    for start, end in _ascii_runs(raw):  # a run that decodes to no text (a hash, a cursor) is no view
        if _decoded(raw[start:end].decode("ascii")) is not None:
            return False
    return not _spaced_tail(raw.translate(_GAP_SHAPE))


def viewless(text: str) -> bool:
    """Whether no stretch of `text` has a view (`views` of any slice of it is empty).

    For strings of an `undisguised_strings` payload read joined (`deep`): ASCII without a backslash, where
    only a join can make a disguise (a run, a spaced-out run or a `%XX` across it), and any of those
    in a slice is one in the whole text. Wherever a slice starts, a spaced run in it has eleven
    characters each after a gap (`_SPACED_TAIL`)."""
    if not text.isascii() or "\\" in text:
        return False
    if "%" in text and _PERCENT_ESCAPE.search(text) is not None:
        return False
    raw = text.encode("ascii")
    if len(raw) >= 27 and _ascii_runs(raw):
        return False
    return not _spaced_tail(raw.translate(_SHAPE))


def encoded_runs(text: str) -> list[tuple[int, int]]:
    """The spans `_B64` matches in `text`.

    ASCII text (nearly every payload) is mapped to one byte per class (run character or not) and searched
    for 27 run characters in a row by `bytes.find`, ~6x faster than the expression's look at every
    position; other text takes the expression."""
    if len(text) < 27:  # most strings of a call: too short to hold a run
        return []
    if not text.isascii():
        return [run.span() for run in _B64.finditer(text)]
    return _ascii_runs(text.encode("ascii"))


def _ascii_runs(raw: bytes) -> list[tuple[int, int]]:
    """`encoded_runs` of ASCII text, as its bytes."""
    mapped = raw.translate(_RUN_MAP)
    spans: list[tuple[int, int]] = []
    at, size = 0, len(raw)
    while (start := mapped.find(_RUN_MIN, at)) >= 0:  # the first of 27: the character before is no run's
        end = mapped.find(b" ", start + 27)
        end = size if end < 0 else end
        at = end
        while at < size and at - end < 2 and raw[at] == 0x3D:  # `={0,2}`
            at += 1
        spans.append((start, at))
    return spans


def _decoded(run: str) -> str | None:
    """The run as hex or base64(url), when that gives printable ASCII text (a credential's shape).

    Random bytes (a hash, a nonce, image data) are not text and are left alone."""
    raw: bytes | None = None
    if _HEX.match(run):
        if not _HEX_LEAD.issuperset(run[::2]):
            return None
        raw = bytes.fromhex(run)
    else:
        if not _ASCII_LEAD.issuperset(run[::4]):
            return None  # random bytes (a hash, a nonce) fail this within a few groups

        body = run.rstrip("=")
        if len(body) % 4 == 1:
            return None
        padded = body + "=" * (-len(body) % 4)
        try:
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            return None
    if len(raw) < 12 or not raw.isascii():
        return None
    text = raw.decode("ascii")
    return text if _PRINTABLE.fullmatch(text) else None


def _normalised(text: str) -> list[View]:
    """`text` with escapes decoded, NFKC applied, invisible characters dropped and spaced-out characters joined.

    (Twice when a spaced run's first character may belong to the word before); nothing when that changes
    nothing (the usual case, decided without a copy)."""
    plain = text.isascii()
    escaped = ("\\" in text and _BACKSLASH_ESCAPE.search(text) is not None) or (
        "%" in text and _PERCENT_ESCAPE.search(text) is not None
    )
    spaced = [m.span() for m in _SPACED.finditer(text)] if len(text) >= _SHORTEST_SPACED and _spaced_out(text) else []
    if plain and not escaped and not spaced:
        return []
    edits = _edits(text, escaped, whole=not spaced)
    if not spaced:
        view = _rebuilt(text, edits, frozenset())
        return [view] if view is not None else []
    # a run's first character may be the token's or not (`key=A K I A`, `a g h p _`), and so may
    # its last (`E u done`): each of the four readings is a view
    readings = {
        _gaps(
            text,
            [(_after_first(text, a) if cut_start else a, _before_last(text, b) if cut_end else b) for a, b in spaced],
        )
        for cut_start in (False, True)
        for cut_end in (False, True)
    }
    out = [_rebuilt(text, edits, gaps) for gaps in readings]
    return [view for view in out if view is not None]


def _after_first(text: str, at: int) -> int:
    """Where a spaced run starts if its first character is not the token's.

    (It ends the word before, `key=A K I A`, or is a word of its own, `a g h p _`)."""
    at += 1
    while at < len(text) and text[at] in " \t\u00a0":
        at += 1
    return at


def _before_last(text: str, end: int) -> int:
    """Where a spaced run ends if its last character is not the token's.

    (It starts the word after, `E u done`, or is a word of its own)."""
    end -= 1
    while end > 0 and text[end - 1] in " \t\u00a0":
        end -= 1
    return end


Edit = tuple[int, int, str, bool]
"""(start, end, replacement, one character for one) in the original text."""


def _edits(text: str, escaped: bool, whole: bool = True) -> list[Edit]:
    """What normalising changes, spaced-run gaps aside.

    Escapes decoded, invisible characters dropped, characters NFKC changes folded. Found by C-level
    scans: text NFKC leaves as it is (accented words, CJK) costs one `is_normalized` call, text it folds
    one for one (fullwidth letters) one `normalize` call, as one edit unless `whole` is False (a spaced run's
    gaps are dropped inside it)."""
    edits: list[Edit] = []
    if escaped:
        for m in _ESCAPE.finditer(text):
            char = chr(int(m.group(1) or m.group(2) or m.group(3), 16))
            folded = char if char.isascii() else unicodedata.normalize("NFKC", char)
            edits.append((m.start(), m.end(), "".join(c for c in folded if c not in _INVISIBLE), False))
    if text.isascii():
        return edits
    edits.extend((m.start(), m.end(), "", False) for m in _INVISIBLE_RUN.finditer(text))
    if unicodedata.is_normalized("NFKC", text):
        return sorted(edits)
    if not edits and whole:  # one edit for the whole text: not where spaced runs' gaps are to be dropped
        folded = unicodedata.normalize("NFKC", text)
        if len(folded) == len(text):
            return [(0, len(text), folded, True)]
    for run in _FOLDABLE.finditer(text):
        word = run.group()
        if not unicodedata.is_normalized("NFKC", word):
            folded = "".join(c for c in unicodedata.normalize("NFKC", word) if c not in _INVISIBLE)
            edits.append((run.start(), run.end(), folded, len(folded) == len(word)))
    return sorted(edits)


def _rebuilt(text: str, edits: list[Edit], gaps: frozenset[int]) -> View | None:
    """`text` with `edits` applied and the `gaps` dropped, and the map back: the derived text is copied in chunks.

    A span of it maps to the original chunk by chunk (bisect), and a character an edit produced maps to
    the edit's whole original span (an escape, a folded character)."""
    changes = sorted([*edits, *((at, at + 1, "", False) for at in gaps)])
    if not changes:
        return None
    parts: list[str] = []
    segments: list[tuple[int, int, int, bool]] = []
    """(derived start, original start, original end, copied 1:1) per chunk of the derived text."""
    done = length = 0
    for start, end, replacement, one_for_one in changes:
        if start < done:
            continue  # edits never overlap (escapes are ASCII, gaps spaces, folds non-ASCII); defensive
        if start > done:
            segments.append((length, done, start, True))
            parts.append(text[done:start])
            length += start - done
        if replacement:
            segments.append((length, start, end, one_for_one))
            parts.append(replacement)
            length += len(replacement)
        done = end
    if done < len(text):
        segments.append((length, done, len(text), True))
        parts.append(text[done:])
    starts = [segment[0] for segment in segments]

    def origin(start: int, end: int) -> tuple[int, int]:
        first = segments[bisect.bisect_right(starts, start) - 1]
        last = segments[bisect.bisect_right(starts, max(end - 1, start)) - 1]
        lo = first[1] + (start - first[0]) if first[3] else first[1]
        hi = last[1] + (end - last[0]) if last[3] else last[2]
        return lo, max(hi, lo)

    return View("".join(parts), origin)


def _spaced_out(text: str) -> bool:
    """Whether `_SPACED` may match: a necessary condition found with C-level scans, never stricter."""
    if text.isascii():  # one byte per character already: nothing to delete, no copy
        shape = text.encode("ascii").translate(_SHAPE)
    else:  # a no-break space is a gap too (its UTF-8 would read as a character)
        shape = text.replace("\u00a0", " ").encode("utf-8", "surrogatepass").translate(_SHAPE, _CONTINUATION)
    return _spaced_tail(shape)


def _spaced_tail(shape: bytes) -> bool:
    """Whether a text's shape (characters `x`, gaps ` `) holds eleven characters each after a gap.

    What any `_SPACED` match holds, whatever stands before its first character (`key=A K I A`). A gap is
    one to three spaces or tabs (`A  K  I  A`): each made one, so one needle finds them all; most texts
    have no double gap and are searched as they are (two copies fewer, ~3 µs per 2 KiB)."""
    if _TWO_SPACES.search(shape) is not None:
        shape = shape.replace(b"  ", b" ").replace(b"  ", b" ")
    return _TAIL_SEARCH.search(shape) is not None


def _gaps(text: str, spaced: list[tuple[int, int]]) -> frozenset[int]:
    """The positions of the spaces inside spaced-out runs."""
    return frozenset(i for a, b in spaced for i in range(a, b) if text[i] in " \t\u00a0")
