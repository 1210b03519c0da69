"""Give every docstring a one-line summary: pydocstyle's D205, D212 and D415, as ruff checks them.

Re-runnable: `.venv/bin/python tools/summary_lines.py [paths...]` (default `services libs cli`) rewrites
only the docstrings that need it, and a second run changes nothing. `--check` lists them instead and
exits 1 when there are any; `--count` prints how many docstrings have a one-line summary.

The rule, for the docstring of a module, class or function:

1. the summary starts on the first line, after the quotes (D212);
2. when its first paragraph runs over several lines, its first sentence becomes the summary line if it
   fits in the line length with the indent and the quotes; the rest of the paragraph follows after a
   blank line, re-wrapped, and the other paragraphs stay as they are (D205);
3. a first sentence too long for one line is cut, outside backticks and brackets, at the last of
   these that fits, by preference: `; `, `: ` or a dash; `, ` before a word that opens a clause
   (`which`, `where`, `so`, `or`...); a bracket whose aside ends the clause (`(...),`, `(...).`);
   `, and`; any `, `.
   The head ends with a period, the tail starts the next paragraph with a capital;
4. a summary that does not end with `.`, `?` or `!` gets a period (a trailing `:`, `;` or `,` becomes
   one) (D415).

A sentence ends at `.`, `?` or `!` followed by a space and a capital, a digit, a backtick, a quote or
a bracket, outside backticks and brackets (so `e.g. this` and `(see x. Y)` do not end one).
Docstrings it leaves alone: single-quoted ones, those with a backslash at a line's end, and a first
sentence with no place to cut; `--check` names what is left for a person to write.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 120  # the line length: a summary line may use all of it
WRAP = 105  # where a re-wrapped paragraph's lines end, as the prose around them does
DEFAULT_PATHS = ("services", "libs", "cli")
_PREFIX = re.compile(r"\A([rRuU]?)(\"\"\"|''')")
# a line that starts structure a re-wrap would break: a list item, a table, code, a doctest
_STRUCTURED = re.compile(r"\A(?:[-*+] |\d+[.)] |>>> |\||```|\.\. )")
_ENDS = ".?!"
_CLAUSE_WORDS = "which|where|when|whose|so|but|as|since|because|while|unless|then|not|never|each|else|once|or"
# where a first sentence too long for a line is cut, by preference; `keep` 1 keeps the mark's last
# character (the bracket) in the tail
_MARKS = (
    (r"; |: | - | — ", 0),
    (rf", (?=(?:{_CLAUSE_WORDS}) )", 0),
    (r" \(", 1),
    (r", (?=and )", 0),
    (r", ", 0),
)
_CLOSERS = {")": "(", "]": "[", "}": "{"}
MIN_SUMMARY = 12  # a shorter head is no summary: the cut is not made


@dataclass(frozen=True, slots=True)
class Docstring:
    start: int  # offsets into the file's text: the literal, quotes and prefix included
    end: int
    indent: str


def _docstrings(text: str) -> Iterator[Docstring]:
    tree = ast.parse(text)
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line.encode()))
    raw = text.encode()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if not (
            isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
        ):
            continue
        value = first.value
        assert value.end_lineno is not None and value.end_col_offset is not None
        start = offsets[value.lineno - 1] + value.col_offset
        end = offsets[value.end_lineno - 1] + value.end_col_offset
        line_start = raw[offsets[value.lineno - 1] : start].decode()
        if line_start.strip():
            continue  # `def f(): """..."""`: not a docstring on a line of its own
        # offsets are in bytes; the text slices below need characters
        yield Docstring(len(raw[:start].decode()), len(raw[:end].decode()), line_start)


def _outside(text: str, at: int) -> bool:
    """Whether `text[at]` stands outside backticks and brackets."""
    before = text[:at]
    if before.count("`") % 2:
        return False
    depth = 0
    for char in before:
        if char in "([{":
            depth += 1
        elif char in _CLOSERS and depth:
            depth -= 1
    return depth == 0


def first_sentence(text: str) -> tuple[str, str]:
    """`text` split after its first sentence: (the sentence, the rest); the rest is "" for one."""
    for match in re.finditer(r"[.?!](\s+)(?=[A-Z0-9`\"'(\[])", text):
        if _outside(text, match.start()):
            return text[: match.start() + 1], text[match.end() :]
    return text, ""


def _closes_clause(sentence: str, at: int) -> bool:
    """Whether the bracket opened at `sentence[at]` closes a clause: `)` then `,`, `;`, `:` or the end."""
    depth = 0
    for i in range(at, len(sentence)):
        depth += {"(": 1, ")": -1}.get(sentence[i], 0)
        if depth == 0:
            return sentence[i + 1 : i + 2] in ("", ",", ";", ":", ".", "?", "!")
    return False


def _cut(sentence: str, room: int) -> tuple[str, str] | None:
    """A sentence too long for `room` cut at its last clause mark that fits: (head., Tail).

    Marks by preference: `; `, `: `, a dash; then `, ` before a word that opens a clause; then before
    a bracket whose aside ends a clause, which then starts the next paragraph; then `, and`; then any
    `, `.
    """
    for pattern, keep in _MARKS:
        fits = [
            (match.start(), match.end())
            for match in re.finditer(pattern, sentence)
            if MIN_SUMMARY <= match.start() + 1 <= room
            and _outside(sentence, match.start())
            and (not keep or _closes_clause(sentence, match.end() - 1))
        ]
        if fits:
            at, end = max(fits)
            head = sentence[:at].rstrip(" ,;:-—") + "."
            tail = sentence[end - keep :].lstrip()
            return head, re.sub(r"\A(\(?)([a-z])", lambda m: m[1] + m[2].upper(), tail)
    return None


def _punctuated(summary: str) -> str:
    summary = summary.rstrip()
    if summary.endswith(tuple(_ENDS)):
        return summary
    return summary.rstrip(",;:") + "."


def _wrap(text: str, indent: str) -> list[str]:
    width = WRAP - len(indent)
    return [indent + line for line in textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)]


def fix_body(body: str, indent: str, opening: int) -> str | None:
    """The text between the quotes rewritten by the rule; None when it cannot be (a person writes it).

    `opening` is the width of what precedes the summary on its line: the indent, prefix and quotes.
    """
    lines = body.split("\n")
    closing = ""
    if len(lines) > 1 and not lines[-1].strip():
        closing = "\n" + lines.pop()  # the closing quotes on a line of their own
    while lines and not lines[0].strip():
        lines.pop(0)  # D212: the summary starts after the quotes
    if not lines:
        return body
    paragraph = [lines[0].strip()]
    rest = lines[1:]
    while rest and rest[0].strip() and not _STRUCTURED.match(rest[0].strip()):
        paragraph.append(rest.pop(0).strip())
    room = WIDTH - opening
    # a first paragraph of one line is a summary already, however many sentences it holds
    sentence, after = first_sentence(" ".join(paragraph)) if len(paragraph) > 1 else (paragraph[0], "")
    alone = not after and not rest  # the whole docstring: its closing quotes share the line
    if len(_punctuated(sentence)) > room - (3 if alone else 0):
        cut = _cut(sentence, room - 1)  # -1: the period the head may gain
        if cut is None:
            return None
        sentence, tail = cut
        after = f"{tail} {after}".strip()
    out = [_punctuated(sentence)]
    if after:
        out += ["", *_wrap(after, indent)]
    if rest:
        out += rest if not rest[0].strip() else ["", *rest]
    return "\n".join(out) + closing


def fix_text(text: str) -> tuple[str, list[int]]:
    """A module's text with its docstrings fixed, and the lines of those that could not be."""
    edits: list[tuple[int, int, str]] = []
    left: list[int] = []
    for doc in _docstrings(text):
        literal = text[doc.start : doc.end]
        prefix = _PREFIX.match(literal)
        if prefix is None or "\\\n" in literal:
            continue
        quotes = prefix.group(0)
        body = literal[len(quotes) : -3]
        fixed = fix_body(body, doc.indent, len(doc.indent) + len(quotes))
        if fixed is None:
            left.append(text.count("\n", 0, doc.start) + 1)
        elif fixed != body:
            edits.append((doc.start, doc.end, quotes + fixed + quotes[-3:]))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text, left


def has_summary_line(body: str) -> bool:
    """Whether a docstring's text starts with a one-line summary: on the first line, then a blank
    line or nothing."""
    lines = body.split("\n")
    if not lines[0].strip():
        return False
    return len(lines) == 1 or not lines[1].strip()


def count(paths: list[Path]) -> tuple[int, int]:
    """(docstrings with a one-line summary, all docstrings) of modules, classes and functions."""
    good = total = 0
    for path in paths:
        text = path.read_text()
        for doc in _docstrings(text):
            literal = text[doc.start : doc.end]
            prefix = _PREFIX.match(literal)
            body = literal[len(prefix.group(0)) : -3] if prefix else literal.strip("\"'")
            total += 1
            good += has_summary_line(body)
    return good, total


def _files(names: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = ROOT / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [p for p in out if ".venv" not in p.parts and "__pycache__" not in p.parts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Give every docstring a one-line summary.")
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS))
    parser.add_argument("--check", action="store_true", help="list what would change; exit 1 if anything")
    parser.add_argument("--count", action="store_true", help="how many docstrings have a one-line summary")
    args = parser.parse_args(argv)
    files = _files(args.paths)
    if args.count:
        good, total = count(files)
        print(f"{good} of {total} docstrings have a one-line summary ({100 * good / max(total, 1):.0f} %)")
        return 0
    changed = 0
    for path in files:
        before = path.read_text()
        after, left = fix_text(before)
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for line in left:
            print(f"{name}:{line}: no place to cut the first sentence; write its summary by hand")
        if after != before:
            changed += 1
            if args.check:
                print(f"{name}: docstrings to fix")
            else:
                path.write_text(after)
    print(f"{changed} files {'to fix' if args.check else 'fixed'}", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
