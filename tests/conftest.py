"""Shared fixtures: real servers on free ports, fresh for each test that asks for one.

nats-server starts in ~50 ms and Valkey in ~100 ms, so isolation per test is cheaper than
reasoning about state shared between tests.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion_cli.stack import EmbeddedNats, EmbeddedValkey

pytest_plugins = ["tests.support.admin_api"]  # `ingress` and `api`: the admin API in-process

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EXAMPLE_SERVERS = ROOT / "examples" / "servers"

# tiktoken: use the shipped o200k_base ranks instead of downloading them
_TIKTOKEN = SHARED / "data" / "tiktoken" / "o200k_base.tiktoken"
if _TIKTOKEN.exists() and "TIKTOKEN_CACHE_DIR" not in os.environ:
    cache = ROOT / ".pytest_cache" / "tiktoken"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "fb374d419588a4632f3f557e76b4b70aebbca790"
    if not target.exists():
        shutil.copyfile(_TIKTOKEN, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey").start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(valkey_server: EmbeddedValkey) -> str:
    return valkey_server.url


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def tool_schemas_dir() -> Path:
    return SHARED / "data" / "tool-schemas"
