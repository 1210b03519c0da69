"""The README's first command as a new user meets it: a fresh clone, `./run up`, the banner, Ctrl-C.

    .venv/bin/python tests/first_hour/readme_up.py [--source DIR] [--twice]

Clones `--source` (default: this checkout; only what is committed travels) into a new temporary
folder, and runs there the `./run up` line of README.md's "Two commands" block, taken from the README
itself, with nothing but documented flags (`--port`, `--admin-port`: free ports, so that it never
meets another stack). The clone has no `.venv`: the run installs it, as the user's first one does.
Then it checks what the README promises:

- the banner comes (within `--within` seconds, the install included);
- every URL it prints answers (HTTP below 500; `nats://` and `redis://` accept a connection);
- no service restarted (the supervisor's lines on the terminal say "restarting");
- every module of `services`, `libs` and `cli` has its bytecode, so no service compiles it at start;
- with the README's demo key, `prompts/list` and `resources/list` name every example prompt and
  resource the README names, and a `tools/call` of the README's example call answers with its sum;
- the README's Python example, as printed (its URL given the port the banner printed), run with
  `.venv/bin/python` as the README says, lists the tools and prints the sum;
- the README's minimal config passes `./run config check` as typed once its `${VAR}` and `key_env`
  variables are set, and without them fails naming one;
- every line of the README's "manage it from a second terminal" block, typed into a shell in the
  clone, succeeds: the key it creates lists what its grants name, and is refused once revoked; the
  export writes JSON lines; `audit tail -f` follows (stopped after its first lines);
- Ctrl-C (SIGINT to the process group, as a terminal sends it) stops everything within 30 s, and no
  process is left that runs from the clone.

`--twice` starts it a second time from the same clone (the warm start) and checks the same, but for
the README's example, config and second-terminal lines. It prints one PASS/FAIL line per check and
the time from the command to the banner; exits 1 on any failure. The suite runs it
(`tests/e2e/test_readme_first_command.py`). Plain HTTP JSON-RPC, so it needs only `httpx`.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from cli.bytecode import PACKAGES

ROOT = Path(__file__).resolve().parents[2]
STOP_WITHIN = 30.0
BANNER_END = "Ctrl-C to stop"


class Readme:
    """What the README tells the user to type and to expect."""

    def __init__(self, text: str) -> None:
        block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.S)
        assert block, "README.md has no bash block under '## Two commands'"
        lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
        self.up = next(line for line in lines if line.startswith("./run up"))
        self.key = _found(r"Bearer (bk_[A-Za-z0-9_]+)", text, "a demo key")
        call = re.search(r'call_tool\("([^"]+)", (\{[^}]*\})\)', text)
        assert call, "README.md no longer shows an example call_tool"
        self.tool, self.arguments = call.group(1), call.group(2)
        self.prompts = re.findall(r"`([^`]+)`", _found(r"prompts\s+\(([^)]*)\)", text, "the example prompts"))
        self.resources = re.findall(r"`([^`]+)`", _found(r"resources\s+\(([^)]*)\)", text, "the example resources"))
        self.example = _found(
            r"\*\*Python \(official `mcp` SDK\)\*\*.*?```python\n(.*?)```", text, "the Python example"
        )
        self.example_url = _found(r'streamable_http_client\("([^"]+)"', self.example, "the example's URL")
        configure = text[text.index("## Configure your own servers") :]
        self.config = _found(r"```yaml\n(.*?)```", configure, "the minimal config")
        self.config_check = _found(r"^(\./run config check \S+)", configure, "`./run config check`")
        block = _found(
            r"manage it from a second terminal.*?```bash\n(.*?)```", configure, "the second terminal's block"
        )
        self.second_terminal = [_COMMENT.sub("", line).strip() for line in block.splitlines() if line.strip()]
        run = _found(r"\(`(\.venv/bin/python\s+\S+\.py)`", text, "how to run the Python example")
        self.example_run = " ".join(run.split())  # the README wraps it


_COMMENT = re.compile(r"\s+#\s.*$")
"""A shell comment after a command, as the README's blocks write them (`  # what it does`)."""


def _found(pattern: str, text: str, what: str) -> str:
    match = re.search(pattern, text, re.S | re.M)
    assert match, f"README.md no longer shows {what} ({pattern})"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def banner_urls(banner: str) -> list[str]:
    return sorted(set(re.findall(r"\b(?:https?|nats|redis)://[^\s)\]]+", banner)))


def answers(url: str) -> str | None:
    """None when `url` answers, else why not."""
    parts = urlsplit(url)
    if parts.scheme in ("nats", "redis"):
        try:
            socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=5).close()
        except OSError as exc:
            return str(exc)
        return None
    try:
        status = httpx.get(url, timeout=10, follow_redirects=True, trust_env=False).status_code
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if status < 500 else f"HTTP {status}"


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


def _left_running(clone: Path) -> list[str]:
    """Processes that run from the clone (their command line or working folder in it)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(clone) in cmdline or cwd == str(clone) or cwd.startswith(f"{clone}/"):
            left.append(f"{entry.name}: {cmdline[:120]}")
    return left


def _mcp(checks: Checks, url: str, readme: Readme) -> None:
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


def typed(line: str, clone: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`line` typed into a shell in the clone: its exit status and what it printed."""
    done = subprocess.run(
        ["bash", "-c", line], cwd=clone, env=env or user_env(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


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
        self.secret = _found(r"^(bk_\S+)$", output, "a printed secret")
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


PORT_TAKEN = "it is already in use; pick another with"
"""What `bastion up` says when a port it was given is taken (`cli.up.port_problem`)."""
_PORT_TRIES = 3


def _started(clone: Path, readme: Readme, within: float, label: str) -> tuple[Terminal, float | None]:
    """The command on two free ports, and when its banner came (None: not within `within`, or it exited).

    The ports are free when chosen, but the first start installs `.venv` for minutes before it binds
    them, and on a busy machine another process may take one meanwhile: then `bastion up` says so and
    exits, and the command runs again on other ports (the install is done by then). Any other exit counts."""
    for attempt in range(1, _PORT_TRIES + 1):
        port, admin_port = free_port(), free_port()
        argv = [*shlex.split(readme.up), "--port", str(port), "--admin-port", str(admin_port)]
        print(f"{label}: {shlex.join(argv)}  (in {clone})", flush=True)
        terminal = Terminal(argv, clone)
        banner_at = terminal.wait_for(BANNER_END, within)
        if banner_at is not None or terminal.proc.poll() is None or PORT_TAKEN not in terminal.text():
            return terminal, banner_at
        if attempt < _PORT_TRIES:
            print(f"      a chosen port was taken before it was bound (try {attempt}); again on others", flush=True)
    return terminal, banner_at


def _uncompiled(clone: Path) -> list[str]:
    """The modules of the clone's `PACKAGES` whose bytecode file is missing or older than their source.

    Each service process would compile them again at every start, since neither PYTHONDONTWRITEBYTECODE
    nor a service's box lets it write them (`cli/bytecode.py`, run by `bastion up`)."""
    stale = []
    for source in sorted(p for folder in PACKAGES for p in (clone / folder).rglob("*.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:16] if cached.is_file() else b""
        stat = source.stat()
        expected = importlib.util.MAGIC_NUMBER + bytes(4) + struct.pack("<II", int(stat.st_mtime), stat.st_size)
        if header != expected:
            stale.append(str(source.relative_to(clone)))
    return stale


def one_start(clone: Path, readme: Readme, within: float, label: str, first: bool = True) -> Checks:
    checks = Checks()
    terminal, banner_at = _started(clone, readme, within, label)
    try:
        checks.check("the banner comes", None if banner_at is not None else f"not within {within:g}s")
        if banner_at is None:
            print(terminal.text()[-4000:])
            return checks
        print(f"      time to banner: {banner_at:.1f}s", flush=True)
        banner = terminal.text().split("Bastion is up")[-1]
        urls = banner_urls(banner)
        checks.check("the banner prints URLs", None if urls else "none found")
        for url in urls:
            checks.attempt(f"{url} answers", lambda url=url: answers(url))
        mcp = next((u for u in urls if u.endswith("/mcp")), None)
        if mcp:
            _mcp(checks, mcp, readme)
            if first:
                as_a_new_user(checks, clone, readme, mcp)
        restarts = [line for _, line in terminal.lines if "restarting" in line]
        checks.check("no service restarted", "; ".join(restarts)[:1000] if restarts else None)
        stale = _uncompiled(clone)
        missing = f"{len(stale)} without, e.g. {stale[:3]}" if stale else None
        checks.check("every module of the services has its bytecode", missing)
    finally:
        took = terminal.interrupt() if terminal.proc.poll() is None else 0.0
        stopped = f" (in {took:.1f}s)" if took else ""
        checks.check(f"Ctrl-C stops it within {STOP_WITHIN:g}s{stopped}", None if took is not None else "still running")
        if took is None:
            os.killpg(terminal.proc.pid, signal.SIGKILL)
        time.sleep(1.0)
        left = _left_running(clone)
        checks.check("no process left", "; ".join(left) if left else None)
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="the git tree to clone (default: this one)")
    parser.add_argument("--within", type=float, default=1200.0, help="seconds to wait for the banner")
    parser.add_argument("--twice", action="store_true", help="start a second time from the same clone")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    parser.add_argument(
        "--parent", type=Path, help="the folder to clone into a new folder of (default: the system's temporary one)"
    )
    args = parser.parse_args()
    readme = Readme((args.source / "README.md").read_text())
    if args.parent:
        args.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bastion-readme-up-", dir=args.parent)).resolve()
    clone = folder / "bastion"
    subprocess.run(["git", "clone", "--quiet", str(args.source), str(clone)], check=True)
    failed: list[str] = []
    try:
        starts = ["first start (installs .venv)", *(["second start"] if args.twice else [])]
        for number, label in enumerate(starts):
            failed += one_start(clone, readme, args.within, label, first=number == 0).failed
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
    print(f"readme_up: {'FAIL: ' + ', '.join(failed) if failed else 'PASS'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
