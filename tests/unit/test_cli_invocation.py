"""The banner's hints run as printed: the CLI names itself the way the person started it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from cli.invocation import LAUNCHER_VARIABLE, cli_command, data_dir_flag

pytestmark = pytest.mark.unit


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "venv" / "bin" / "bastion"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    return path


def test_started_by_run_the_hint_is_run(script: Path) -> None:
    """`./run` exports its own path: `./run keys list` works where `bastion` is not on PATH."""
    assert cli_command({LAUNCHER_VARIABLE: "./run"}, [str(script)], lambda _: None) == "./run"


def test_on_path_the_hint_is_bastion(script: Path) -> None:
    assert cli_command({}, [str(script)], lambda _: str(script)) == "bastion"


def test_off_path_the_hint_is_the_path_it_was_started_by(script: Path) -> None:
    assert cli_command({}, [str(script)], lambda _: None) == shlex.quote(str(script))


def test_another_bastion_on_path_is_not_named(script: Path, tmp_path: Path) -> None:
    """PATH finds some other install: `bastion` would run that one, so the hint names this one."""
    other = tmp_path / "elsewhere" / "bastion"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    assert cli_command({}, [str(script)], lambda _: str(other)) == shlex.quote(str(script))


def test_started_as_a_module_the_hint_is_the_module() -> None:
    command = cli_command({}, ["/repo/cli/__main__.py"], lambda _: None)
    assert command == f"{shlex.quote(sys.executable)} -m cli"


def test_a_path_with_a_space_is_quoted(tmp_path: Path) -> None:
    script = tmp_path / "my venv" / "bastion"
    assert cli_command({}, [str(script)], lambda _: None) == f"'{script}'"


def test_the_default_data_dir_needs_no_flag(tmp_path: Path) -> None:
    assert data_dir_flag(tmp_path / ".bastion", cwd=tmp_path) == ""


def test_any_other_data_dir_is_named_in_the_hint(tmp_path: Path) -> None:
    """The CLI looks in `./.bastion`: a stack elsewhere is found only through `--data-dir`."""
    elsewhere = tmp_path / "state dir"
    assert data_dir_flag(elsewhere, cwd=tmp_path) == f" --data-dir '{elsewhere}'"
    assert data_dir_flag(tmp_path / ".bastion", cwd=tmp_path / "sub") == f" --data-dir {tmp_path / '.bastion'}"
