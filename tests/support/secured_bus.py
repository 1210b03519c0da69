"""Fixtures of a bus as `bastion up` secures it: every role's NKey (`creds`) and a nats-server that
enforces the permissions table (`secured_nats`); a plugin of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.credentials import StackCredentials, make_credentials
from cli.stack import EmbeddedNats

__all__ = ["creds", "secured_nats"]


@pytest.fixture
def creds(tmp_path: Path) -> StackCredentials:
    return make_credentials(tmp_path, {})


@pytest.fixture
def secured_nats(tmp_path: Path, creds: StackCredentials) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", authorization=creds.authorization).start()
    yield server
    server.stop()
