"""The CLI stays cheap to start: its help and the admin-API commands talk HTTP, so they must not load
the bus client, the MCP types (hundreds of pydantic models) or any service. Every `bastion` call pays
for what its import pulls in (measured: 1.1-1.8 s of CPU before this rule, about 0.3 s after)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY = (
    "nats", "aiohttp", "mcp", "mcp_types", "opentelemetry", "services", "libs.common.contracts.config",
    "libs.common.settings.config_file",
)  # fmt: skip

LOADED = """
import sys
from cli.main import app
try:
    app(sys.argv[1:], prog_name="bastion")
except SystemExit:
    pass
print(" ".join(sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["keys", "--help"], ["servers", "--help"], ["tools", "--help"]])
def test_help_loads_no_bus_mcp_or_service_module(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", LOADED, *args], capture_output=True, text=True, timeout=60)
    assert "Usage" in done.stdout, done.stderr
    loaded = set(done.stdout.splitlines()[-1].split())
    heavy = sorted(m for m in loaded if m in HEAVY or m.split(".")[0] in HEAVY)
    assert not heavy, f"bastion {' '.join(args)} loaded {heavy[:12]}"
