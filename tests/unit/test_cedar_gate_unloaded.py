"""Policy's Cedar gate fails closed when the active version's record goes away or comes back broken.

The KV feed is the gate's own (`put_policy`, `delete_policy`); the end-to-end refusals, audit rows
and readiness are in `tests/integration/test_policy_unavailable.py`."""

from __future__ import annotations

import pytest

from libs.common.cedar.cedar_policies import ACTIVE_KEY, ActivePolicies, PolicyVersion, version_key
from libs.common.contracts.errors import ErrorKind
from services.policy.cedar_gate import Gate, Refuse

pytestmark = pytest.mark.unit

TEXT = '@id("no-deletes")\nforbid (principal, action, resource == Tool::"echo/delete");\n'


def _version(number: int, text: str = TEXT) -> bytes:
    return PolicyVersion(version=number, text=text).model_dump_json().encode()


def _refused(gate: Gate) -> Refuse:
    result = gate.check(None, "echo", "echo", b"{}")  # type: ignore[arg-type]  # refused before the key is read
    assert isinstance(result, Refuse), result
    assert result.error.kind is ErrorKind.POLICY_UNAVAILABLE
    return result


def test_deleting_the_active_versions_record_refuses_until_it_is_back() -> None:
    gate = Gate()
    gate.put_policy(version_key(3), _version(3))
    gate.put_policy(ACTIVE_KEY, ActivePolicies(version=3).model_dump_json().encode())
    assert gate.unavailable is None and gate.cedar.version == 3
    gate.delete_policy(version_key(3))
    assert "policy version 3 is active but not stored" in _refused(gate).error.message
    gate.put_policy(version_key(3), _version(3))
    assert gate.unavailable is None and gate.cedar.version == 3


def test_a_broken_text_is_not_replaced_by_the_version_loaded_before() -> None:
    """The text that applied before is not what the operator made active: deciding by it would be a guess."""
    gate = Gate()
    gate.put_policy(version_key(1), _version(1))
    gate.put_policy(version_key(2), _version(2, "forbid (principal, action, resource) when {"))
    gate.put_policy(ACTIVE_KEY, ActivePolicies(version=1).model_dump_json().encode())
    gate.put_policy(ACTIVE_KEY, ActivePolicies(version=2).model_dump_json().encode())
    assert "policy version 2 is active but does not compile" in _refused(gate).error.message
    assert not gate.cedar.active
    gate.put_policy(ACTIVE_KEY, ActivePolicies(version=0).model_dump_json().encode())
    assert gate.unavailable is None
    assert not isinstance(gate.check(None, "echo", "echo", b"{}"), Refuse)  # type: ignore[arg-type]
