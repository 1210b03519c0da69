"""What a user has at hand: a terminal running a command, a shell line, an MCP client, and the checks' tally.

A helper of `readme_up.py` and `after_banner.py`, imported as a sibling module (they run as a script).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

STOP_WITHIN = 30.0
"""Seconds Ctrl-C may take to stop a command."""


def user_env() -> dict[str, str]:
    """A user's shell: none of Bastion's settings, no virtualenv or Python variables of the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "VIRTUAL_ENV", "PYTHON"))}


class Terminal:
    """The command in a process group of its own, its output read line by line as a terminal shows it."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def wait_for(self, text: str, within: float) -> float | None:
        """Seconds from the start to the first line holding `text`, or None (exited, or not within)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            seen = next((at for at, line in list(self.lines) if text in line), None)
            if seen is not None:
                return seen
            if self.proc.poll() is not None:
                time.sleep(0.5)  # the last lines
                return next((at for at, line in list(self.lines) if text in line), None)
            time.sleep(0.2)
        return None

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def interrupt(self) -> float | None:
        """Ctrl-C: SIGINT to the group; seconds until the command exits, or None past `STOP_WITHIN`."""
        sent = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            return None
        return time.monotonic() - sent


def typed(line: str, clone: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`line` typed into a shell in the clone: its exit status and what it printed."""
    done = subprocess.run(
        ["bash", "-c", line], cwd=clone, env=env or user_env(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


class McpClient:
    """Streamable HTTP JSON-RPC, as any MCP client sends it."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.ids = url, 0
        self.headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
        self.http = httpx.Client(timeout=60, trust_env=False)

    def request(self, method: str, params: dict[str, object]) -> dict[str, object]:
        self.ids += 1
        answer = self.http.post(
            self.url, headers=self.headers, json={"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}
        )
        answer.raise_for_status()
        if "mcp-session-id" in answer.headers:
            self.headers["Mcp-Session-Id"] = answer.headers["mcp-session-id"]
        body = answer.text
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
        found: dict[str, object] = json.loads(body)
        if "error" in found:
            raise RuntimeError(f"{method}: {found['error']}")
        return found["result"]  # type: ignore[return-value]

    def start(self) -> None:
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "readme-up", "version": "1"}})  # fmt: skip
        headers = {**self.headers, "Content-Type": "application/json"}
        self.http.post(self.url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def check(self, name: str, problem: str | None) -> None:
        print(f"{'PASS' if problem is None else 'FAIL'}  {name}{'' if problem is None else ': ' + problem}", flush=True)
        if problem is not None:
            self.failed.append(name)

    def attempt(self, name: str, action: Callable[[], str | None]) -> None:
        try:
            problem = action()
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        self.check(name, problem)
