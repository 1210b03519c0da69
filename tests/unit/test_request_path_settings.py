"""Failure detection on the request path: its settings come from BASTION_* like every other, and
a replica's liveness subject is one subject token whatever its instance name."""

from __future__ import annotations

import pytest

from bastion_common import subjects
from bastion_common.settings import ExecutorSettings, IngressSettings, PolicySettings, RequestPathSettings

pytestmark = pytest.mark.unit


def test_read_from_the_environment(monkeypatch):
    for name, value in {"ACK_AFTER": "0.5", "ACK_GRACE": "7", "PROBE_EVERY": "2", "PROBE_TIMEOUT": "0.5",
                        "PROBE_MISSES": "4"}.items():
        monkeypatch.setenv(f"BASTION_{name}", value)
    for settings in (IngressSettings(), PolicySettings(), ExecutorSettings()):
        assert (settings.ack_after, settings.ack_grace, settings.probe_every, settings.probe_timeout,
                settings.probe_misses) == (0.5, 7.0, 2.0, 0.5, 4)


def test_defaults():
    settings = RequestPathSettings()
    assert (settings.ack_after, settings.ack_grace, settings.probe_every, settings.probe_timeout,
            settings.probe_misses) == (0.25, 5.0, 1.0, 1.0, 3)


def test_ack_grace_must_exceed_ack_after():
    with pytest.raises(ValueError, match="ack_grace must exceed ack_after"):
        RequestPathSettings(ack_after=2.0, ack_grace=1.0)


@pytest.mark.parametrize("instance", ["gw-1", "host.example.com-42", "a b*>c"])
def test_liveness_subjects_are_one_token_per_instance(instance):
    for subject, prefix in ((subjects.policy_alive_subject(instance), subjects.POLICY_ALIVE),
                            (subjects.executor_alive_subject(instance), subjects.EXEC_ALIVE)):
        token = subject.removeprefix(prefix + ".")
        assert subject.startswith(prefix + ".") and token
        assert not set(token) & {".", " ", "*", ">"}
    assert subjects.policy_alive_subject("a.b") != subjects.policy_alive_subject("a.c")
