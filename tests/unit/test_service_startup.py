"""Services that never speak MCP themselves start without the MCP SDK: importing it builds hundreds of
pydantic models of two protocol revisions (about 0.25 CPU-s for the types, 0.4 s more for the SDK), in
every process, at every start and restart. The admin service needs the SDK only for the console's
probe and playground, on first use. The JSON-RPC codes `libs.common.contracts.errors` writes out are the ones
the SDK names."""

from __future__ import annotations

import subprocess
import sys

import mcp_types
import pytest

from libs.common.contracts import errors

pytestmark = pytest.mark.unit

LOADED = """
import sys
import services.policy.service, services.audit.service, services.codemode.service, services.admin.service
print(" ".join(sys.modules))
"""


def test_policy_audit_codemode_and_admin_start_without_the_mcp_sdk() -> None:
    done = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.splitlines()[-1].split())
    assert "services.admin.console.mcp_client" in loaded  # the import ran through the console
    assert not sorted(m for m in loaded if m.split(".")[0] in ("mcp", "mcp_types"))


def test_the_jsonrpc_codes_are_the_sdks() -> None:
    assert (errors.INVALID_PARAMS, errors.INTERNAL_ERROR) == (mcp_types.INVALID_PARAMS, mcp_types.INTERNAL_ERROR)
