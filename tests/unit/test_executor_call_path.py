"""The executor's call path (`services.executor.call_path`) one step at a time: each step run alone
on a real `Call`, over a real (unstarted) `Upstream` where it needs one; and the runner's own
duties: the order of the steps, retries, and an agent's cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, CallOutcome, GatewayError, ServerCatalog, ToolCall, UpstreamRequest
from libs.common.settings import DenyList
from services.executor.call_path import Call, RunningCalls, Step, call_path
from services.executor.call_path.ahead import Admit, Budget, FetchArguments, FindServer, InterceptBefore
from services.executor.call_path.attempt import CheckArguments, Retry, Subscriptions
from services.executor.call_path.behind import InterceptAfter, KeepSubscriptions, ShapeAnswer
from services.executor.interceptors import DenyListInterceptor, InterceptorChain
from services.executor.resilience import RetryPlan
from services.executor.tools import ToolSet
from services.executor.upstream import State, Upstream
from services.executor.upstreams.interface import UpstreamSettings
from tests.support.polling import poll_until

pytestmark = pytest.mark.unit

CALLER = Caller(key_id="k1", key_name="ci")
ADD = {
    "name": "add",
    "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    "annotations": {"readOnlyHint": True},
}


def tool_call(arguments: dict[str, Any], tool: str = "add", server: str = "srv", **extra: Any) -> ToolCall:
    return ToolCall(
        caller=CALLER, server=server, tool=tool, name=f"{server}__{tool}", arguments=arguments, timeout=5, **extra
    )


def subscribe(subscriber: str, method: str = "resources/subscribe") -> UpstreamRequest:
    return UpstreamRequest(
        caller=CALLER,
        server="srv",
        method=method,
        params={"uri": "x://a"},
        target="resource:x://a",
        subscriber=subscriber,
        timeout=5,
    )


async def _no_catalog(_upstream: Upstream, _catalog: ServerCatalog) -> bool:
    return False


def upstream(config: ServerConfig | None = None, settings: UpstreamSettings | None = None) -> Upstream:
    """A real `Upstream`, never started: its listing is set by hand, as its session task would."""
    given = settings or UpstreamSettings()
    server = Upstream("srv", config or ServerConfig(command="srv"), given, publish=_no_catalog)
    server.tools = ToolSet([ADD], server.policy)
    return server


async def step(one: Step, call: Call) -> None:
    """Run `one` step alone on `call`, as the runner does (a step that decided at once returns None)."""
    if (waiting := one(call)) is not None:
        await waiting


def at(request: ToolCall | UpstreamRequest, server: Upstream) -> Call:
    call = Call(request)
    call.upstream = server
    return call


def unavailable(request_id: str) -> CallOutcome:
    error = GatewayError(kind=ErrorKind.UPSTREAM_UNAVAILABLE, message="connection refused")
    return CallOutcome(id=request_id, error=error, decided_by="executor", execution="may_have_run")


async def test_admit_refuses_a_call_its_requester_gave_up_on_and_registers_a_live_one() -> None:
    running = RunningCalls()
    late = Call(tool_call({"a": 1}, deadline=time.time() - 1))
    await step(Admit(running), late)
    assert late.outcome is not None and late.outcome.error is not None
    assert late.outcome.error.kind is ErrorKind.GATEWAY_TIMEOUT and len(running) == 0
    live = Call(tool_call({"a": 1}))
    await step(Admit(running), live)
    assert live.outcome is None and live.task is asyncio.current_task() and len(running) == 1


async def test_fetch_arguments_without_an_object_store_refuses_naming_why() -> None:
    call = Call(tool_call({}, arguments_blob="blob-1"))
    await step(FetchArguments(None, 1024), call)
    assert call.outcome is not None and call.outcome.error is not None
    assert call.outcome.error.kind is ErrorKind.GATEWAY_UNAVAILABLE
    assert "could not be fetched" in call.outcome.error.message and call.outcome.execution == "not_run"


async def test_find_server_names_the_server_it_does_not_run() -> None:
    call = Call(tool_call({"a": 1}, server="gone"))
    await step(FindServer({"srv": upstream()}), call)
    assert call.outcome is not None and call.outcome.error is not None
    assert call.outcome.error.kind is ErrorKind.UNKNOWN_TOOL and "'gone'" in call.outcome.error.message


async def test_intercept_before_refuses_and_shape_answer_carries_the_decision() -> None:
    chain = InterceptorChain([DenyListInterceptor(DenyList(tools=["srv/add"]))])
    call = at(tool_call({"a": 1}), upstream())
    await step(InterceptBefore(chain), call)
    assert call.outcome is not None and call.outcome.error is not None and not call.cleared
    await step(InterceptAfter(chain), call)  # not its business: the request never reached the upstream
    await step(ShapeAnswer(), call)
    assert [(d.action, d.where) for d in call.outcome.interceptions] == [("block", "arguments")]


async def test_budget_refuses_a_tool_the_configuration_hides_and_plans_retries_for_a_safe_one() -> None:
    hidden = at(tool_call({"a": 1}), upstream(ServerConfig(command="srv", tools=["other"])))
    await step(Budget(), hidden)
    assert hidden.outcome is not None and hidden.outcome.error is not None
    assert hidden.outcome.error.kind is ErrorKind.UNKNOWN_TOOL
    safe = at(tool_call({"a": 1}), upstream())
    await step(Budget(), safe)
    assert safe.outcome is None and safe.retries == 2 and safe.retry is None, "a plan is made at a first retry"
    assert safe.active is not None and 0 < safe.budget <= 5
    assert safe.upstream.agents.in_flight == 1, "the server's requests during the call reach its agent"
    safe.leave()
    assert safe.upstream.agents.in_flight == 0


async def test_check_arguments_refuses_what_the_listed_schema_does_not_accept() -> None:
    server = upstream()
    wrong = at(tool_call({"a": "one"}), server)
    await step(CheckArguments(), wrong)
    assert wrong.outcome is not None and wrong.outcome.error is not None
    assert wrong.outcome.error.kind is ErrorKind.INVALID_ARGUMENTS
    unknown = at(tool_call({}, tool="sub"), server)
    await step(CheckArguments(), unknown)
    assert unknown.outcome is not None and unknown.outcome.error is not None
    assert unknown.outcome.error.kind is ErrorKind.UNKNOWN_TOOL
    right = at(tool_call({"a": 1}), server)
    await step(CheckArguments(), right)
    assert right.outcome is None


async def test_a_refusal_of_arguments_quotes_them_to_the_agent_only_when_the_setting_says_so() -> None:
    secret = "sk-live-4f9a8b7c6d5e4f3a2b1c"
    plain = at(tool_call({"a": secret}), upstream())
    await step(CheckArguments(), plain)
    assert plain.outcome is not None and plain.outcome.error is not None
    error = plain.outcome.error
    assert (error.message, error.logged) == ('arguments.a: must be of type "integer"', None)
    quoting = at(tool_call({"a": secret}), upstream(settings=UpstreamSettings(validation_values=True)))
    await step(CheckArguments(), quoting)
    assert quoting.outcome is not None and quoting.outcome.error is not None
    error = quoting.outcome.error
    assert error.message == f'arguments.a: "{secret}" is not of type "integer"'
    assert error.logged == 'arguments.a: must be of type "integer"'  # what the audit row's error column gets


async def test_retry_goes_round_again_only_for_a_lost_connection_within_its_plan() -> None:
    call = at(tool_call({"a": 1}), upstream())
    call.retry = RetryPlan(1, deadline=100.0, clock=lambda: 0.0, initial=0.001)
    call.outcome = unavailable(call.request.id)
    await step(Retry(), call)
    assert call.outcome is None, "cleared: one more try"
    call.outcome = unavailable(call.request.id)
    await step(Retry(), call)
    assert call.outcome is not None, "the plan's one retry is spent"


async def test_subscriptions_ask_the_upstream_for_the_first_follower_only() -> None:
    server = upstream()
    first = at(subscribe("s1"), server)
    await step(Subscriptions(), first)
    assert first.outcome is None, "on to the upstream"
    second = at(subscribe("s2"), server)
    await step(Subscriptions(), second)
    assert second.outcome is not None and second.outcome.result == {}, "answered here"
    first.outcome = unavailable(first.request.id)  # the upstream refused the first
    await step(KeepSubscriptions(), first)
    assert server.subscriptions == {"x://a": {"s2"}}


async def test_an_unknown_server_goes_through_the_whole_path_to_one_refusal() -> None:
    path = call_path({})
    outcome = await path.run(Call(tool_call({"a": 1})))
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UNKNOWN_TOOL
    assert len(path.running) == 0, "a call that left the path is not cancellable any more"
    names = [type(step).__name__ for step in path.steps]
    assert names == [
        "Admit",
        "FetchArguments",
        "FindServer",
        "InterceptBefore",
        "OwnSession",
        "Budget",
        "Settle",
        "CheckArguments",
        "Subscriptions",
        "AskBreaker",
        "Send",
        "Retry",
        "LeaveSession",
        "KeepSubscriptions",
        "SignInLink",
        "InterceptAfter",
        "GatewayUris",
        "ShapeAnswer",
    ]


async def test_an_agent_cancelling_a_call_waiting_for_its_server_gets_a_cancelled_answer() -> None:
    server = upstream()  # never started: it stays "connecting", so the call waits in `Settle`
    path = call_path({"srv": server})
    request = tool_call({"a": 1})
    running = asyncio.create_task(path.run(Call(request)))
    await poll_until(lambda: len(path.running) == 1, "the call to be admitted")
    assert path.running.cancel(request.id)
    outcome = await running
    assert outcome.error is not None and outcome.error.kind is ErrorKind.CANCELLED
    assert outcome.execution == "may_have_run" and len(path.running) == 0


async def test_each_method_meets_only_the_steps_that_act_on_it() -> None:
    server = upstream()
    path = call_path({"srv": server})
    names = {method: [type(s).__name__ for part in path.route(method) for s in part] for method in ("tools/call",)}
    assert "Subscriptions" not in names["tools/call"] and "KeepSubscriptions" not in names["tools/call"]
    assert "GatewayUris" not in [type(s).__name__ for part in path.route("prompts/get") for s in part]
    server.state = State.READY  # as its session task would set it: no wait in `Settle`
    server.subscriptions["x://a"] = {"s0"}  # already followed: the subscription is bookkeeping here
    outcome = await path.run(Call(subscribe("s1")))
    assert outcome.error is None and outcome.result == {}, "answered by Subscriptions, never the upstream"
    assert server.subscriptions == {"x://a": {"s0", "s1"}}
