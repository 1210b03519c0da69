"""What each service's job needs of the machine, as the `Confinement` it runs in.

Every service may read the system's libraries and a few files under `/etc`, its own Python
(interpreter, virtualenv, Bastion's own packages), `/proc` and `/sys`; it may write a private
temporary directory and what its settings name as its own (`*_dir` settings, the embedded
ClickHouse store of the audit service, the Code Mode vector cache). Nothing else: not the data
dir's `stack.json`, `credentials/` or another service's files, not the virtualenv or the source
(a written `.pth` file would run code in every service), not another process's `/proc/<pid>/environ`.

The executor is the exception that proves the rule: it starts the stdio servers, whose needs no
table can list (node in `~/.nvm`, `uvx` in `~/.local/bin`...), so it may read and execute every
path but the data dir (`everything_but`), and write only its stdio servers' working directories;
each server then runs in a narrower box of its own (`services.executor.upstreams.mcp.stdio_sandbox`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "DEVICES",
    "HOST_SECRETS",
    "LOADERS",
    "SYSTEM_EXECUTE",
    "SYSTEM_READ",
    "UnlistableFolder",
    "everything_but",
    "own_packages",
    "private_tmp",
    "python_paths",
    "url_ports",
    "within",
]

SYSTEM_EXECUTE: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
"""Programs and the libraries and loader they need (executing a program needs its loader's right)."""
LOADERS: Final = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")
"""Where the dynamic loader lives: executing any dynamic program executes it too."""
SYSTEM_READ: Final = (
    *SYSTEM_EXECUTE, "/proc", "/sys",
    "/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
    "/etc/gai.conf", "/etc/host.conf", "/etc/localtime", "/etc/timezone", "/etc/passwd", "/etc/group",
    "/etc/locale.alias",
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/mime.types", "/etc/os-release",
    "/etc/protocols", "/etc/services", "/etc/npmrc", "/etc/pip.conf", "/etc/python3",
)  # fmt: skip
"""Read-only for everyone: `/proc` is safe to read because a confined process may not read another
domain's `environ`, `mem` or descriptors (Landlock's ptrace rule), and `/etc` is listed file by
file (no `shadow`, no `sudoers`, no other program's configuration). `/etc/locale.alias` is where
Debian's `/usr/share/locale/locale.alias` links to (Landlock checks the link's target), read by
glibc's `setlocale` in every process."""
DEVICES: Final = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
"""The device nodes any box grants. Not `/dev/tty` (a process's controlling terminal, into which
TIOCSTI types commands the user's shell runs), not a pseudo-terminal, not the rest of `/dev` (disks,
`/dev/kvm`, `/dev/fuse`, consoles): every process Bastion starts runs in a session of its own,
with no terminal, and reads nothing of `/dev` but these."""

HOST_SECRETS: Final = (
    "/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh",
    "~/.ssh", "~/.gnupg", "~/.bash_history", "~/.python_history", "~/.lesshst", "~/.viminfo",
)  # fmt: skip
"""What even the executor's wide box leaves out: the host's and the user's own credentials and
histories. Cloud and registry credentials (`~/.aws`, `~/.npmrc`) stay readable there, since a stdio
server may be configured to use them; each server's own box reads only what it is given."""


def within(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` is `folder` or lies beneath it (both resolved)."""
    resolved, root = Path(path).resolve(), Path(folder).resolve()
    return resolved == root or root in resolved.parents


def own_packages() -> list[str]:
    """Bastion's own package folders, wherever this process imports them from.

    (A checkout, an editable install, site-packages), never the folder holding them: in a checkout that
    folder holds the data dir too. Found, not imported: the ground floor imports no service."""
    found = []
    for package in ("libs", "services", "cli"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            found += [str(Path(folder).resolve()) for folder in spec.submodule_search_locations]
    return found


def python_paths(protected: Sequence[str]) -> list[str]:
    """The interpreter, its standard library and virtualenv, and every import folder that holds nothing `protected`."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent)}
    found.update(entry for entry in sys.path if entry and os.path.isdir(entry))
    return sorted(
        path for path in found if not any(within(secret, path) or within(path, secret) for secret in protected)
    )


_LISTED: dict[Path, list[str]] = {}
"""What `everything_but` listed of each folder on the way down to an excluded path, kept for this
process: once its own box closes it may no longer list those folders (they hold what its box leaves
out), yet the executor must still compute its stdio servers' boxes from them."""


class UnlistableFolder(PermissionError):
    """A box was to be computed from a folder this process may not list: an error, never an empty grant."""


def _listing(folder: Path) -> list[str]:
    try:
        entries = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []  # nothing there to grant
    except OSError as exc:
        if folder in _LISTED:  # listed before this process's box closed
            return _LISTED[folder]
        raise UnlistableFolder(
            exc.errno,
            f"cannot list {folder} to grant everything in it but a protected folder ({exc.strerror}); "
            "name the paths the box needs beside it instead (a stdio server's `cwd` or `sandbox.read`)",
            str(folder),
        ) from exc
    _LISTED[folder] = entries
    return entries


def everything_but(excluded: Sequence[str], root: str = "/") -> list[str]:
    """Paths that together cover the whole filesystem (or the folder `root`) except `excluded`.

    Every sibling of each folder on the way from `root` down to an excluded path. A symbolic link leading
    into an excluded path is left out too. A folder on the way that this process cannot list (and did not
    list before its box closed) raises `UnlistableFolder`."""
    targets = [Path(path).resolve() for path in excluded]
    found: list[str] = []

    def inside(path: Path) -> bool:
        return any(path == target or target in path.parents for target in targets)

    def above(path: Path) -> bool:
        return any(path in target.parents for target in targets)

    def walk(folder: Path) -> None:
        for name in _listing(folder):
            path = folder / name
            resolved = path.resolve()
            if inside(path) or inside(resolved) or (resolved != path and above(resolved)):
                continue  # a link to a folder holding an excluded path would open all of it
            if above(path):
                walk(path)
            else:
                found.append(str(path))

    walk(Path(root).resolve())
    return found


def private_tmp(service: str, data_dir: str) -> str:
    """A temporary folder of this process's own, made the default for everything it runs.

    `<root>/<service>-<pid>`, where the root is `<data_dir>/tmp`, or without a data dir `bastion-<uid>`
    in the system's temporary folder. Replicas of one service each have theirs, and what a dead process
    left there is removed now: a process boxed by the OS cannot remove its own folder when it ends (that
    needs the right to change its parent), so the next one to start does."""
    root = os.path.join(data_dir, "tmp") if data_dir else os.path.join(tempfile.gettempdir(), f"bastion-{os.getuid()}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    if not _owned_privately(root):  # another user's folder in a shared /tmp: theirs to fill, not ours
        return _made_default(tempfile.mkdtemp(prefix=f"bastion-{service}-"))
    for entry in os.listdir(root):
        owner = entry.rpartition("-")[2]
        if entry.startswith(f"{service}-") and owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    folder = os.path.join(root, f"{service}-{os.getpid()}")
    shutil.rmtree(folder, ignore_errors=True)  # a reused pid's leftovers
    os.makedirs(folder, mode=0o700)
    return _made_default(folder)


def _owned_privately(folder: str) -> bool:
    found = os.lstat(folder)
    return stat.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and not found.st_mode & 0o077


def _made_default(folder: str) -> str:
    os.environ["TMPDIR"] = folder
    tempfile.tempdir = folder
    return folder


def url_ports(urls: Iterable[str], default: int) -> list[int]:
    """The TCP ports of a comma-separated URL list (`nats://a:4222,nats://b:4223`)."""
    ports: set[int] = set()
    for url in urls:
        for part in url.split(","):
            if part.strip():
                parsed = urlsplit(part.strip() if "://" in part else f"tcp://{part.strip()}")
                defaults = {"http": 80, "https": 443}
                ports.add(parsed.port or defaults.get(parsed.scheme, default))
    return sorted(ports)
