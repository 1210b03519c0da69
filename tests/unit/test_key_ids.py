"""One key-id rule: a key written in the config file (as itself, through an environment variable, or
as its sha256), one the admin API makes, and the bearer token ingress is sent all come to the same id,
the sha256 hex of the secret, computed by `libs.common.contracts.keys.key_id` alone."""

import hashlib

import pytest

from libs.common.contracts.config import KeyConfig
from libs.common.contracts.keys import generate_key, key_id
from libs.common.contracts.messages import Caller, KeyRecord
from libs.common.settings.config_file import key_hash
from services.ingress.auth.keys import KeyDirectory

pytestmark = pytest.mark.unit

SECRET = "bk_one_rule_for_every_key_id_000"


def test_the_id_is_the_sha256_hex_of_the_secret() -> None:
    assert key_id(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()
    assert key_id(SECRET) != key_id(SECRET + "x")


def test_every_way_to_write_a_key_in_the_file_gives_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONE_RULE_KEY", SECRET)
    written = [
        KeyConfig(name="inline", key=SECRET),
        KeyConfig(name="env", key_env="ONE_RULE_KEY"),
        KeyConfig(name="hashed", key_sha256=key_id(SECRET)),
    ]
    assert {key_hash(key) for key in written} == {key_id(SECRET)}


def test_ingress_finds_a_generated_key_by_that_id() -> None:
    secret = generate_key()
    keys = KeyDirectory()
    keys.put(key_id(secret), KeyRecord(id=key_id(secret), name="made").model_dump_json().encode())
    caller = keys.authenticate(f"Bearer {secret}")
    assert isinstance(caller, Caller) and caller.key_id == key_id(secret) and caller.key_name == "made"
    assert keys.authenticate(f"Bearer {SECRET}").error == "invalid_key"  # type: ignore[union-attr]


def test_the_caller_carries_its_key_records_owners_and_content_choice() -> None:
    secret = generate_key()
    keys = KeyDirectory()
    record = KeyRecord(id=key_id(secret), name="ci", user_id="u", team_id="t", customer_id="c", content_logging=False)
    keys.put(key_id(secret), record.model_dump_json().encode())
    caller = keys.authenticate(f"Bearer {secret}")
    assert isinstance(caller, Caller)
    assert (caller.user_id, caller.team_id, caller.customer_id, caller.content_logging) == ("u", "t", "c", False)


def _directory(secret: str, **record: object) -> KeyDirectory:
    keys = KeyDirectory()
    keys.put(key_id(secret), KeyRecord(id=key_id(secret), name="agent", **record).model_dump_json().encode())  # type: ignore[arg-type]
    return keys


@pytest.mark.parametrize("mode", ["code_mode", "discovery"])
def test_the_keys_with_a_mode_on_are_known_as_their_records_change(mode: str) -> None:
    """A request of a key outside `with_modes` that switches no mode by header skips both modes: the
    set follows each key's record, on, off, on again and deleted."""
    secret = generate_key()
    keys = _directory(secret)
    assert keys.with_modes == set()
    for on in (True, False, True):
        record = KeyRecord(id=key_id(secret), name="agent", **{mode: on})  # type: ignore[arg-type]
        keys.put(key_id(secret), record.model_dump_json().encode())
        assert keys.with_modes == ({key_id(secret)} if on else set())
    keys.delete(key_id(secret))
    assert keys.with_modes == set()
