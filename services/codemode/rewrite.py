"""Scripts call tools as `module.function(...)`, but Starlark has no modules or structs.

So before a script runs, each `module.function` whose module is a tool module becomes one global
name, `module<DOT>function`, where `<DOT>` is U+A4F8, a Unicode *letter* that looks like a dot. The
replacement is one character for one character, so every line and column Starlark reports is a
line and column of the script as written; messages are translated back with `restore`.
"""

from __future__ import annotations

import io
import tokenize
from collections.abc import Collection
from typing import Final

__all__ = ["DOT", "global_name", "restore", "rewrite"]

DOT: Final = "\ua4f8"


def global_name(module: str, function: str) -> str:
    """The Starlark global a tool is bound to."""
    return f"{module}{DOT}{function}"


def restore(text: str) -> str:
    """Starlark's text (messages, traces) with the script's own spelling."""
    return text.replace(DOT, ".")


def rewrite(code: str, modules: Collection[str]) -> str:
    """`code` with `module.function` turned into global names, for the given modules only.

    Only a module name written directly before `.name`, and not itself an attribute (`x.github.y`
    is left alone), is rewritten. Code Python's tokenizer cannot read is returned unchanged:
    Starlark reports its syntax error at the right place.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return code
    lines = code.splitlines(keepends=True)
    edits: list[tuple[int, int]] = []
    previous: tokenize.TokenInfo | None = None
    for i, token in enumerate(tokens[:-2]):
        dot, name = tokens[i + 1], tokens[i + 2]
        if (
            token.type == tokenize.NAME
            and token.string in modules
            and dot.type == tokenize.OP
            and dot.string == "."
            and name.type == tokenize.NAME
            and token.end == dot.start
            and dot.end == name.start
            and not (previous is not None and previous.type == tokenize.OP and previous.string == ".")
        ):
            edits.append(dot.start)
        if token.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            previous = token
    for row, col in edits:
        line = lines[row - 1]
        lines[row - 1] = line[:col] + DOT + line[col + 1 :]
    return "".join(lines)
