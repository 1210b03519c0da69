"""The OS wall itself (`libs.common.runtime.walls.confine`), each part attacked from a confined child process:
Landlock's files, ports, signals and ptrace rule, the seccomp deny-list, the rlimits, and the
launcher that confines a command before executing it. The test process itself is never confined."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from libs.common.runtime.walls import confine as confine_module
from libs.common.runtime.walls.confine import Confinement, Limits, abi_version
from libs.common.runtime.walls.profiles import DEVICES, SYSTEM_EXECUTE, SYSTEM_READ, everything_but, python_paths

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(abi_version() == 0, reason="this kernel has no Landlock"),
]

ROOT = Path(__file__).resolve().parents[2]


def _run_confined(box: Confinement, code: str, before: str = "") -> dict[str, str]:
    """Run `code` (which fills `results` through `attempt`, with `call(number, *args)` for a raw system
    call) in a child confined to `box`, after `before` ran unconfined; its results as JSON."""
    program = (
        "import ctypes, errno, json, os, socket, sys\n"
        + textwrap.dedent(before)
        + textwrap.dedent(
            """
        from libs.common.runtime.walls.confine import Confinement, confine
        outcome = confine(Confinement.from_json(sys.argv[1]))
        results = {"summary": outcome.summary()}
        def attempt(name, action):
            try:
                action()
                results[name] = "ok"
            except OSError as exc:
                results[name] = errno.errorcode.get(exc.errno, str(exc))
            except MemoryError:
                results[name] = "MemoryError"
        libc = ctypes.CDLL(None, use_errno=True)
        def call(number, *args):
            # attempt()'s action for the raw system call `number`
            def go():
                if libc.syscall(number, *args) == -1:
                    raise OSError(ctypes.get_errno(), "syscall")
            return go
        """
        )
        + textwrap.dedent(code)
        + "\nprint(json.dumps(results))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, box.to_json()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _python_box(read: tuple[str, ...] = (), **kwargs: object) -> Confinement:
    """A box a Python child can run in (the system, its interpreter, our packages), plus `read`."""
    system = [*SYSTEM_READ, *python_paths([]), str(ROOT / "libs")]
    return Confinement(read=[*system, *read], devices=list(DEVICES), **kwargs)  # type: ignore[arg-type]


def test_files_beneath_the_named_folders_only(tmp_path):
    readable, writable, other = tmp_path / "readable", tmp_path / "writable", tmp_path / "other"
    for folder in (readable, writable, other):
        folder.mkdir()
        (folder / "file").write_text("x")
    box = _python_box(read=(str(readable),), write=[str(writable)])
    results = _run_confined(
        box,
        f"""
        attempt("read readable", lambda: open({str(readable / "file")!r}).read())
        attempt("read other", lambda: open({str(other / "file")!r}).read())
        attempt("list other", lambda: os.listdir({str(other)!r}))
        attempt("write readable", lambda: open({str(readable / "new")!r}, "w"))
        attempt("write writable", lambda: open({str(writable / "new")!r}, "w").write("y"))
        attempt("remove writable", lambda: os.remove({str(writable / "file")!r}))
        attempt("rename out", lambda: os.rename({str(writable / "new")!r}, {str(other / "moved")!r}))
        attempt("truncate readable", lambda: os.truncate({str(readable / "file")!r}, 0))
        """,
    )
    assert results["summary"].startswith(f"Landlock ABI {abi_version()}")
    assert results["read readable"] == "ok" and results["write writable"] == "ok" and results["remove writable"] == "ok"
    for refused in ("read other", "list other", "write readable", "rename out", "truncate readable"):
        assert results[refused] in ("EACCES", "EXDEV"), (refused, results)
    assert (readable / "file").read_text() == "x" and not (other / "moved").exists()


@pytest.mark.skipif(abi_version() < 4, reason="Landlock network rules need ABI 4")
def test_tcp_ports_only_those_named():
    with socket.create_server(("127.0.0.1", 0)) as allowed, socket.create_server(("127.0.0.1", 0)) as other:
        allowed_port, other_port = allowed.getsockname()[1], other.getsockname()[1]
        results = _run_confined(
            _python_box(connect_ports=[allowed_port], bind_ports=[]),
            f"""
            attempt("connect allowed", lambda: socket.create_connection(("127.0.0.1", {allowed_port})).close())
            attempt("connect other", lambda: socket.create_connection(("127.0.0.1", {other_port})).close())
            attempt("bind", lambda: socket.create_server(("127.0.0.1", 0)).close())
            """,
        )
    assert results["connect allowed"] == "ok"
    assert results["connect other"] == "EACCES" and results["bind"] == "EACCES"


def test_other_processes_are_out_of_reach():
    parent = os.getpid()
    results = _run_confined(
        _python_box(),
        f"""
        attempt("environ", lambda: open("/proc/{parent}/environ").read())
        attempt("mem", lambda: open("/proc/{parent}/mem", "rb").read(1))
        libc = ctypes.CDLL(None, use_errno=True)
        def ptrace():
            if libc.ptrace(16, {parent}, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "ptrace")
        attempt("ptrace", ptrace)
        attempt("signal", lambda: os.kill({parent}, 0))
        attempt("own environ", lambda: open("/proc/self/environ").read())
        """,
    )
    assert results["environ"] == "EACCES" and results["mem"] == "EACCES"
    assert results["ptrace"] == "EPERM"  # the seccomp deny-list answers first
    if abi_version() >= 6:
        assert results["signal"] == "EPERM"
    assert results["own environ"] == "ok"


def test_the_seccomp_deny_list():
    results = _run_confined(
        _python_box(),
        """
        attempt("unshare", call(272, 0x10000000))          # CLONE_NEWUSER
        attempt("mount", call(165, None, None, None, 0, None))
        attempt("keyctl", call(250, 0))
        attempt("bpf", call(321, 0, None, 0))
        attempt("x32 ptrace", call(0x40000000 | 521, 0, 0, 0, 0))
        attempt("getpid", call(39))
        """,
    )
    for denied in ("unshare", "mount", "keyctl", "bpf", "x32 ptrace"):
        assert results[denied] == "EPERM", (denied, results)
    assert results["getpid"] == "ok"


def test_no_box_lets_a_process_type_into_its_own_terminal_or_open_a_ring():
    """TIOCSTI pushes input into a terminal as if typed, TIOCLINUX pastes on a console: refused by
    seccomp in every box even on the process's own controlling terminal, where the kernel allows
    them. So are io_uring (what a ring does is no system call a filter sees) and, unless the box
    allows it, memfd_create (an anonymous file to execute, out of Landlock's sight)."""
    terminal = """
        import fcntl, pty
        os.setsid()  # a session whose controlling terminal is the first terminal it opens
        master, slave = pty.openpty()
        own = os.open(os.ttyname(slave), os.O_RDWR)
        """
    attacks = """
        attempt("TIOCSTI", lambda: fcntl.ioctl(own, 0x5412, b"x"))
        attempt("TIOCSTI high bits", call(16, own, 0x1_0000_5412, ctypes.c_char_p(b"x")))
        attempt("TIOCLINUX", lambda: fcntl.ioctl(own, 0x541C, bytes([2]) + bytes(12)))
        attempt("TCGETS", lambda: fcntl.ioctl(own, 0x5401, bytes(64)))
        attempt("io_uring_setup", call(425, 8, ctypes.create_string_buffer(120)))
        attempt("memfd_create", lambda: os.close(os.memfd_create("x")))
        attempt("pidfd_open", lambda: os.close(os.pidfd_open(os.getpid())))
        """
    for memfd in (False, True):
        results = _run_confined(_python_box(memfd=memfd), attacks, before=terminal)
        for refused in ("TIOCSTI", "TIOCSTI high bits", "TIOCLINUX", "io_uring_setup"):
            assert results[refused] == "EPERM", (refused, results)
        assert results["TCGETS"] == "ok" and results["pidfd_open"] == "ok", results
        assert results["memfd_create"] == ("ok" if memfd else "EPERM"), results


def test_memory_and_file_size_limits(tmp_path):
    results = _run_confined(
        _python_box(write=[str(tmp_path)], limits=Limits(memory_bytes=256 * 1024**2, file_bytes=1024)),
        f"""
        attempt("allocate 512 MiB", lambda: bytearray(512 * 1024 * 1024))
        attempt("allocate 8 MiB", lambda: bytearray(8 * 1024 * 1024))
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        def write_2k():
            with open({str(tmp_path / "big")!r}, "w") as big:
                big.write("x" * 2048)
        attempt("write 2 KiB", write_2k)
        """,
    )
    assert results["allocate 512 MiB"] == "MemoryError" and results["allocate 8 MiB"] == "ok"
    assert results["write 2 KiB"] == "EFBIG"


def test_everything_but_leaves_out_the_folder_and_every_way_into_it(tmp_path):
    secret = tmp_path / "data" / "secret"
    secret.mkdir(parents=True)
    (tmp_path / "sibling").mkdir()
    (tmp_path / "into").symlink_to(secret)
    (tmp_path / "above").symlink_to(tmp_path / "data")
    paths = everything_but([str(tmp_path / "data")])
    assert str(tmp_path / "sibling") in paths and "/usr" in paths
    assert not [p for p in paths if p.startswith(str(tmp_path / "data"))]
    assert str(tmp_path / "into") not in paths and str(tmp_path / "above") not in paths


def test_the_launcher_confines_the_command_it_runs(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (inside / "file").write_text("inside")
    (outside / "file").write_text("outside")
    box = Confinement(read=[*SYSTEM_READ, str(inside)], execute=list(SYSTEM_EXECUTE), devices=list(DEVICES))
    launcher = [sys.executable, "-I", "-S", confine_module.__file__, box.to_json(), "--"]
    allowed = subprocess.run([*launcher, "cat", str(inside / "file")], capture_output=True, text=True, timeout=30)
    refused = subprocess.run([*launcher, "cat", str(outside / "file")], capture_output=True, text=True, timeout=30)
    missing = subprocess.run([*launcher, "no-such-command-here"], capture_output=True, text=True, timeout=30)
    assert allowed.returncode == 0 and allowed.stdout == "inside"
    assert refused.returncode != 0 and "Permission denied" in refused.stderr and "outside" not in refused.stdout
    assert missing.returncode == 127 and "cannot start 'no-such-command-here'" in missing.stderr


def test_a_box_travels_as_json_unchanged():
    box = Confinement(read=["/a"], write=["/b"], connect_ports=[443], bind_ports=None, limits=Limits(processes=9))
    again = Confinement.from_json(box.to_json())
    assert again.to_json() == box.to_json() and again.limits.processes == 9 and again.bind_ports is None
