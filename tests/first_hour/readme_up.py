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

Its sibling modules (imported as such: it runs as a script): `readme_text` reads what the README says,
`user_shell` is the user's terminal, shell and MCP client, `after_banner` what they do once it is up.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from after_banner import as_a_new_user, mcp_requests
from readme_text import Readme
from user_shell import STOP_WITHIN, Checks, Terminal

from cli.bytecode import PACKAGES

ROOT = Path(__file__).resolve().parents[2]
BANNER_END = "Ctrl-C to stop"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
            mcp_requests(checks, mcp, readme)
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
