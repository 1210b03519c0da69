"""What the README has a new user do once the banner is up: the MCP requests with its key, its Python
example, its config check and every line of its second-terminal block, each held to what it promises.

A helper of `readme_up.py`, imported as a sibling module (it runs as a script, not from a package).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
from readme_text import Readme, found
from user_shell import STOP_WITHIN, Checks, McpClient, typed, user_env


def mcp_requests(checks: Checks, url: str, readme: Readme) -> None:
    client = McpClient(url, readme.key)
    checks.attempt("initialize with the README's key", lambda: client.start())

    def call() -> str | None:
        arguments = json.loads(readme.arguments)
        result = client.request("tools/call", {"name": readme.tool, "arguments": arguments})
        expected = str(sum(arguments.values())) if all(isinstance(v, int) for v in arguments.values()) else ""
        text = json.dumps(result)
        return None if expected in text and not result.get("isError") else f"answered {text[:300]}"

    def prompts() -> str | None:
        listed = {p["name"] for p in client.request("prompts/list", {})["prompts"]}  # type: ignore[index]
        missing = sorted(set(readme.prompts) - listed)
        return f"missing {missing}; listed {sorted(listed)}" if missing else None

    def resources() -> str | None:
        listed = {r["uri"] for r in client.request("resources/list", {})["resources"]}  # type: ignore[index]
        missing = sorted(set(readme.resources) - listed)
        return f"missing {missing}; listed {sorted(listed)}" if missing else None

    # prompts and resources first: right after the banner is when they were once missing
    checks.attempt(f"prompts/list names {', '.join(readme.prompts)}", prompts)
    checks.attempt(f"resources/list names {', '.join(readme.resources)}", resources)
    checks.attempt(f"tools/call {readme.tool} {readme.arguments}", call)


def _failed(status: int, output: str) -> str | None:
    return f"exit {status}: {output[-800:]}" if status or "Traceback" in output else None


def _example(clone: Path, readme: Readme, mcp_url: str) -> str | None:
    """The Python example as printed, pointed at the port the banner printed, run as the README says."""
    (clone / readme.example_run.split()[-1]).write_text(readme.example.replace(readme.example_url, mcp_url))
    status, output = typed(readme.example_run, clone)
    total = sum(json.loads(readme.arguments).values())
    if _failed(status, output) or readme.tool not in output or f"text='{total}'" not in output:
        return f"exit {status}, expected {readme.tool} listed and text='{total}': {output[-800:]}"
    return None


def _config_check(clone: Path, readme: Readme) -> str | None:
    """The README's minimal config, checked as typed: valid with its variables set, refused naming one without."""
    (clone / readme.config_check.split()[-1]).write_text(readme.config)
    needed = re.findall(r"\$\{(\w+)\}", readme.config) + re.findall(r"key_env:\s*(\w+)", readme.config)
    without = {k: v for k, v in user_env().items() if k not in needed}
    status, output = typed(
        readme.config_check, clone, {**without, **{n: f"bk_readme_{n.lower()}_{'0' * 24}" for n in needed}}
    )
    if _failed(status, output) or "is valid" not in output:
        return f"with {needed} set: {_failed(status, output) or output[-800:]}"
    status, output = typed(readme.config_check, clone, without)
    if status == 0 or "Traceback" in output or not any(name in output for name in needed):
        return f"without {needed}, expected a refusal naming one: exit {status}: {output[-800:]}"
    return None


_FOLLOWS = re.compile(r"\s-f(\s|$)")
FOLLOW_FOR = 5.0
"""Seconds a following command (`audit tail -f`) runs before it is stopped, as a user's Ctrl-C would."""


def _followed(line: str, clone: Path) -> str | None:
    """None when a following command printed lines and was still following when stopped."""
    proc = subprocess.Popen(
        ["bash", "-c", line], cwd=clone, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    time.sleep(FOLLOW_FOR)
    following = proc.poll() is None
    if following:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        output = proc.communicate(timeout=STOP_WITHIN)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return f"did not stop within {STOP_WITHIN:g}s of Ctrl-C"
    if not following:
        return f"stopped by itself (exit {proc.returncode}): {output[-800:]}"
    return None if output.strip() and "Traceback" not in output else f"printed: {output[-800:]!r}"


class SecondTerminal:
    """The README's second-terminal lines, typed one after another, each held to what it promises."""

    def __init__(self, clone: Path, readme: Readme, mcp_url: str) -> None:
        self.clone, self.readme, self.mcp_url = clone, readme, mcp_url
        self.secret = ""

    def run(self, checks: Checks) -> None:
        for line in self.readme.second_terminal:
            if _FOLLOWS.search(line):
                checks.attempt(f"typed: {line}", lambda line=line: _followed(line, self.clone))
            else:
                checks.attempt(f"typed: {line}", lambda line=line: self.line(line))

    def line(self, line: str) -> str | None:
        status, output = typed(line, self.clone)
        if _failed(status, output):
            return _failed(status, output)
        if " keys create " in f" {line} ":
            return self._created(line, output)
        if " keys revoke " in f" {line} ":
            return self._revoked()
        if ">" in line:
            return self._exported(line)
        return None

    def _created(self, line: str, output: str) -> str | None:
        """The secret printed once lists the tools the line's grants name, and nothing else."""
        self.secret = found(r"^(bk_\S+)$", output, "a printed secret")
        grants = [g.replace("/", "__", 1) for g in re.findall(r"--grant '([^']+)'", line)]
        demo = McpClient(self.mcp_url, self.readme.key)
        demo.start()
        everything = _tool_names(demo)
        expected = {name for name in everything if any(fnmatch.fnmatchcase(name, g) for g in grants)}
        listed = _tool_names(self._accepted())
        return (
            None
            if expected and listed == expected
            else f"the new key lists {sorted(listed)}, expected {sorted(expected)}"
        )

    def _accepted(self) -> McpClient:
        """A session with the new key, once ingress knows it (every replica within milliseconds, the
        README says; polled, never timed): a 401 before then is the change still on its way."""
        deadline = time.monotonic() + 30
        while True:
            client = McpClient(self.mcp_url, self.secret)
            try:
                client.start()
                return client
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 401 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def _revoked(self) -> str | None:
        """The revoked key is refused (the README says within a second; polled, never timed)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                McpClient(self.mcp_url, self.secret).start()
            except httpx.HTTPStatusError as exc:
                return None if exc.response.status_code == 401 else f"answered HTTP {exc.response.status_code}"
            time.sleep(0.2)
        return "the revoked key still initializes after 30 s"

    def _exported(self, line: str) -> str | None:
        """The file holds JSON lines, the README's own tool call among them (polled: the audit writer batches)."""
        target = self.clone / line.rsplit(">", 1)[1].strip()
        deadline = time.monotonic() + 60
        while True:
            events = [json.loads(text) for text in target.read_text().splitlines()]
            if any(e.get("kind") == "tool_call" and e.get("name") == self.readme.tool for e in events):
                return None
            if time.monotonic() > deadline:
                return f"{len(events)} event(s), none the call of {self.readme.tool}"
            time.sleep(1.0)
            status, output = typed(line, self.clone)
            if _failed(status, output):
                return _failed(status, output)


def _tool_names(client: McpClient) -> set[str]:
    """What a started session lists."""
    return {t["name"] for t in client.request("tools/list", {})["tools"]}  # type: ignore[index]


def as_a_new_user(checks: Checks, clone: Path, readme: Readme, mcp_url: str) -> None:
    """What the README tells a new user to type once the gateway is up, beside the first command."""
    checks.attempt(f"the Python example, run as `{readme.example_run}`", lambda: _example(clone, readme, mcp_url))
    checks.attempt(f"the minimal config, `{readme.config_check}`", lambda: _config_check(clone, readme))
    SecondTerminal(clone, readme, mcp_url).run(checks)
