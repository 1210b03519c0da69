"""The one stack and browser every module of the console's browser tests shares, started once.

Package-scoped, so the stack with its 1,200-tool server and Chromium start once for the folder, not
once per module; `tests/support/package_workers.py` keeps the folder's modules in one xdist worker.
What the tests leave running is checked when the package ends, after the stack stopped: a module's
end would find the threads the stack started meanwhile, still running for the next module.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from libs.common.settings import CodeModeSettings
from tests.support.admin_api import principal_token
from tests.support.console_chromium import Chromium, shared_chromium
from tests.support.console_stack import console_stack
from tests.support.console_views import Stack
from tests.support.gateway import READS_EXAMPLES, default_config
from tests.support.process_leaks import leaks_checked

ROOT = Path(__file__).resolve().parents[3]
MANY = ROOT / "tests" / "support" / "many_tools_server.py"


@pytest.fixture(scope="package", autouse=True)
async def leaks_per_package(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Set up before the stack (autouse), so its check runs after the stack is torn down."""
    async with leaks_checked(request.node.nodeid):
        yield


@pytest.fixture(scope="module", autouse=True)
def leaks_per_module() -> Iterator[None]:
    """No check per module here: `leaks_per_package` checks the folder once, at its end."""
    yield


@pytest.fixture(scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("console")
    config = default_config({"many": {"command": sys.executable, "args": [str(MANY)], "sandbox": READS_EXAMPLES}})
    # no test here searches tools: embedding the 1,200 tools of `many` would be CPU for nothing
    codemode = CodeModeSettings(sandbox_workers=1, search_embeddings=False)
    # nor changes a definition unannounced: re-listing 1,200 tools every 2 s to catch one would be too
    drift = {"drift_interval": 0}
    async with console_stack(tmp, config, codemode=codemode, executor_options=drift) as (gateway, admin, owner):
        roles = {
            role: await principal_token(admin, owner, f"{role}@example.com", {"role": role}, kind="person")
            for role in ("analyst", "auditor", "viewer")
        }
        yield Stack(gateway, admin, owner, **roles)


@pytest.fixture(scope="package")
async def chromium(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chromium]:
    """One browser for the folder's modules, a tab per test."""
    async with shared_chromium(tmp_path_factory.mktemp("chromium")) as shared:
        yield shared
