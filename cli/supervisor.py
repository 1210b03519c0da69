"""Process supervision for `bastion up`: start children, restart the ones that die, stop them in order.

Synchronous and single-threaded on purpose: Linux's parent-death signal (`kill_with_parent`) fires
when the *thread* that forked the child exits, so every child is spawned from the main thread, and a
poll loop is easier to reason about (and to test) than watcher threads.

Orphans: stdio upstreams are started by the executor in their own session (the MCP SDK does that),
so killing the executor's process group does not reach them. `set_child_subreaper` makes such
orphans ours instead of init's, and `OrphanSweeper` kills and reaps them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from libs.common.settings.handed_secrets import FD_VARIABLE, MAX_BYTES

from .stack import kill_with_parent

__all__ = [
    "Backoff",
    "ChildSpec",
    "OrphanSweeper",
    "StopSignals",
    "Supervisor",
    "describe_exit",
    "direct_children",
    "set_child_subreaper",
]

Notify = Callable[[str], None]


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial` doubling up to `maximum`, back to `initial` once a child stayed up.

    Not tenacity (`libs.common.runtime.patience`): the supervisor is one synchronous poll loop over many
    children, each with its own next start time, and there is no call to wrap; only the delay is
    computed here, and the uptime reset needs the child's, not an attempt count."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.reset_after:
            return self.initial
        return min(previous * 2, self.maximum)


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    log_path: Path | None = None
    """stdout and stderr are appended here; None means they go wherever ours go."""
    backoff: Backoff | None = None
    """Restart delays for this child alone (None: the supervisor's). The bus and Valkey come back
    sooner than a crashing service, because every service waits on them."""
    secrets: Mapping[str, object] | None = None
    """Handed to the child, at every start, through the read end of a pipe it inherits (named by
    `BASTION_SECRETS_FD`, `libs.common.settings.handed_secrets`), never through its environment."""


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay: float | None = None
    starts: int = 0


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _last_line(path: Path | None, limit: int = 240) -> str:
    """The last non-empty line of a child's log: usually the reason it died."""
    if path is None:
        return ""
    with contextlib.suppress(OSError), path.open("rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
        for line in reversed(fh.read().decode(errors="replace").splitlines()):
            if line.strip() and not line.startswith("=== "):
                return line.strip()[:limit]
    return ""


@contextlib.contextmanager
def _handover(spec: ChildSpec) -> Iterator[tuple[dict[str, str] | None, tuple[int, ...]]]:
    """The child's environment and the descriptors it inherits.

    With secrets, a pipe already holding them (less than a pipe's buffer, so this write never waits),
    whose read end is closed here once the child has its copy."""
    if not spec.secrets:
        yield spec.env, ()
        return
    data = json.dumps(spec.secrets).encode()
    if len(data) > MAX_BYTES:
        raise OSError(f"{spec.name}: {len(data):,} bytes of secrets are more than a pipe hands over at once")
    read, write = os.pipe()
    try:
        os.write(write, data)
        os.close(write)
        write = -1
        yield {**(os.environ if spec.env is None else spec.env), FD_VARIABLE: str(read)}, (read,)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """Keeps a set of children running; `poll()` must be called regularly from the main thread."""

    def __init__(
        self,
        specs: Iterable[ChildSpec],
        *,
        backoff: Backoff = Backoff(),
        grace: float = 10.0,
        notify: Notify = lambda msg: print(msg, file=sys.stderr),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = {spec.name: _Child(spec) for spec in specs}
        self.backoff = backoff
        self.grace = grace
        self.notify = notify
        self.clock = clock
        self.stopping = False

    def pids(self, names: Iterable[str] | None = None) -> set[int]:
        """The running children's pids (of those in `names` if given)."""
        wanted = set(self.children if names is None else names)
        return {c.proc.pid for n, c in self.children.items() if c.proc is not None and n in wanted}

    def start(self) -> None:
        """Start every child not already running (see `adopt`)."""
        for child in self.children.values():
            if child.proc is None:
                self._spawn(child)

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Supervise `proc`, started elsewhere, as child `name`: restarts run its spec's argv.

        For servers whose first start has to discover something (a free port) that every restart
        must then reuse, so the clients that know the address can reconnect."""
        child = self.children[name]
        child.proc, child.started_at, child.starts = proc, self.clock(), child.starts + 1

    def _spawn(self, child: _Child) -> None:
        spec, now = child.spec, self.clock()
        child.restart_at = None
        out = None
        try:
            if spec.log_path is not None:
                spec.log_path.parent.mkdir(parents=True, exist_ok=True)
                out = spec.log_path.open("ab")
                out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} bastion: starting {spec.name}\n".encode())
                out.flush()
            with _handover(spec) as (env, fds):
                child.proc = subprocess.Popen(
                    spec.argv,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT if out else None,
                    pass_fds=fds,
                    preexec_fn=kill_with_parent,  # own session (no terminal) + dies with us
                )
        except OSError as exc:
            child.proc = None
            child.delay = (spec.backoff or self.backoff).next_delay(child.delay, 0.0)
            child.restart_at = now + child.delay
            self.notify(f"{spec.name} could not be started ({exc}); retrying in {child.delay:g}s")
        else:
            child.started_at, child.starts = now, child.starts + 1
        finally:
            if out is not None:
                out.close()  # the child holds its own descriptor

    def poll(self) -> None:
        """Notice children that died and (re)start the ones whose backoff has elapsed."""
        now = self.clock()
        for child in self.children.values():
            if child.proc is not None and (code := child.proc.poll()) is not None:
                _killpg(child.proc.pid, signal.SIGKILL)  # whatever it left in its process group
                child.proc = None
                if self.stopping:
                    continue
                uptime = now - child.started_at
                child.delay = (child.spec.backoff or self.backoff).next_delay(child.delay, uptime)
                child.restart_at = now + child.delay
                why = _last_line(child.spec.log_path)
                where = f" (log: {child.spec.log_path})" if child.spec.log_path else ""
                self.notify(
                    f"{child.spec.name} {describe_exit(code)} after {uptime:.1f}s"
                    + (f": {why}" if why else "")
                    + f"; restarting in {child.delay:g}s{where}"
                )
            if not self.stopping and child.proc is None and child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)

    def stop(
        self, order: Iterable[Iterable[str]] = (), force: Callable[[], bool] = lambda: False, keep: Iterable[str] = ()
    ) -> None:
        """Stop the children group by group.

        Then any not named except those to `keep` running (a later `stop` ends them; none is restarted
        any more): SIGTERM, SIGKILL after `grace`."""
        self.stopping = True
        for child in self.children.values():
            child.restart_at = None
        groups = [list(group) for group in order]
        named = {name for group in groups for name in group} | set(keep)
        groups.append([name for name in self.children if name not in named])
        for group in groups:
            self._stop_group([self.children[name] for name in group if name in self.children], force)

    def _stop_group(self, children: list[_Child], force: Callable[[], bool]) -> None:
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            _killpg(child.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = self.clock() + self.grace
        while any(c.proc.poll() is None for c in running) and self.clock() < deadline and not force():  # type: ignore[union-attr]
            time.sleep(0.02)
        for child in children:
            if child.proc is None:
                continue
            _killpg(child.proc.pid, signal.SIGKILL)  # stragglers, and helpers left in its group
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)
            child.proc = None


class StopSignals:
    """SIGINT/SIGTERM/SIGHUP request a stop; a second one asks to skip the grace period.

    The handler only sets flags (no I/O): the main loop notices them within one poll interval.
    """

    def __init__(self) -> None:
        self.requested = False
        self.force = False
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.force = self.requested
        self.requested = True
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


_PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper() -> bool:
    """Become the parent of orphaned descendants (Linux), so nothing we started escapes us."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError):
        return bool(ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0)
    return False


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def direct_children(parent: int | None = None) -> dict[int, str]:
    """pid -> state of every process whose parent is `parent` (default: us), from /proc."""
    parent = os.getpid() if parent is None else parent
    found: dict[int, str] = {}
    with contextlib.suppress(OSError):  # cheap path (CONFIG_PROC_CHILDREN): no scan of every process
        pids = {
            int(p) for task in Path(f"/proc/{parent}/task").iterdir() for p in (task / "children").read_text().split()
        }
        for pid in pids:
            if (st := _stat(pid)) is not None and st[1] == parent:
                found[pid] = st[0]
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[1] == parent:
            found[int(entry)] = st[0]
    return found


@dataclass
class OrphanSweeper:
    """Kills (SIGTERM, then SIGKILL after `grace`) and reaps our direct children we did not start."""

    grace: float = 5.0
    first_seen: dict[int, float] = field(default_factory=dict)

    def sweep(self, known: set[int]) -> int:
        """One pass; returns how many strangers are still alive."""
        if not sys.platform.startswith("linux"):
            return 0
        now, alive = time.monotonic(), 0
        for pid, state in direct_children().items():
            if pid in known:
                continue
            if state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                self.first_seen.pop(pid, None)
                continue
            alive += 1
            if pid not in self.first_seen:
                self.first_seen[pid] = now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            elif now - self.first_seen[pid] >= self.grace:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return alive

    def finish(self, known: set[int], timeout: float) -> None:
        """Sweep until no stranger is left (or `timeout`), SIGKILLing the last ones."""
        deadline = time.monotonic() + timeout
        while self.sweep(known) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.grace = 0.0
        for _ in range(100):
            if not self.sweep(known):
                break
            time.sleep(0.02)
        self.sweep(known)  # reap the last zombies
