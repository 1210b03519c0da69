"""The credential scan past disguises and splits.

Each string's decoded and normalised views (`decode.views`), and strings that sit side by side read as
one text.

A credential cut in two (`AKIAIOSF` in one content block, `ODNN7EXAMPLE` in the next; the first half
of a token in one field, the rest in its sibling) is whole again for the agent that concatenates
them, so the scan reads each group of neighbours joined: the `text` of consecutive content blocks
(the same key across the items of a list), the string members of one object, the strings of one
list. A finding in a joined text is redacted in every member it covers.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Final

import orjson

from .base import Detector, Finding
from .decode import Budget, View, viewless, views
from .walk import Path, strings

__all__ = ["Group", "Item", "deep_findings", "grouped", "inert_joins", "neighbours"]

_MAX_GROUP = 256
"""Neighbours read as one text at most (a list of thousands of rows is read row by row)."""
_VOCABULARY = frozenset({"type", "mimeType", "role", "resultType", "action", "uri", "uriTemplate"})
"""MCP's own fields: protocol words, not text an agent reads on, so never joined (and never cut
into by a finding that runs past the end of its neighbour)."""
_MAX_JSON_TEXT = 1 << 20
"""A string longer than this is not parsed as JSON (its own text is still scanned)."""
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-]")
_INERT: set[tuple[Detector, str]] = set()
"""Short joined texts `inert_joins` found inert, per detector: the same every call for a result's
`_meta` stamp (Bastion's `name`, `title`, `version`), decided once instead of by three scans a call."""
_INERT_TEXT = 256
"""Joined texts longer than this are decided every time (a result's rows are not kept)."""
_INERT_SEEN = 1024
"""Answers kept at most (forgotten all at once, then learnt again)."""
_REACH = 512
"""Characters either side of a join read together: longer than any credential format, and than the
300 characters an AWS secret may sit from its key id."""


def _scan(detector: Detector, text: str) -> list[Finding]:
    scan = detector.prepare(text, text.lower())
    return scan(text, None) if scan is not None else []


_TEXT: Final = operator.itemgetter(1)
"""A group member's text (`Group`: (path, text))."""

Item = tuple[Path, str | None, str]
"""A string as the walk gives it: its path, the object key it is the value of (None in a list), the text."""
Group = list[tuple[Path, str]]


def neighbours(items: Sequence[Item]) -> list[Group]:
    """Groups of strings an agent may read as one.

    Siblings in an object, the same key across a list's items, the items of a list of strings (walk
    order, which is document order). Empty for most payloads (one text per content block): the
    deep read then has no joins to make."""
    groups: dict[tuple[object, ...], Group] = {}
    for path, key, value in items:
        if not path:
            continue
        parent = path[:-1]
        if key is None:
            groups.setdefault(("list", parent), []).append((path, value))
        elif key not in _VOCABULARY:
            groups.setdefault(("object", parent), []).append((path, value))
            if parent and parent[-1].__class__ is int:
                groups.setdefault(("column", parent[:-1], key), []).append((path, value))
    found: list[Group] = []
    for group in groups.values():  # a loop, not a comprehension: no call of its own per payload
        if len(group) > 1:
            found.append(group[:_MAX_GROUP])
    return found


_UNGROUPED: set[tuple[tuple[Path, str | None], ...]] = set()
"""Shapes (a payload's strings' paths and keys, in walk order) `neighbours` found no group in.

A tool's results keep their shape from call to call while their texts change, and which strings are
neighbours follows from the shape alone."""
_SHAPE_BYTES = 4096
"""JSON bytes at most of a payload whose shape is remembered (a larger one is grouped every time): a
shape holds its keys, so 1,024 of them hold at most 4 MiB however an upstream names its fields."""
_SHAPES_SEEN = 1024
"""Shapes remembered at most (forgotten all at once, then learnt again)."""
_SHAPE: Final = operator.itemgetter(0, 1)
"""A walked string's place: its path and key (`Item`)."""


def grouped(items: Sequence[Item], size: int) -> list[Group]:
    """`neighbours(items)`, without its turn per string for a shape already found to have none.

    (`items` are a payload's of `size` bytes of JSON.) The shape is read in C (`map`, `tuple`), so a
    tool's usual result costs a lookup."""
    if size > _SHAPE_BYTES:
        return neighbours(items)
    shape = tuple(map(_SHAPE, items))
    if shape in _UNGROUPED:
        return []
    found = neighbours(items)
    if not found:
        if len(_UNGROUPED) >= _SHAPES_SEEN:
            _UNGROUPED.clear()
        _UNGROUPED.add(shape)
    return found


def inert_joins(detector: Detector, groups: Sequence[Group]) -> bool:
    """Whether reading `groups` joined can find nothing, decided for all of them at once.

    For strings without a view of their own (`decode.undisguised_strings`): every window `deep_findings`
    reads is a slice of one group's joined text, so none holds an anchor of `detector` or a
    disguise when the joined texts, a line break between groups (no anchor, run or spaced run
    crosses one), hold none."""
    joined: list[str] = []
    for group in groups:  # loops and `map` in C, not comprehensions: no calls of their own
        joined.append("".join(map(_TEXT, group)))
    text = "\n".join(joined)
    key = (detector, text)
    if key in _INERT:
        return True
    inert = detector.prepare(text, text.lower()) is None and viewless(text)
    if inert and len(text) <= _INERT_TEXT:  # only texts the detector finds nothing in: never a credential
        if len(_INERT) >= _INERT_SEEN:
            _INERT.clear()
        _INERT.add(key)
    return inert


def deep_findings(
    detector: Detector,
    items: Sequence[Item],
    budget: Budget,
    nested: bool = True,
    groups: list[Group] | None = None,
    plain: bool = False,
) -> dict[Path, list[Finding]]:
    """What `detector` finds in the strings' views and in their joined neighbours.

    As spans of the original strings (the per-string plain scan is the engine's own; the engine counts a
    span found twice once). `groups` are the items' `neighbours` when the caller has them; `plain` says
    no string has a view (`decode.undisguised_strings` of their distinct strings), so only the joins are read."""
    out: dict[Path, list[Finding]] = {}
    for path, _key, value in () if plain else items:
        for view in views(value, budget):
            for finding in _scan(detector, view.text):
                start, end = view.origin(finding.start, finding.end)
                out.setdefault(path, []).append(Finding(finding.detector, finding.entity, start, end))
        if nested and value[:1] in "{[" and len(value) <= _MAX_JSON_TEXT and _closed(value):
            found = _inside_json(detector, value, budget)
            if found:
                out.setdefault(path, []).extend(found)
    for group in neighbours(items) if groups is None else groups:
        _joined(detector, group, budget, out)
    return {path: _shortest(findings) for path, findings in out.items()}


def _joined(detector: Detector, group: Group, budget: Budget, out: dict[Path, list[Finding]]) -> None:
    """What `detector` finds in one group's strings read as one text, split back onto its members."""
    joined = "".join([value for _, value in group])
    bounds, at = [], 0
    for path, value in group:
        bounds.append((path, at, at + len(value)))
        at += len(value)
    cuts = [b for _, _, b in bounds[:-1]]
    # a string that starts where its neighbour ends in a letter or digit is read from its own
    # start too: joined, the neighbour's last character would hide where a token begins
    starts = [(cut, min(len(joined), cut + _REACH)) for cut in cuts if _TOKEN_CHAR.match(joined, cut - 1)]
    for lo, hi in (*_windows(cuts, len(joined)), *starts):
        window = joined[lo:hi]
        for view in (View(window, _same), *views(window, budget)):
            for finding in _scan(detector, view.text):
                start, end = view.origin(finding.start, finding.end)
                end = _clipped(detector, finding.entity, joined, start + lo, end + lo, cuts)
                _split(out, finding, start + lo, end, bounds)


def _closed(text: str) -> bool:
    """Whether `text` ends as a JSON object or array does.

    A string that opens like JSON and does not (a cut log line, a truncated dump) is not parsed: a failed
    parse costs as much as a scan of the text."""
    return text.rstrip(" \t\n\r")[-1:] in ("}", "]")


def _clipped(detector: Detector, entity: str, joined: str, start: int, end: int, cuts: list[int]) -> int:
    """Where a finding in joined text ends.

    At a join after which it only runs on through letters (`deploy`, the `https` of a URL in the next
    field) when the credential is already whole without them, so the token's pattern does not eat its
    neighbour. A continuation with digits or symbols is taken as the credential's tail: better a word too
    many redacted than a tail let through."""
    for cut in cuts:
        if start < cut < end and joined[cut:end].isalpha():
            head = joined[start:cut]
            if any(f.entity == entity and f.start == 0 and f.end == len(head) for f in _scan(detector, head)):
                return cut
    return end


def _shortest(findings: list[Finding]) -> list[Finding]:
    """Of findings of one kind that start at one place.

    (Two readings of a spaced-out run, one running on into the next word), the shortest."""
    kept: dict[tuple[str, int], Finding] = {}
    for finding in findings:
        key = (finding.entity, finding.start)
        have = kept.get(key)
        if have is None or finding.end < have.end:
            kept[key] = finding
    return list(kept.values())


def _inside_json(detector: Detector, text: str, budget: Budget) -> list[Finding]:
    """A string that is itself JSON (a tool's structured result repeated as text) read as the JSON it is.

    Its fields side by side; each piece found is redacted wherever the text spells it."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(parsed, dict | list):
        return []
    inner = strings(parsed)
    pieces: set[tuple[str, str]] = set()
    for _path, _key, value in inner:
        pieces.update((f.entity, value[f.start : f.end]) for f in _scan(detector, value))
    for path, findings in deep_findings(detector, inner, budget, nested=False).items():
        value = next(v for p, _k, v in inner if p == path)
        pieces.update((f.entity, value[f.start : f.end]) for f in findings)
    found = []
    for entity, piece in pieces:
        spelled = orjson.dumps(piece).decode()[1:-1]
        at = text.find(spelled) if spelled else -1
        while at != -1:
            found.append(Finding(detector.name, entity, at, at + len(spelled)))
            at = text.find(spelled, at + len(spelled))
    return found


def _same(start: int, end: int) -> tuple[int, int]:
    return start, end


def _windows(cuts: list[int], size: int) -> list[tuple[int, int]]:
    """The stretches of a joined text around the places where one string ends and the next begins.

    Merged where they overlap: only there can a joined read find what the strings' own scans did not, and
    a long string is not read twice."""
    spans: list[tuple[int, int]] = []
    for cut in cuts:
        lo, hi = max(0, cut - _REACH), min(size, cut + _REACH)
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


def _split(
    out: dict[Path, list[Finding]], finding: Finding, start: int, end: int, bounds: list[tuple[Path, int, int]]
) -> None:
    """A finding across members: the part of it in each member it covers."""
    for path, lo, hi in bounds:
        if start < hi and lo < end:
            part = Finding(finding.detector, finding.entity, max(start, lo) - lo, min(end, hi) - lo)
            out.setdefault(path, []).append(part)
