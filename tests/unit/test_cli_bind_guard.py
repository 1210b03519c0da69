"""`bastion up --host 0.0.0.0` without a host allow-list says what to set instead of starting a
gateway that ingress would refuse to run (fail closed against DNS rebinding)."""

from pathlib import Path

import pytest
from rich.console import Console

from cli.up import bind_problem, run_up

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bastion.yaml"


@pytest.mark.parametrize(
    ("host", "environ", "refused"),
    [
        ("127.0.0.1", {}, False),
        ("0.0.0.0", {}, True),
        ("0.0.0.0", {"BASTION_ALLOWED_HOSTS": "[]"}, True),
        ("0.0.0.0", {"BASTION_ALLOWED_HOSTS": '["gw.example.com"]'}, False),
        ("::", {"BASTION_ALLOW_ANY_HOST": "true"}, False),
        ("10.0.0.7", {"BASTION_ALLOW_ANY_HOST": "no"}, True),
    ],
)
def test_bind_problem(host, environ, refused):
    assert (bind_problem(host, environ) is not None) is refused


def test_up_on_all_interfaces_without_an_allow_list_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("BASTION_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("BASTION_ALLOW_ANY_HOST", raising=False)
    err = Console(file=(tmp_path / "err.txt").open("w"), width=300)
    assert run_up(EXAMPLE, host="0.0.0.0", data_dir=tmp_path / "data", err=err, out=err) == 1
    err.file.close()
    said = (tmp_path / "err.txt").read_text()
    assert "BASTION_ALLOWED_HOSTS" in said and "BASTION_ALLOW_ANY_HOST" in said
    assert not (tmp_path / "data" / "stack.json").exists()
