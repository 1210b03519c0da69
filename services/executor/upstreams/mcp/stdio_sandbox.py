"""Each stdio server in a box of its own: the command line that confines it, then starts it.

A third-party MCP server (`npx ...`, `uvx ...`, `python server.py`) is code Bastion did not write,
running on the gateway's machine. Unconfined it could read `<data dir>/stack.json` and every NKey
seed, write a `.pth` file into the virtualenv (code run by every service), or signal the executor.
So the executor starts it through `libs/common/runtime/walls/confine.py` run as a script, which confines
itself (Landlock, seccomp, rlimits: `confine.confine`) and then execs the server:

    python -I -S confine.py '<Confinement JSON>' -- <command> <args...>

What the box holds (docs/stdio-sandbox.md):

- its own working folder `<stdio root>/<server>`, read, written and executed, with its caches and
  temporary files inside (npm, uv, pip, XDG, TMPDIR), so no server poisons another's npx cache; it
  is also the server's `cwd` unless its entry names one;
- read and execute: the system (`SYSTEM_EXECUTE`), Python (the interpreter and its virtualenv,
  never written), the folder of its command, `~/.nvm` and `~/.local`;
- read only: the rest of `SYSTEM_READ`, `~/.npmrc`, `~/.npm`, `~/.cache`, the `cwd` its entry
  names, and the folder of each argument that names an existing path (a script's folder; for a file
  inside a `node_modules` tree, that whole tree, where Node finds the script's dependencies), never
  the config file's folder unless the entry names it (`config_file.load_config` sets no `cwd`);
- the `sandbox.read` and `sandbox.write` widenings of its configuration;
- devices: `DEVICES` only (no terminal); seccomp as every box, `memfd_create` allowed;
- TCP: no port to listen on; `sandbox.connect` names the ports it may connect to, by default
  `WEB_PORTS` (the stack's listeners on loopback are on none of them by default).

Never: the protected folders (the data dir, the stdio root beyond its own folder), even beneath a
folder granted above; a grant that contains one becomes every path beside it (`everything_but`).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import site
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from libs.common.contracts.config import SandboxConfig, ServerConfig
from libs.common.runtime.walls import confine
from libs.common.runtime.walls.confine import Confinement, Limits, abi_version, processes_beyond_current
from libs.common.runtime.walls.profiles import DEVICES, SYSTEM_EXECUTE, SYSTEM_READ, everything_but, within

__all__ = ["WEB_PORTS", "Launch", "StdioRoot", "launch"]

log = logging.getLogger(__name__)

_HOME_EXECUTE: Final = (".nvm", ".local")
"""Where Node (nvm) and `uvx`/`pipx` tools live: read and executed, never written."""
_HOME_READ: Final = (".npmrc", ".npm", ".cache")
_CACHES: Final = {
    "npm_config_cache": "cache/npm",
    "XDG_CACHE_HOME": "cache",
    "UV_CACHE_DIR": "cache/uv",
    "PIP_CACHE_DIR": "cache/pip",
    "TMPDIR": "tmp",
}
"""Variables pointing the usual package tools at folders inside the server's own working folder."""
WEB_PORTS: Final = (53, 80, 443)
"""Where a server may connect when its entry says nothing: DNS over TCP, HTTP and HTTPS, on any host
(Landlock confines ports, not addresses), so a registry's server reaches its API and its package
registry, and none of the stack's listeners (NATS, Valkey, the admin API, `/metrics`, the gateway)."""


@dataclass(frozen=True)
class StdioRoot:
    """Where the stdio servers' working folders live, and the folders no server may touch."""

    folder: Path
    protected: tuple[Path, ...]
    """The data dir (and `folder` itself): refused to every server beyond its own working folder."""
    temporary: bool = False
    """`folder` is a temporary root of the executor's own, made when first needed (`_made`)."""

    @classmethod
    def of(cls, stdio_root: str, data_dir: str = "") -> StdioRoot:
        """From `ExecutorSettings.stdio_root` and `data_dir`; an empty root.

        A new private folder under the system's temporary directory, made when the first server needs
        it: an executor that runs no stdio server leaves nothing there, even when it is killed before it
        could remove what it made."""
        if stdio_root:
            folder = Path(stdio_root)
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            folder = Path(tempfile.gettempdir()) / f"bastion-stdio-{secrets.token_hex(8)}"
        folder = folder.resolve()
        protected = [folder, *([Path(data_dir).resolve()] if data_dir else [])]
        return cls(folder, tuple(protected), temporary=not stdio_root)

    def working_folder(self, server: str) -> Path:
        """`<root>/<server>` with its cache and temporary folders, made if missing.

        Server names (`config.SERVER_NAME`) hold no `/` and never start with a dot."""
        if self.temporary:
            self._made()
        own = self.folder / server
        for sub in {"", *_CACHES.values()}:
            (own / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        return own

    def _made(self) -> None:
        """The temporary root, made private if missing; one found in place must be a private folder of this user's.

        (Made for an earlier server, or planted by someone who guessed its random name: the servers'
        folders are not put where another user could reach them.)"""
        try:
            self.folder.mkdir(mode=0o700, parents=True)
            return
        except FileExistsError:
            pass
        found = self.folder.lstat()
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
            raise PermissionError(f"the stdio servers' root {self.folder} is not a private folder of this user's")


@dataclass(frozen=True)
class Launch:
    """How to start one stdio server: the command, its arguments, extra environment, folder."""

    command: str
    args: list[str]
    env: dict[str, str]
    cwd: str | None


def launch(name: str, config: ServerConfig, root: StdioRoot, env: Mapping[str, str]) -> Launch:
    """The command line that starts `config`'s server confined (`sandbox.mode: on`) or as configured.

    (`off`, logged as a warning); `env` is the environment it will get (for `PATH`)."""
    assert config.command is not None
    if config.sandbox.mode == "off":
        log.warning(
            "server %s: its sandbox is OFF (sandbox.mode: off): it runs with every right of the executor's "
            "user, and may read the gateway's credentials",
            name,
        )
        return Launch(config.command, list(config.args), {}, config.cwd)
    own = root.working_folder(name)
    cwd = Path(config.cwd) if config.cwd else own
    found = shutil.which(config.command, path=env.get("PATH"), mode=os.X_OK)
    if found is None and not (os.sep in config.command and (cwd / config.command).is_file()):
        # said before the launcher starts, as starting it unboxed would say it, not as a closed pipe
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), config.command)
    command = found or config.command
    extra = {variable: str(own / sub) for variable, sub in _CACHES.items()}
    if sys.platform != "linux":
        log.warning("server %s: %s is not Linux: the server is NOT sandboxed", name, sys.platform)
        return Launch(command, list(config.args), extra, str(cwd))
    box = _box(name, config, root, own, cwd, command)
    if abi_version() == 0:
        log.warning("server %s: this kernel has no Landlock: its files and ports are NOT confined", name)
    launcher = ["-I", "-S", str(Path(confine.__file__).resolve()), box.to_json(), "--", command]
    return Launch(sys.executable, [*launcher, *config.args], extra, str(cwd))


def _box(name: str, config: ServerConfig, root: StdioRoot, own: Path, cwd: Path, command: str) -> Confinement:
    sandbox = config.sandbox
    home = Path.home()
    executable: list[str | Path] = [
        *SYSTEM_EXECUTE,
        *_python_home(),
        *_command_folders(command),
        *(home / p for p in _HOME_EXECUTE),
    ]
    readable: list[str | Path] = [
        *SYSTEM_READ,
        *(home / p for p in _HOME_READ),
        *([cwd] if _narrow(cwd) else []),
        *_argument_folders(config.args, cwd),
    ]
    readable += [_absolute(path, cwd) for path in sandbox.read]
    writable = [_absolute(path, cwd) for path in sandbox.write]
    refused = [str(path) for path in writable if any(within(path, f) or within(f, path) for f in root.protected)]
    if refused:
        log.warning("server %s: sandbox.write %s: the data dir and the stdio root are left out", name, refused)
    missing = [str(path) for path in [*writable, *(_absolute(p, cwd) for p in sandbox.read)] if not path.exists()]
    if missing:  # a box names existing paths only: say so, or a refused write looks like the server's bug
        log.warning("server %s: sandbox paths %s do not exist, so the server may not use them", name, missing)
    return Confinement(
        read=_outside(readable, root.protected),
        execute=[*_outside(executable, root.protected), str(own)],
        write=[*_outside(writable, root.protected), str(own)],
        devices=list(DEVICES),
        bind_ports=(),
        connect_ports=_connect_ports(sandbox),
        limits=_limits(sandbox),
        # Chromium-based servers (a browser to drive) and some JITs share memory through memfds;
        # what one could execute, the server's own interpreter already runs
        memfd=True,
    )


def _connect_ports(sandbox: SandboxConfig) -> list[int] | None:
    if sandbox.connect is None:
        return list(WEB_PORTS)
    return None if sandbox.connect == "any" else list(sandbox.connect)


def _limits(sandbox: SandboxConfig) -> Limits:
    return Limits(
        memory_bytes=sandbox.memory_mb << 20,
        open_files=sandbox.open_files,
        processes=processes_beyond_current(sandbox.processes),
        cpu_seconds=sandbox.cpu_seconds,
        core_bytes=0,
    )


def _absolute(path: str, cwd: Path) -> Path:
    return (cwd / Path(path).expanduser()).resolve()


def _python_home() -> list[str]:
    """The interpreter this executor runs on, its standard library and virtualenv.

    What `python server.py` needs, and not the import folders beyond it (a checkout on `PYTHONPATH`)."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent)}
    return sorted({*found, *site.getsitepackages()})


def _command_folders(command: str) -> list[Path]:
    """The folder of the command and of what it links to (`npx` -> npm's own folder).

    For a virtualenv's `bin/` (its Python, a console script), the whole virtualenv."""
    if not os.path.isabs(command):
        return []
    folders = [_shared_folder(Path(command).parent), _shared_folder(Path(command).resolve().parent)]
    return [folder.parent if (folder.parent / "pyvenv.cfg").is_file() else folder for folder in folders]


def _argument_folders(args: Iterable[str], cwd: Path) -> list[Path]:
    """The folder of each argument naming an existing path (a directory: itself).

    Never one so wide it holds the user's home."""
    found = []
    for arg in args:
        if arg.startswith("-") or not arg or "\x00" in arg:
            continue
        path = (cwd / Path(arg).expanduser()).resolve()
        try:
            folder = path if path.is_dir() else path.parent if path.exists() else None
        except OSError:
            folder = None
        if folder is not None:
            found.append(_shared_folder(folder))
    return [folder for folder in found if _narrow(folder)]


def _narrow(folder: Path) -> bool:
    """Narrow enough to be granted for a mere argument or `cwd`.

    Not `/`, not a top-level folder (`/etc`), not the user's home or a folder holding it."""
    return len(folder.resolve().parts) > 2 and not within(Path.home(), folder)


def _shared_folder(folder: Path) -> Path:
    """A folder inside a `node_modules` tree stands for the whole tree.

    Node looks up a script's dependencies in the `node_modules` folders above it."""
    parts = folder.parts
    if "node_modules" in parts:
        return Path(*parts[: parts.index("node_modules") + 1])
    return folder


def _outside(paths: Iterable[str | Path], protected: Iterable[Path]) -> list[str]:
    """`paths` less every protected folder.

    A path inside one is left out, a path holding one is replaced by everything in it but the protected
    folder."""
    shielded = list(protected)
    kept: list[str] = []
    for path in dict.fromkeys(str(p) for p in paths):
        if any(within(path, folder) for folder in shielded):
            continue
        inner = [str(folder) for folder in shielded if within(folder, path)]
        kept += everything_but(inner, path) if inner else [path]
    return kept
