"""Upstream secrets sealed with Fernet: round trip, rotation (new key first, old still opens),
and clear errors that never echo a key or a secret."""

from __future__ import annotations

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.runtime.sealing import SEALED_PREFIX, Sealer, SealingError, new_key

pytestmark = pytest.mark.unit

SECRET = "ghp_0123456789abcdef"


def _server() -> ServerConfig:
    return ServerConfig(
        url="https://mcp.example.com/mcp",
        headers={"Authorization": f"Bearer {SECRET}"},
        env={"TOKEN": SECRET, "EMPTY": ""},
    )


def test_sealed_values_are_not_plain_text_and_open_again() -> None:
    sealer = Sealer(new_key())
    sealed = sealer.seal(_server())
    assert SECRET not in sealed.model_dump_json()
    assert all(v.startswith(SEALED_PREFIX) for v in (*sealed.env.values(), *sealed.headers.values()))
    assert sealed.url == "https://mcp.example.com/mcp", "only env and headers values are sealed"
    assert sealer.open(sealed) == _server()
    assert sealer.seal(sealed) == sealed, "a sealed value (sent back unchanged) is not sealed twice"


def test_rotation_old_ciphertext_opens_with_the_new_list_and_reseal_moves_it_to_the_first_key() -> None:
    old, new = new_key(), new_key()
    sealed_old = Sealer(old).seal(_server())
    rotated = Sealer(f"{new},{old}")
    assert rotated.open(sealed_old) == _server()
    assert not rotated.is_current(sealed_old)
    resealed = rotated.reseal(sealed_old)
    assert rotated.is_current(resealed)
    assert Sealer(new).open(resealed) == _server(), "after re-sealing the old key can be dropped"
    with pytest.raises(SealingError, match="none of the keys"):
        Sealer(new).open(sealed_old)


def test_errors_name_the_value_but_never_a_key_or_a_secret() -> None:
    sealed = Sealer(new_key()).seal(_server())
    with pytest.raises(SealingError) as no_key:
        Sealer().open(sealed)
    assert "env 'TOKEN'" in str(no_key.value) and "no BASTION_SECRETS_KEY" in str(no_key.value)
    assert SECRET not in str(no_key.value)
    with pytest.raises(SealingError, match="not a comma-separated list of Fernet keys") as bad:
        Sealer("not-a-fernet-key")
    assert "not-a-fernet-key" not in str(bad.value)


def test_without_a_key_values_are_kept_as_given() -> None:
    sealer = Sealer("")
    assert not sealer.enabled
    assert sealer.seal(_server()) == _server()
    assert sealer.open(_server()) == _server()
    assert sealer.is_current(_server())
    with_key = Sealer(new_key())
    assert with_key.open(_server()) == _server(), "plain values stored before sealing was on still work"
    assert not with_key.is_current(_server()), "and `config apply` seals them"
