"""What README.md tells a new user to type and to expect, read from its own text (`Readme`).

A helper of `readme_up.py`, which imports it as a sibling module (it runs as a script, not from a package).
"""

from __future__ import annotations

import re


class Readme:
    """What the README tells the user to type and to expect."""

    def __init__(self, text: str) -> None:
        block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.S)
        assert block, "README.md has no bash block under '## Two commands'"
        lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
        self.up = next(line for line in lines if line.startswith("./run up"))
        self.key = found(r"Bearer (bk_[A-Za-z0-9_]+)", text, "a demo key")
        call = re.search(r'call_tool\("([^"]+)", (\{[^}]*\})\)', text)
        assert call, "README.md no longer shows an example call_tool"
        self.tool, self.arguments = call.group(1), call.group(2)
        self.prompts = re.findall(r"`([^`]+)`", found(r"prompts\s+\(([^)]*)\)", text, "the example prompts"))
        self.resources = re.findall(r"`([^`]+)`", found(r"resources\s+\(([^)]*)\)", text, "the example resources"))
        self.example = found(r"\*\*Python \(official `mcp` SDK\)\*\*.*?```python\n(.*?)```", text, "the Python example")
        self.example_url = found(r'streamable_http_client\("([^"]+)"', self.example, "the example's URL")
        configure = text[text.index("## Configure your own servers") :]
        self.config = found(r"```yaml\n(.*?)```", configure, "the minimal config")
        self.config_check = found(r"^(\./run config check \S+)", configure, "`./run config check`")
        block = found(r"manage it from a second terminal.*?```bash\n(.*?)```", configure, "the second terminal's block")
        self.second_terminal = [_COMMENT.sub("", line).strip() for line in block.splitlines() if line.strip()]
        run = found(r"\(`(\.venv/bin/python\s+\S+\.py)`", text, "how to run the Python example")
        self.example_run = " ".join(run.split())  # the README wraps it


_COMMENT = re.compile(r"\s+#\s.*$")
"""A shell comment after a command, as the README's blocks write them (`  # what it does`)."""


def found(pattern: str, text: str, what: str) -> str:
    match = re.search(pattern, text, re.S | re.M)
    assert match, f"README.md no longer shows {what} ({pattern})"
    return match.group(1)
