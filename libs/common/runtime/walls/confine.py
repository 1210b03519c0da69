"""The operating system's wall around one process: Landlock, seccomp, rlimits, capabilities.

A process calls `confine(Confinement(...))` once, early; from then on the kernel, not Bastion's own
checks, refuses what the confinement does not name, for the process and every child it starts
(Landlock domains and seccomp filters are inherited across fork and exec, and only ever narrow).

- **Landlock** (Linux 5.13+, unprivileged): files and directories the process may read, execute
  and write, beneath the paths given (every other path is refused, `EACCES`); on ABI 4+ the TCP
  ports it may bind and connect to; on ABI 6+ it may neither signal processes outside its domain
  nor reach abstract Unix sockets outside it. A process in a domain may not ptrace, or read the
  `/proc/<pid>/environ` and `mem` of, any process outside it.
- **seccomp**: a short deny-list of system calls no service or tool server needs (ptrace, mount,
  namespaces, kernel modules, bpf, keyrings, io_uring, ...) answers `EPERM`, and so do the two
  terminal ioctls that type into or take over a terminal (`TIOCSTI`, `TIOCLINUX`); `memfd_create`
  too, unless the box allows it (`Confinement.memfd`).
- **rlimits**: memory, open files, processes, written file size, CPU seconds, no core dumps.
- **privileges**: `no_new_privs` (no set-uid gain on exec), not dumpable (other processes of the
  same user cannot read this one's memory or environment), and, when running as root, every
  capability dropped from the bounding set, so an exec'd child starts with none.

Each part reports what it did (`Outcome`); a kernel without Landlock or seccomp leaves that part
off and says so, never failing the start.

This module uses the standard library only, so that it also runs as a script: the executor starts
every stdio server as `python -I -S confine.py '<confinement JSON>' -- <command> <args...>`, which
confines itself and then execs the server (`main`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import platform
import resource
import stat
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Final

__all__ = ["Confinement", "Limits", "Outcome", "abi_version", "confine", "main", "processes_beyond_current"]

# Landlock's system calls and flags (include/uapi/linux/landlock.h); the numbers are the same on
# every architecture that has them since 5.13.
_SYS_CREATE_RULESET: Final = 444
_SYS_ADD_RULE: Final = 445
_SYS_RESTRICT_SELF: Final = 446
_CREATE_RULESET_VERSION: Final = 1
_RULE_PATH_BENEATH: Final = 1
_RULE_NET_PORT: Final = 2

_FS_EXECUTE: Final = 1 << 0
_FS_WRITE_FILE: Final = 1 << 1
_FS_READ_FILE: Final = 1 << 2
_FS_READ_DIR: Final = 1 << 3
_FS_REMOVE_DIR: Final = 1 << 4
_FS_REMOVE_FILE: Final = 1 << 5
_FS_MAKE_CHAR: Final = 1 << 6
_FS_MAKE_DIR: Final = 1 << 7
_FS_MAKE_REG: Final = 1 << 8
_FS_MAKE_SOCK: Final = 1 << 9
_FS_MAKE_FIFO: Final = 1 << 10
_FS_MAKE_BLOCK: Final = 1 << 11
_FS_MAKE_SYM: Final = 1 << 12
_FS_REFER: Final = 1 << 13  # ABI 2
_FS_TRUNCATE: Final = 1 << 14  # ABI 3
_FS_IOCTL_DEV: Final = 1 << 15  # ABI 5
_NET_BIND_TCP: Final = 1 << 0  # ABI 4
_NET_CONNECT_TCP: Final = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0  # ABI 6
_SCOPE_SIGNAL: Final = 1 << 1

_FS_BY_ABI: Final = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_ONLY: Final = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
"""Rights that apply to a file itself; the others apply to what a directory holds."""
_READ: Final = _FS_READ_FILE | _FS_READ_DIR
_EXECUTE: Final = _READ | _FS_EXECUTE
_WRITE: Final = (
    _READ | _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE_DIR | _FS_MAKE_REG | _FS_MAKE_SOCK
    | _FS_MAKE_FIFO | _FS_MAKE_SYM | _FS_REFER | _FS_TRUNCATE
)  # fmt: skip
_DEVICES: Final = _READ | _FS_WRITE_FILE | _FS_IOCTL_DEV

_PR_SET_DUMPABLE: Final = 4
_PR_CAPBSET_DROP: Final = 24
_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_SET_SECCOMP: Final = 22
_SECCOMP_MODE_FILTER: Final = 2

_DENIED_SYSCALLS_X86_64: Final = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "move_mount": 429, "open_tree": 428,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "unshare": 272, "setns": 308, "swapon": 167, "swapoff": 168, "reboot": 169, "kexec_load": 246,
    "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
    "acct": 163, "quotactl": 179, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159,
    "iopl": 172, "ioperm": 173, "name_to_handle_at": 303, "open_by_handle_at": 304, "lookup_dcookie": 212,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
}  # fmt: skip
"""System calls no Bastion service and no MCP tool server needs, each a known way out of a sandbox
or into another process: reading other processes' memory, changing what the filesystem is,
namespaces, the kernel itself, keyrings. They fail with `EPERM`. io_uring among them: its
operations are not system calls, so no seccomp filter sees what a ring does, and it has been the
way into the kernel of many exploits; Python's asyncio never uses it and Node's libuv falls back to
its thread pool when `io_uring_setup` fails (docs/security.md)."""
_SYS_IOCTL: Final = 16
_SYS_MEMFD_CREATE: Final = 319
_TIOCSTI: Final = 0x5412
"""Pushes a byte into a terminal's input, as if typed: a command run by the shell outside every box."""
_TIOCLINUX: Final = 0x541C
"""The Linux console's multiplexer: pasting its selection types into the console, like TIOCSTI."""
_AUDIT_ARCH_X86_64: Final = 0xC000003E
_X32_SYSCALL_BIT: Final = 0x40000000
_CAP_NET_BIND_SERVICE: Final = 10


@dataclass(frozen=True)
class Limits:
    """Resource limits (`setrlimit`), `None` for the limit the process already has."""

    memory_bytes: int | None = None
    """RLIMIT_DATA: the heap and private writable mappings, not address space reserved and never
    touched (V8 and the JVM reserve far more than they use, which RLIMIT_AS would count)."""
    open_files: int | None = None
    processes: int | None = None
    """RLIMIT_NPROC counts every process of the user, not only this one's children: the caller
    adds what the user already runs (`processes_beyond_current`)."""
    file_bytes: int | None = None
    cpu_seconds: int | None = None
    core_bytes: int | None = 0


@dataclass(frozen=True)
class Confinement:
    """What one process may touch; paths are absolute, missing ones are left out."""

    read: Sequence[str] = ()
    execute: Sequence[str] = ()
    write: Sequence[str] = ()
    devices: Sequence[str] = ()
    """Device files read, written and controlled (`/dev/null`, a terminal)."""
    bind_ports: Sequence[int] | None = ()
    """TCP ports it may listen on; `None`: any."""
    connect_ports: Sequence[int] | None = None
    """TCP ports it may connect to; `None`: any."""
    limits: Limits = field(default_factory=Limits)
    seccomp: bool = True
    landlock: bool = True
    memfd: bool = False
    """Whether `memfd_create` is allowed: an anonymous file a process may write and execute, which
    Landlock's execute rule does not see. Chromium and some JITs need it for shared memory."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Confinement:
        data = json.loads(text)
        data["limits"] = Limits(**data.get("limits", {}))
        return cls(**data)


@dataclass
class Outcome:
    """What `confine` did: Landlock's ABI (0: none), and a line per part left off and why."""

    landlock_abi: int = 0
    landlock: bool = False
    seccomp: bool = False
    capabilities_dropped: bool = False
    skipped: list[str] = field(default_factory=list)
    missing_paths: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"Landlock ABI {self.landlock_abi}" if self.landlock else "Landlock OFF"]
        parts.append("seccomp" if self.seccomp else "seccomp OFF")
        if self.capabilities_dropped:
            parts.append("capabilities dropped")
        text = ", ".join(parts)
        return f"{text} ({'; '.join(self.skipped)})" if self.skipped else text


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library already loaded in this process.

    (`find_library` would run a compiler, and needs a temporary directory the process may no longer
    have)."""
    return ctypes.CDLL(None, use_errno=True)


def _syscall(libc: ctypes.CDLL, number: int, *args: object) -> int:
    result = int(libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def abi_version() -> int:
    """Landlock's ABI in this kernel, 0 when it has none (too old, or not enabled at boot)."""
    if sys.platform != "linux":
        return 0
    try:
        return _syscall(
            _libc(), _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
        )
    except OSError:
        return 0


def _fs_handled(abi: int) -> int:
    return _FS_BY_ABI[max(level for level in _FS_BY_ABI if level <= abi)]


def _add_path(libc: ctypes.CDLL, ruleset: int, path: str, rights: int, handled: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FILE_ONLY
        allowed = rights & handled
        if not allowed:
            return True
        attr = struct.pack("=Qi", allowed, fd)
        _syscall(libc, _SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), attr, ctypes.c_uint32(0))
    finally:
        os.close(fd)
    return True


def _add_port(libc: ctypes.CDLL, ruleset: int, port: int, rights: int) -> None:
    attr = struct.pack("=QQ", rights, port)
    _syscall(libc, _SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_NET_PORT), attr, ctypes.c_uint32(0))


def _net_rules(box: Confinement, abi: int) -> tuple[int, list[tuple[int, int]]]:
    """(handled network rights, (port, rights) rules); nothing before ABI 4."""
    if abi < 4:
        return 0, []
    handled = 0
    rules: dict[int, int] = {}
    for ports, right in ((box.bind_ports, _NET_BIND_TCP), (box.connect_ports, _NET_CONNECT_TCP)):
        if ports is None:
            continue
        handled |= right
        for port in ports:
            rules[int(port)] = rules.get(int(port), 0) | right
    return handled, sorted(rules.items())


def _landlock(box: Confinement, outcome: Outcome) -> None:
    abi = outcome.landlock_abi = abi_version()
    if abi == 0:
        outcome.skipped.append("this kernel has no Landlock: files and ports are not confined by the OS")
        return
    libc = _libc()
    handled = _fs_handled(abi)
    net_handled, ports = _net_rules(box, abi)
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled, net_handled, scoped)
    size = 24 if abi >= 6 else 16
    ruleset = _syscall(libc, _SYS_CREATE_RULESET, attr, ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for paths, rights in ((box.read, _READ), (box.execute, _EXECUTE), (box.write, _WRITE), (box.devices, _DEVICES)):
            for path in paths:
                if not _add_path(libc, ruleset, path, rights, handled):
                    outcome.missing_paths.append(path)
        for port, rights in ports:
            _add_port(libc, ruleset, port, rights)
        _syscall(libc, _SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    outcome.landlock = True
    if abi < 4 and (box.bind_ports is not None or box.connect_ports is not None):
        outcome.skipped.append(f"Landlock ABI {abi} has no network rules: ports are not confined by the OS")


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _seccomp_program(numbers: Iterable[int]) -> bytes:
    """A classic BPF filter.

    Wrong architecture, a denied number, or `ioctl` with TIOCSTI or TIOCLINUX -> EPERM, else allow. The
    kernel reads an ioctl's request as a 32-bit `unsigned int`, so the filter compares the low half of
    the argument only (high bits set change nothing)."""
    ld_w_abs, jeq_k, jge_k, ret_k = 0x20, 0x15, 0x35, 0x06
    allow, eperm = 0x7FFF0000, 0x00050000 | errno.EPERM
    denied = sorted(set(numbers))
    n = len(denied)
    program = [_bpf(ld_w_abs, 4), _bpf(jeq_k, _AUDIT_ARCH_X86_64, 1, 0), _bpf(ret_k, eperm), _bpf(ld_w_abs, 0)]
    program.append(_bpf(jge_k, _X32_SYSCALL_BIT, n + 2, 0))  # the x32 numbering of the same calls: EPERM
    program.append(_bpf(jeq_k, _SYS_IOCTL, n + 2, 0))  # to the ioctl check after the EPERM return
    for index, number in enumerate(denied):
        program.append(_bpf(jeq_k, number, n - index, 0))  # match: jump to the EPERM return
    program += [_bpf(ret_k, allow), _bpf(ret_k, eperm)]
    request = 16 + 8 * 1 + (0 if sys.byteorder == "little" else 4)  # seccomp_data.args[1], its low 32 bits
    program += [_bpf(ld_w_abs, request), _bpf(jeq_k, _TIOCSTI, 2, 0), _bpf(jeq_k, _TIOCLINUX, 1, 0)]
    program += [_bpf(ret_k, allow), _bpf(ret_k, eperm)]
    return b"".join(program)


def _seccomp(box: Confinement, outcome: Outcome) -> None:
    if platform.machine() != "x86_64":
        outcome.skipped.append(f"no seccomp deny-list for {platform.machine()}")
        return
    denied = [*_DENIED_SYSCALLS_X86_64.values(), *([] if box.memfd else [_SYS_MEMFD_CREATE])]
    program = _seccomp_program(denied)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("=HxxxxxxQ", len(program) // 8, ctypes.addressof(buffer))
    libc = _libc()
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0) != 0:
        outcome.skipped.append(f"seccomp refused: {os.strerror(ctypes.get_errno())}")
        return
    outcome.seccomp = True


def _drop_capabilities(box: Confinement, outcome: Outcome) -> None:
    """As root: empty the bounding set.

    So nothing this process execs regains a capability, and keep none itself but binding a port below
    1024 when it listens on one (root without capabilities still owns its files, but can no longer sniff
    loopback, override permissions or kill others)."""
    if os.geteuid() != 0:
        return
    libc = _libc()
    try:
        with open("/proc/sys/kernel/cap_last_cap") as last_cap:
            last = int(last_cap.read())
    except OSError:
        last = 40
    for capability in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)
    low_port = any(port < 1024 for port in box.bind_ports or ())
    kept = (1 << _CAP_NET_BIND_SERVICE) if low_port else 0
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = struct.pack("=6I", kept, kept, 0, 0, 0, 0)  # effective, permitted, inheritable (low, high)
    if libc.capset(header, data) != 0:
        outcome.skipped.append(f"capabilities kept: {os.strerror(ctypes.get_errno())}")
        return
    outcome.capabilities_dropped = True


def _limits(limits: Limits) -> None:
    for kind, value in (
        (resource.RLIMIT_DATA, limits.memory_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_CORE, limits.core_bytes),
    ):
        if value is None:
            continue
        _, hard = resource.getrlimit(kind)
        ceiling = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(kind, (ceiling, ceiling))


def processes_beyond_current(extra: int) -> int:
    """An RLIMIT_NPROC that lets this user start `extra` more processes or threads than it runs now.

    (The kernel counts every thread of the user's against it, not only processes)."""
    uid = os.getuid()
    running = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    running += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return running + extra


def confine(box: Confinement) -> Outcome:
    """Confine this process (and all it will start) to `box`; irreversible."""
    outcome = Outcome()
    if sys.platform != "linux":
        outcome.skipped.append(f"{sys.platform} is not Linux: nothing is confined by the OS")
        return outcome
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:  # Landlock confines the calling thread and the threads it starts, not these
        outcome.skipped.append(f"{threads - 1} thread(s) started before confinement keep the files they may reach")
    _limits(box.limits)
    libc = _libc()
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        outcome.skipped.append(f"no_new_privs refused: {os.strerror(ctypes.get_errno())}")
        return outcome
    _drop_capabilities(box, outcome)
    if box.landlock:
        _landlock(box, outcome)
    else:
        outcome.skipped.append("Landlock turned off for this process")
    if box.seccomp:
        _seccomp(box, outcome)
    return outcome


def main(argv: Sequence[str]) -> None:
    """`confine.py '<Confinement JSON>' -- command args...`: confine, say so on stderr, exec."""
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: confine.py '<confinement JSON>' -- command [args...]\n")
        raise SystemExit(2)
    box = Confinement.from_json(argv[0])
    if os.getsid(0) != os.getpid():
        # a session of its own: no controlling terminal to type into or read keystrokes from. A
        # process group leader cannot start one (EPERM); the seccomp filter still refuses TIOCSTI
        with contextlib.suppress(OSError):
            os.setsid()
    outcome = confine(box)
    if outcome.skipped:
        sys.stderr.write(f"bastion sandbox: {outcome.summary()}\n")
    try:
        os.execvp(argv[2], list(argv[2:]))
    except OSError as exc:
        sys.stderr.write(f"bastion sandbox: cannot start {argv[2]!r}: {exc.strerror}\n")
        raise SystemExit(127) from None


if __name__ == "__main__":
    main(sys.argv[1:])
