"""Policy's reusable decisions: what a grant's MAC binds (`signing.WorkSigner.grant_mac`), and
when ingress keeps and uses one (`services.ingress.sending.grant_cache.GrantCache`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts import subjects
from libs.common.contracts.messages import Caller, Grant, ToolCall, UpstreamRequest
from services.executor.admission import FORGED, Admission, Admitted, Stale
from services.ingress.sending import grant_cache
from services.ingress.sending.grant_cache import GrantCache
from tests.support.grants import CALL, LATER, SIGNER, changed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "other",
    [
        changed(caller=Caller(key_id="k2", key_name="ci")),
        changed(caller=Caller(key_id="k1", key_name="ci", user_id="mallory")),  # whose upstream credentials
        changed(caller=Caller(key_id="k1", key_name="ci", team_id="t")),
        changed(caller=Caller(key_id="k1", key_name="ci", content_logging=False)),
        changed(server="notes"),
        changed(tool="add", name="echo__add"),
        changed(include_servers=["echo"]),
        changed(include_tools=["echo"]),
    ],
)
def test_a_grant_is_genuine_for_its_own_request_alone(other: ToolCall) -> None:
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, CALL, LATER, None)
    grant = Grant(expires=LATER, mac=mac)
    assert SIGNER.genuine(subjects.EXEC_CALL, CALL, grant)
    assert not SIGNER.genuine(subjects.EXEC_CALL, other, grant)


def test_a_grant_mac_stays_byte_for_byte_what_policy_signs() -> None:
    """A known answer: grants outlive a rollout (policy and executors of two versions verify each
    other's), so how a decision is encoded, every caller field in order, must not drift."""
    caller = Caller(key_id="k1", key_name="ci", user_id="u", team_id="t", customer_id="c", content_logging=False)
    call = changed(caller=caller, include_tools=["echo"])
    assert call.decision()[0] == tuple(caller.model_dump().values())
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, call, 1764093737.5, 0.01, {subjects.KV_SERVERS: 4})
    assert mac == "c53a68186312ffd06e6678ae205b882235130a73d33fdfc3c0b2b6b07c2ab140"


def test_the_kind_the_expiry_the_price_and_the_key_are_bound_too() -> None:
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, CALL, LATER, 0.01)
    assert SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, price=0.01, mac=mac))
    assert not SIGNER.genuine(subjects.EXEC_REQUEST, CALL, Grant(expires=LATER, price=0.01, mac=mac))
    assert not SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER + 1, price=0.01, mac=mac))
    assert not SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, price=0.0, mac=mac))
    assert not SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, price=None, mac=mac))
    assert not WorkSigner("another-key").genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, price=0.01, mac=mac))
    assert not SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, price=0.01))  # no MAC at all
    # the revisions it was decided at: an ingress cannot pass an old decision off as a recent one
    decided = {subjects.KV_SERVERS: 4}
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, CALL, LATER, None, decided)
    assert SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, revisions=decided, mac=mac))
    later = {subjects.KV_SERVERS: 5}
    assert not SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, revisions=later, mac=mac))


def test_a_prompt_request_and_a_tool_of_the_same_name_never_share_a_grant() -> None:
    prompt = UpstreamRequest(
        caller=CALL.caller, server="echo", target="prompt:echo", method="prompts/get", params={}, timeout=5
    )
    mac = SIGNER.grant_mac(subjects.EXEC_REQUEST, prompt, LATER, None)
    assert SIGNER.genuine(subjects.EXEC_REQUEST, prompt, Grant(expires=LATER, mac=mac))
    assert not SIGNER.genuine(subjects.EXEC_CALL, changed(tool="prompt:echo"), Grant(expires=LATER, mac=mac))


def test_without_a_key_nothing_is_signed_or_checked() -> None:
    open_bus = WorkSigner("")
    assert open_bus.grant_mac(subjects.EXEC_CALL, CALL, LATER, None) == ""
    assert open_bus.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER))


@dataclass
class Watch:
    """A KV watch's position, as ingress's keys and policy watches report it."""

    bucket: str
    revision: int


def _cache(keys: int = 7, policy: int = 3) -> tuple[GrantCache, list[Watch]]:
    watches = [Watch(subjects.KV_KEYS, keys), Watch(subjects.KV_POLICY, policy)]
    cache = GrantCache(max_entries=3)
    cache.inputs = watches
    return cache, watches


def _header(expires: float | None = None, price: float | None = None, keys: int = 7, policy: int = 3) -> str:
    revisions = {subjects.KV_KEYS: keys, subjects.KV_POLICY: policy, subjects.KV_SERVERS: 1}
    expires = time.time() + 60 if expires is None else expires  # not at import: a suite runs for minutes
    return Grant(expires=expires, price=price, revisions=revisions, mac="m").model_dump_json()


def test_a_grant_is_kept_and_sent_with_its_price() -> None:
    cache, _ = _cache()
    header = _header(price=0.25)
    cache.keep(subjects.EXEC_CALL, CALL, header, cache.seen())
    held = cache.find(subjects.EXEC_CALL, CALL)
    assert held is not None and held.grant.price == 0.25
    assert held.headers == {subjects.GRANT: header, subjects.CHARGED_USD: "0.25"}
    assert cache.find(subjects.EXEC_REQUEST, CALL) is None  # another kind of request
    assert cache.find(subjects.EXEC_CALL, changed(include_tools=["echo"])) is None  # another narrowing
    assert cache.find(subjects.EXEC_CALL, changed(caller=Caller(key_id="k1", key_name="ci", user_id="u"))) is None


def test_a_grant_decided_before_a_change_ingress_had_seen_is_not_kept() -> None:
    cache, _ = _cache(keys=8)
    cache.keep(subjects.EXEC_CALL, CALL, _header(keys=7), cache.seen())  # policy had not applied keys rev 8
    assert cache.find(subjects.EXEC_CALL, CALL) is None and len(cache) == 0


def test_no_watches_no_grants() -> None:
    cache = GrantCache()
    cache.keep(subjects.EXEC_CALL, CALL, _header(), cache.seen())
    assert len(cache) == 0


@pytest.mark.parametrize("bucket", [0, 1])
def test_any_change_ingress_sees_drops_the_grants(bucket: int) -> None:
    cache, watches = _cache()
    cache.keep(subjects.EXEC_CALL, CALL, _header(), cache.seen())
    watches[bucket].revision += 1
    assert cache.find(subjects.EXEC_CALL, CALL) is None
    watches[bucket].revision -= 1  # gone for good, not hidden
    assert cache.find(subjects.EXEC_CALL, CALL) is None


def test_a_grant_close_to_its_expiry_is_no_longer_sent() -> None:
    cache, _ = _cache()
    cache.keep(subjects.EXEC_CALL, CALL, _header(expires=time.time() + grant_cache._MARGIN / 2), cache.seen())
    assert cache.find(subjects.EXEC_CALL, CALL) is None


def test_a_malformed_grant_is_ignored_and_the_oldest_goes_first() -> None:
    cache, _ = _cache()
    cache.keep(subjects.EXEC_CALL, CALL, "{not json", cache.seen())
    cache.keep(subjects.EXEC_CALL, CALL, '{"expires": 1, "extra": 2}', cache.seen())
    assert len(cache) == 0
    calls = [changed(tool=f"t{i}", name=f"echo__t{i}") for i in range(4)]
    for call in calls:
        cache.keep(subjects.EXEC_CALL, call, _header(), cache.seen())
    assert len(cache) == 3
    assert cache.find(subjects.EXEC_CALL, calls[0]) is None
    assert all(cache.find(subjects.EXEC_CALL, call) is not None for call in calls[1:])


def test_an_executor_remembers_a_verified_grant_for_its_own_request_alone() -> None:
    admission = Admission(SIGNER)
    expires = time.time() + 60
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, CALL, expires, None)
    header = {subjects.GRANT: Grant(expires=expires, mac=mac).model_dump_json()}
    data = CALL.model_dump_json().encode()
    for _ in range(2):  # verified, then remembered
        admitted = admission.admit(subjects.EXEC_CALL, "inbox", header, data, time.time())
        assert isinstance(admitted, Admitted) and admitted.request is not None and admitted.request.id == CALL.id
    for other in (
        changed(tool="add", name="echo__add"),
        changed(caller=Caller(key_id="k1", key_name="ci", user_id="u")),
    ):
        assert (
            admission.admit(subjects.EXEC_CALL, "inbox", header, other.model_dump_json().encode(), time.time())
            == FORGED
        )
    assert admission.admit(subjects.EXEC_REQUEST, "inbox", header, data, time.time()) == FORGED
    assert admission.admit(subjects.EXEC_CALL, "inbox", header, data, expires + 1) == Stale(CALL.id)
    forged = {subjects.GRANT: Grant(expires=expires, mac="0" * 64).model_dump_json()}
    assert admission.admit(subjects.EXEC_CALL, "inbox", forged, data, time.time()) == FORGED
    assert admission.admit(subjects.EXEC_CALL, "inbox", {subjects.GRANT: "{"}, data, time.time()) == FORGED
    assert admission.admit(subjects.EXEC_CALL, "inbox", header, b"{", time.time()) == FORGED


def test_an_executor_holds_a_grant_decided_before_a_servers_change_it_has_applied_stale() -> None:
    """A tool's price or rate limit lives in the servers' configuration, which ingress does not watch."""
    applied = [4]
    admission = Admission(SIGNER, lambda: applied[0])
    expires = time.time() + 60
    decided = {subjects.KV_KEYS: 9, subjects.KV_SERVERS: 4}
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, CALL, expires, None, decided)
    header = {subjects.GRANT: Grant(expires=expires, revisions=decided, mac=mac).model_dump_json()}
    data = CALL.model_dump_json().encode()
    assert isinstance(admission.admit(subjects.EXEC_CALL, "inbox", header, data, time.time()), Admitted)
    applied[0] = 3  # an executor behind policy: policy's decision is the newer one
    assert isinstance(admission.admit(subjects.EXEC_CALL, "inbox", header, data, time.time()), Admitted)
    applied[0] = 5
    assert admission.admit(subjects.EXEC_CALL, "inbox", header, data, time.time()) == Stale(CALL.id)


def test_work_policy_signed_is_admitted_unparsed_and_anything_else_unanswered() -> None:
    data = CALL.model_dump_json().encode()
    signed = SIGNER.headers(subjects.EXEC_CALL, "inbox", data)
    assert Admission(SIGNER).admit(subjects.EXEC_CALL, "inbox", signed, data, time.time()) == Admitted(None)
    assert Admission(SIGNER).admit(subjects.EXEC_CALL, "elsewhere", signed, data, time.time()) != Admitted(None)


@pytest.mark.parametrize(
    "head",
    [
        CALL,
        changed(caller=Caller(key_id="k1", key_name="ci", user_id="u", team_id="t", customer_id="c")),
        changed(include_servers=["echo", "notes"], include_tools=[]),
        UpstreamRequest(
            caller=Caller(key_id="k1", key_name="ci"), server="echo", method="prompts/get", target="prompt:p", timeout=5
        ),
    ],
)
def test_ingress_keys_a_grant_by_exactly_what_the_decision_depends_on(head: ToolCall | UpstreamRequest) -> None:
    assert grant_cache._key(subjects.EXEC_CALL, head) == (subjects.EXEC_CALL, *head.decision())
