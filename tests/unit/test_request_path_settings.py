"""Failure detection on the request path: its settings come from BASTION_* like every other, and
a replica's liveness subject is one subject token whatever its instance name."""

from __future__ import annotations

import time

import pytest
from nats.aio.msg import Msg

from libs.common.bus.acknowledger import Acknowledger, too_late
from libs.common.contracts import subjects
from libs.common.settings import ExecutorSettings, IngressSettings, PolicySettings, RequestPathSettings

pytestmark = pytest.mark.unit


def _detection(settings: RequestPathSettings) -> tuple[float, float, float, float, int]:
    """The failure detection settings: ack_after, ack_grace, probe_every, probe_timeout, probe_misses."""
    return settings.ack_after, settings.ack_grace, settings.probe_every, settings.probe_timeout, settings.probe_misses


def test_read_from_the_environment(monkeypatch):
    for name, value in {
        "ACK_AFTER": "0.5",
        "ACK_GRACE": "7",
        "PROBE_EVERY": "2",
        "PROBE_TIMEOUT": "0.5",
        "PROBE_MISSES": "4",
    }.items():
        monkeypatch.setenv(f"BASTION_{name}", value)
    for settings in (IngressSettings(), PolicySettings(), ExecutorSettings()):
        assert _detection(settings) == (0.5, 7.0, 2.0, 0.5, 4)


def test_defaults():
    assert _detection(RequestPathSettings()) == (0.25, 5.0, 1.0, 1.0, 3)


def test_ack_grace_must_exceed_ack_after():
    with pytest.raises(ValueError, match="ack_grace must exceed ack_after"):
        RequestPathSettings(ack_after=2.0, ack_grace=1.0)


@pytest.mark.parametrize("instance", ["gw-1", "host.example.com-42", "a b*>c"])
def test_liveness_subjects_are_one_token_per_instance(instance):
    for subject, prefix in (
        (subjects.policy_alive_subject(instance), subjects.POLICY_ALIVE),
        (subjects.executor_alive_subject(instance), subjects.EXEC_ALIVE),
    ):
        token = subject.removeprefix(prefix + ".")
        assert subject.startswith(prefix + ".") and token
        assert not set(token) & {".", " ", "*", ">"}
    assert subjects.policy_alive_subject("a.b") != subjects.policy_alive_subject("a.c")


def test_ack_grace_must_exceed_ack_margin():
    with pytest.raises(ValueError, match="ack_grace must exceed ack_margin"):
        RequestPathSettings(ack_after=0.1, ack_grace=1.0, ack_margin=1.0)


def _request(accept_by: float | None) -> Msg:
    headers = {subjects.WANT_ACK: "1"} | ({subjects.ACCEPT_BY: f"{accept_by:.6f}"} if accept_by is not None else {})
    return Msg(_client=None, subject=subjects.POLICY_CALL, reply="_INBOX.x.1", data=b"{}", headers=headers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds_left", "admitted"),
    [(None, True), (4.0, True), (0.6, True), (0.4, False), (-3.0, False)],
)
def test_a_request_is_run_only_while_its_requester_still_waits_for_the_acknowledgement(seconds_left, admitted):
    """Margin 0.5 s: a request its requester gives up on within half a second (or already has) is
    answered unrun; one without the header (an older requester) is always taken."""
    acks = Acknowledger(None, subjects.POLICY_HOLDERS, instance="p", after=0.25, margin=0.5)  # type: ignore[arg-type]
    accept_by = None if seconds_left is None else time.time() + seconds_left
    assert acks.admit(_request(accept_by)) is admitted


def test_a_services_acknowledger_takes_its_margin_from_the_settings(monkeypatch):
    """`Acknowledger.of`: BASTION_ACK_MARGIN=2 refuses a request whose requester gives up within 2 s."""
    monkeypatch.setenv("BASTION_ACK_MARGIN", "2")
    acks = Acknowledger.of(None, subjects.POLICY_HOLDERS, "p", PolicySettings())  # type: ignore[arg-type]
    assert not acks.admit(_request(time.time() + 1.0))
    assert acks.admit(_request(time.time() + 4.0))


def test_a_request_answered_unrun_says_so():
    outcome = too_late("call-1", "executor")
    assert outcome.execution == "not_run" and outcome.decided_by == "executor"
    assert outcome.error is not None and outcome.error.kind == "gateway_timeout"
    assert "did not run" in outcome.error.message
