"""A stdio server's `sandbox` section and the box it turns into (`services.executor.upstreams.mcp.stdio_sandbox`):
what the launcher is told before any server runs. The kernel's side is attacked in
tests/integration/test_stdio_sandbox.py."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from cli.layout import stdio_writes
from libs.common.contracts.config import ConfigError, ServerConfig
from libs.common.runtime.walls.boxes import box_for
from libs.common.runtime.walls.confine import Confinement
from libs.common.runtime.walls.profiles import within
from libs.common.settings import ExecutorSettings
from libs.common.settings.config_file import load_config, parse_config
from services.executor.upstreams.mcp.stdio_sandbox import Launch, StdioRoot, launch

pytestmark = pytest.mark.unit


def _box(started: Launch) -> Confinement:
    assert started.command == sys.executable and started.args[:2] == ["-I", "-S"]
    assert started.args[2].endswith("libs/common/runtime/walls/confine.py") and started.args[4] == "--"
    return Confinement.from_json(started.args[3])


def _granted(box: Confinement) -> list[str]:
    return [*box.read, *box.execute, *box.write, *box.devices]


def test_an_unquoted_yaml_off_turns_the_sandbox_off_and_defaults_keep_it_on(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("mcpServers:\n  a: {command: srv, sandbox: {mode: off}}\n  b: {command: srv}\n")
    servers = load_config(path).mcp_servers
    assert servers["a"].sandbox.mode == "off"
    assert servers["b"].sandbox.mode == "on" and servers["b"].sandbox.connect is None


def test_relative_sandbox_paths_resolve_against_the_config_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("mcpServers:\n  a: {command: srv, sandbox: {read: [docs], write: [out/x]}}\n")
    sandbox = load_config(path).mcp_servers["a"].sandbox
    assert sandbox.read == [str(tmp_path / "docs")] and sandbox.write == [str(tmp_path / "out" / "x")]


@pytest.mark.parametrize(
    ("sandbox", "problem"),
    [
        ({"mode": "maybe"}, "mode"),
        ({"connect": [0]}, "connect"),
        ({"memory_mb": 1}, "memory_mb"),
        ({"write": [""]}, "is not a path"),
        ({"mystery": 1}, "mystery"),
    ],
)
def test_a_bad_sandbox_is_refused_naming_the_field(sandbox: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config({"mcpServers": {"a": {"command": "srv", "sandbox": sandbox}}})


def test_a_sandbox_on_a_remote_server_is_refused() -> None:
    with pytest.raises(ConfigError, match="'sandbox' is for stdio servers"):
        parse_config({"mcpServers": {"a": {"url": "https://example.com/mcp", "sandbox": {"mode": "off"}}}})


def test_the_box_holds_its_own_folder_and_caches_never_the_data_dir_beneath_its_cwd(tmp_path: Path) -> None:
    """The default config's data dir (`.bastion`) lies in the config file's folder, which is the
    server's `cwd`: the cwd is readable, the data dir in it is not."""
    data = tmp_path / ".bastion"
    (data / "credentials").mkdir(parents=True)
    (tmp_path / "server.py").write_text("")
    root = StdioRoot.of(str(data / "servers"), str(data))
    config = ServerConfig(command=sys.executable, args=["server.py"], cwd=str(tmp_path), sandbox={"connect": []})
    started = launch("files", config, root, {"PATH": "/usr/bin"})
    box, own = _box(started), data / "servers" / "files"
    assert started.cwd == str(tmp_path)
    assert str(tmp_path / "server.py") in box.read and str(tmp_path) not in box.read
    assert not any(within(path, data) or within(data, path) for path in box.read + box.execute if path != str(own))
    assert box.write == [str(own)] and str(own) in box.execute
    assert box.bind_ports == [] and box.connect_ports == []
    assert box.limits.memory_bytes == 1024 << 20 and box.limits.cpu_seconds is None
    assert started.env["TMPDIR"] == str(own / "tmp") and started.env["npm_config_cache"] == str(own / "cache" / "npm")
    assert all(Path(folder).is_dir() and within(folder, own) for folder in started.env.values())


def test_without_a_cwd_it_runs_in_its_own_folder_and_reads_its_scripts_folder_only(tmp_path: Path) -> None:
    script = tmp_path / "project" / "servers" / "srv.py"
    script.parent.mkdir(parents=True)
    script.write_text("")
    root = StdioRoot.of(str(tmp_path / "root"))
    started = launch("srv", ServerConfig(command=sys.executable, args=[str(script), "--flag"]), root, {})
    box = _box(started)
    assert started.cwd == str(tmp_path / "root" / "srv")
    assert str(script.parent) in box.read and str(tmp_path / "project") not in _granted(box)
    assert not any(within(path, root.folder) for path in _granted(box) if path != str(root.folder / "srv"))


def test_a_script_in_node_modules_reads_that_tree_and_no_argument_opens_the_home_or_the_root(tmp_path: Path) -> None:
    script = tmp_path / "node_modules" / "@scope" / "server" / "dist" / "index.js"
    script.parent.mkdir(parents=True)
    script.write_text("")
    config = ServerConfig(command="node", args=[str(script), "/", str(Path.home()), "/etc"])
    box = _box(launch("n", config, StdioRoot.of(str(tmp_path / "root")), {"PATH": "/usr/bin"}))
    assert str(tmp_path / "node_modules") in box.read
    assert not {"/", "/etc", str(Path.home())} & set(box.read)


def test_widenings_in_the_data_dir_are_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    root = StdioRoot.of(str(data / "servers"), str(data))
    (tmp_path / "out").mkdir()
    sandbox = {"read": [str(data)], "write": [str(data / "credentials"), str(tmp_path)]}
    box = _box(launch("w", ServerConfig(command=sys.executable, sandbox=sandbox), root, {}))
    assert str(data) not in box.read
    assert box.write == [str(tmp_path / "out"), str(data / "servers" / "w")]  # the folder holding the data dir
    assert "sandbox.write" in caplog.text and "left out" in caplog.text


def test_mode_off_starts_the_command_as_configured_and_warns_every_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    config = ServerConfig(command="srv", args=["-v"], cwd="/srv", sandbox={"mode": "off"})
    for _ in range(2):
        assert launch("plain", config, StdioRoot.of(str(tmp_path)), {}) == Launch("srv", ["-v"], {}, "/srv")
    assert caplog.text.count("server plain: its sandbox is OFF") == 2


def test_the_executors_own_box_holds_what_its_servers_may_write_but_never_the_data_dir(tmp_path: Path) -> None:
    """Landlock boxes nest: a server's `sandbox.write` works under a confined executor only when the
    executor's box holds it too; `bastion up` names them all from its config file."""
    data, notes = tmp_path / "data", tmp_path / "notes"
    raw = {"command": "srv", "sandbox": {"write": [str(notes), str(tmp_path)]}}
    config = parse_config({"mcpServers": {"a": raw, "b": {"command": "srv"}, "c": {"url": "https://example.com"}}})
    assert stdio_writes(config) == sorted([str(notes), str(tmp_path)])
    settings = ExecutorSettings(stdio_root=str(data / "servers"), data_dir=str(data), stdio_write=stdio_writes(config))
    box = box_for("executor", settings, str(tmp_path / "tmp"))
    assert {str(data / "servers"), str(notes)} <= set(box.write) and str(tmp_path) not in box.write
    assert not any(within(path, data) for path in box.read)


def test_a_command_in_another_virtualenv_reads_that_whole_virtualenv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "mcp-server").write_text("#!/bin/sh\n")
    (venv / "bin" / "mcp-server").chmod(0o755)
    box = _box(
        launch("v", ServerConfig(command=str(venv / "bin" / "mcp-server")), StdioRoot.of(str(tmp_path / "r")), {})
    )
    assert str(venv) in box.execute


def test_a_cwd_as_wide_as_the_home_is_not_granted(tmp_path: Path) -> None:
    config = ServerConfig(command=sys.executable, args=["-m", "server"], cwd=str(Path.home()))
    box = _box(launch("h", config, StdioRoot.of(str(tmp_path)), {}))
    assert str(Path.home()) not in _granted(box)


def test_a_widening_that_does_not_exist_is_named_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A box names existing paths only: a `write` to a file not made yet is left out, and said so."""
    caplog.set_level(logging.WARNING)
    there, absent = tmp_path / "there", tmp_path / "ledger.txt"
    there.mkdir()
    config = ServerConfig(command=sys.executable, sandbox={"write": [str(absent), str(there)]})  # type: ignore[arg-type]
    box = _box(launch("w", config, StdioRoot.of(str(tmp_path / "root")), {}))
    assert str(there) in box.write
    assert "do not exist" in caplog.text and str(absent) in caplog.text and str(there) not in caplog.text


def test_a_command_not_found_is_said_before_any_launcher_starts(tmp_path: Path) -> None:
    """As an unboxed start would say it (the server's status reads "command not found: ..."), not as
    a launcher that exits and closes the pipe."""
    with pytest.raises(FileNotFoundError) as missing:
        launch(
            "gone", ServerConfig(command="bastion-no-such-command"), StdioRoot.of(str(tmp_path)), {"PATH": "/usr/bin"}
        )
    assert missing.value.filename == "bastion-no-such-command"


def test_a_server_without_a_cwd_never_gets_the_config_files_folder(tmp_path: Path) -> None:
    """The config file holds keys and other servers' tokens: a server without a `cwd` runs in its own
    working folder, its relative script resolves against the config's folder, and its box grants the
    script's folder, not the config's."""
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "srv.py").write_text("")
    path = tmp_path / "bastion.yaml"
    path.write_text(
        "mcpServers:\n  a: {command: python, args: [servers/srv.py, -v, absent.py, .hidden]}\n"
        "  b: {command: servers/srv.py}\n"
    )
    servers = load_config(path).mcp_servers
    assert servers["b"].command == str(tmp_path / "servers" / "srv.py") and servers["b"].cwd is None
    config = servers["a"]
    assert config.cwd is None and config.args == [str(tmp_path / "servers" / "srv.py"), "-v", "absent.py", ".hidden"]
    root = StdioRoot.of(str(tmp_path / "root"))
    started = launch("a", config.model_copy(update={"command": sys.executable}), root, {})
    box = _box(started)
    assert started.cwd == str(root.folder / "a") and str(tmp_path / "servers") in box.read
    assert not any(within(path, granted) for granted in _granted(box)), "the config file is in the box"


def test_a_named_cwd_still_resolves_against_the_config_and_is_granted(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    path = tmp_path / "bastion.yaml"
    path.write_text("mcpServers:\n  a: {command: python, cwd: work, args: [srv.py]}\n")
    config = load_config(path).mcp_servers["a"]
    assert config.cwd == str(tmp_path / "work") and config.args == ["srv.py"]
    box = _box(
        launch("a", config.model_copy(update={"command": sys.executable}), StdioRoot.of(str(tmp_path / "r")), {})
    )
    assert str(tmp_path / "work") in box.read


@pytest.mark.parametrize(("connect", "ports"), [(None, [53, 80, 443]), ([], []), ([5432], [5432]), ("any", None)])
def test_a_server_connects_to_the_webs_ports_unless_its_owner_says_otherwise(
    tmp_path: Path, connect: object, ports: list[int] | None
) -> None:
    """Not every port on loopback: NATS, Valkey, the admin API and `/metrics` listen on none of these."""
    sandbox = {} if connect is None else {"connect": connect}
    config = parse_config({"mcpServers": {"a": {"command": sys.executable, "sandbox": sandbox}}}).mcp_servers["a"]
    box = _box(launch("a", config, StdioRoot.of(str(tmp_path)), {}))
    assert box.connect_ports == ports and box.memfd


def test_the_executors_box_reads_no_device_but_the_few_every_process_needs(tmp_path: Path) -> None:
    """Its servers with `sandbox: off` run in it: no disk, /dev/kvm, /dev/fuse, console or terminal."""
    box = box_for("executor", ExecutorSettings(stdio_root=str(tmp_path / "servers")), str(tmp_path / "tmp"))
    assert not any(within(path, "/dev") for path in [*box.read, *box.execute, *box.write])
    assert sorted(box.devices) == sorted(["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"])
    assert box.memfd and not box_for("policy", ExecutorSettings(), str(tmp_path / "tmp")).memfd


def test_a_temporary_root_is_made_only_when_a_server_needs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an executor that runs no stdio server leaves nothing in the temporary folder, even when it is killed
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    root = StdioRoot.of("")
    assert root.folder.parent == tmp_path and not root.folder.exists()
    own = root.working_folder("srv")
    assert own == root.folder / "srv" and (own / "tmp").is_dir()
    assert root.folder.stat().st_mode & 0o777 == 0o700
    assert root.working_folder("other").is_dir()  # found made, by itself, for the first server
    assert StdioRoot.of("").folder != root.folder


@pytest.mark.parametrize("planted", ["open folder", "link"])
def test_a_temporary_root_someone_planted_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    root = StdioRoot.of("")
    elsewhere = tmp_path / "theirs"
    elsewhere.mkdir(mode=0o700)
    if planted == "link":
        root.folder.symlink_to(elsewhere)
    else:
        root.folder.mkdir()
        root.folder.chmod(0o777)
    with pytest.raises(PermissionError, match="not a private folder"):
        root.working_folder("srv")
    assert not (elsewhere / "srv").exists()


def test_a_configured_root_is_made_at_once_and_kept_as_the_operator_made_it(tmp_path: Path) -> None:
    shared = tmp_path / "servers"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    root = StdioRoot.of(str(shared))
    assert not root.temporary and root.working_folder("srv").is_dir()
    assert StdioRoot.of(str(tmp_path / "new")).folder.is_dir()
