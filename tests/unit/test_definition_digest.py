"""The definition screen (credentials in definitions) and pinning name a definition version by one digest.

The screen's verdict for a version is found under the digest its pin record names, and a changed
definition changes both. The definitions carry values two JSON encoders write differently (a float
with no fraction, a non-ASCII character, keys that sort differently by code point and by UTF-16), so
a screen keyed by a digest of its own would not find the pinned version.
"""

from __future__ import annotations

import copy
import hashlib
import math

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.pins import canonical_json, definition_sha256
from libs.common.settings import ExecutorSettings
from services.executor.interceptors import DefinitionSecretsInterceptor, InterceptedListing, configured
from services.executor.pinning import decide

pytestmark = pytest.mark.unit

KEY_PAIR = "AKIA" + "W7XQ2ZKD5MNV3RTB" + " r9Kd2Lx7Qp4Vz8Mn3Bw6Ht1Jy5Gc0Fs/Ea+Ub8Ni"
_SCHEMA = {"type": "object", "properties": {"limit": {"type": "number", "default": 10.0, "\U0001f600": 1, "\uff61": 2}}}


def _tool(name: str, description: str) -> dict:
    return {"name": name, "description": f"Café lookup. {description}", "inputSchema": _SCHEMA}


def _screen() -> DefinitionSecretsInterceptor:
    screen = configured(ExecutorSettings())[0]
    assert isinstance(screen, DefinitionSecretsInterceptor)
    return screen


async def _pinned(screen: DefinitionSecretsInterceptor, definitions: list[dict]) -> dict[str, str | None]:
    """Each tool's pin digest, `definitions` listed through the screen, then pinning (as the executor's chain)."""
    listing = InterceptedListing("srv", ServerConfig(command="srv"), [dict(d) for d in definitions], [], [], [])
    await screen.at_listing(listing)
    outcome = decide("srv", "tofu", None, [], {"tool": listing.tools}, 1.0, listing.credentials)
    return {d.name: d.sha256 for d in outcome.decisions}


async def test_the_screens_verdict_is_found_under_the_pinned_digest() -> None:
    screen = _screen()
    pinned = await _pinned(screen, [_tool("clean", "Finds."), _tool("leaky", KEY_PAIR)])
    carried = screen.screen.verdict(pinned["leaky"] or "")
    assert carried, "the credential the screen found is recorded under the pin's digest"
    assert any("aws_access_key_id" in where for where in carried.where)  # type: ignore[union-attr]
    assert screen.screen.verdict(pinned["clean"] or "") is False, "a clean version is known clean under its pin"


async def test_a_changed_definition_changes_both_digests() -> None:
    screen = _screen()
    (before,) = (await _pinned(screen, [_tool("t", "Finds.")])).values()
    (after,) = (await _pinned(screen, [_tool("t", f"Finds. {KEY_PAIR}")])).values()
    assert before and after and after != before
    assert screen.screen.verdict(before) is False
    assert screen.screen.verdict(after), "the changed version is scanned anew, under its own pin digest"
    assert screen.screen.scanned == 2


@pytest.mark.parametrize(
    "definition",
    [
        {"name": "t", "inputSchema": _SCHEMA},
        {"name": "t", "default": 1},  # the same number as 1.0: one pin
        {"name": "t", "default": 2**60},
        {"name": "t", "default": 2**70},  # past 64 bits: not remembered, computed
        {"name": "t", "description": "lone \ud800 surrogate"},
        {"name": "t", "description": "says :null in its text", "default": None},
    ],
)
def test_a_remembered_pin_is_the_canonical_digest(definition: dict) -> None:
    canonical = hashlib.sha256(canonical_json(definition)).hexdigest()
    assert definition_sha256(definition) == canonical
    assert definition_sha256(copy.deepcopy(definition)) == canonical, "asked again: the same pin"


def test_nan_and_null_keep_their_own_pins_whichever_was_seen_first() -> None:
    """orjson writes NaN and the infinities as `null`: a pin remembered by its bytes would mix them up."""
    null, nan, inf = ({"name": "t", "default": v} for v in (None, math.nan, math.inf))
    pins = [definition_sha256(d) for d in (null, nan, inf, null, nan, inf)]
    assert len(set(pins)) == 3
    assert pins[:3] == pins[3:]
    assert pins[1] == hashlib.sha256(canonical_json(nan)).hexdigest()
