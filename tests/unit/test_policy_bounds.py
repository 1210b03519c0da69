"""Policy's memory is bounded whatever senders put in a request: narrowing headers are capped
before they are compiled, and the caches keyed by them or by keys drop their least recently used
entries."""

import pytest

from libs.common.contracts.messages import Caller, GatewayError, KeyRecord
from services.policy import view as view_module
from services.policy.filters import MAX_PATTERN_CHARS, MAX_PATTERNS, narrowing, narrowing_problem
from services.policy.view import PolicyView

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("servers", "tools", "says"),
    [
        ([f"s{i}" for i in range(MAX_PATTERNS + 1)], None, f"X-Bastion-Include-Servers has {MAX_PATTERNS + 1} items"),
        (None, ["t" * (MAX_PATTERN_CHARS + 1)], "X-Bastion-Include-Tools has an item longer"),
    ],
)
def test_oversized_narrowing_is_refused_before_compiling(servers, tools, says):
    problem = narrowing_problem(servers, tools)
    assert problem is not None and says in problem


def test_narrowing_within_the_bounds_passes():
    assert narrowing_problem(None, None) is None
    assert narrowing_problem([f"s{i}" for i in range(MAX_PATTERNS)], ["x" * MAX_PATTERN_CHARS]) is None


def test_the_compiled_narrowing_cache_keeps_a_bounded_number_of_combinations():
    narrowing.cache_clear()
    maxsize = narrowing.cache_info().maxsize
    for i in range(maxsize + 100):
        narrowing((f"server-{i}",), None)
    assert narrowing.cache_info().currsize == maxsize
    assert narrowing(("server-0",), None).allows("server-0", "t")  # evicted, compiled again, still right


def test_compiled_keys_are_bounded_and_least_recently_used_go_first(monkeypatch):
    monkeypatch.setattr(view_module, "COMPILED_KEYS", 8)
    view = PolicyView()
    for i in range(20):
        view.put_key(f"k{i}", KeyRecord(id=f"k{i}", name=f"key-{i}", grants=["echo/*"]).model_dump_json().encode())
    for i in range(20):
        decision = view.authorize(Caller(key_id=f"k{i}", key_name=f"key-{i}"), "echo", "add", narrowing(None, None))
        assert not isinstance(decision, GatewayError)
    assert len(view._compiled) == 8
    assert set(view._compiled) == {f"k{i}" for i in range(12, 20)}
