"""`bench/code_mode_tokens.py`: definition tokens of the classic catalog against Code Mode's meta-tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from libs.common.contracts.codemode import META_TOOLS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "code_mode_tokens.py"
sys.path.insert(0, str(ROOT / "bench"))
import tokens  # noqa: E402


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--schemas", str(folder)], capture_output=True, text=True, timeout=120
    )


def test_o200k_is_loaded_offline_from_the_repo_file():
    enc = tokens.encoding()
    assert enc.name == "o200k_base"
    # known o200k_base ids: the same text tokenizes differently under cl100k_base
    assert enc.encode("hello world") == [24912, 2375]


def test_the_16_real_servers_reach_the_reduction_target(tool_schemas_dir):
    done = _run(tool_schemas_dir)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(summary) == ["servers", "tools", "classic_tokens", "code_mode_tokens", "reduction"]
    assert summary["servers"] == 16
    assert summary["tools"] == 516
    assert summary["code_mode_tokens"] == tokens.count_json([tokens.definition(t) for t in META_TOOLS])
    assert summary["classic_tokens"] > 100_000
    assert summary["reduction"] == round(1 - summary["code_mode_tokens"] / summary["classic_tokens"], 4)
    assert summary["reduction"] >= 0.97


def test_counts_exactly_the_namespaced_definitions_of_any_folder(tmp_path):
    tool = {"name": "get-forecast", "description": "Weather for a city.", "inputSchema": {"type": "object"}}
    (tmp_path / "weather.json").write_text(json.dumps({"tools": [tool]}))
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    expected = tokens.count_json([tokens.definition(tool, "weather__get-forecast")])
    assert summary["servers"] == summary["tools"] == 1
    assert summary["classic_tokens"] == expected


@pytest.mark.parametrize(
    ("files", "message"),
    [({}, "no *.json tool listings"), ({"broken.json": "{not json"}, "broken.json: not a tools/list result")],
)
def test_bad_folders_get_a_clear_error(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = _run(tmp_path)
    assert done.returncode != 0
    assert message in done.stderr
