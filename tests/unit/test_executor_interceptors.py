"""The interceptor chain (`services.executor.interceptors`) on its own: the order and the hooks each
interceptor is called at, refusals before and after the call, rewritten arguments, failing hooks
failing closed, and the deny list's three hooks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.contracts.messages import Caller, CallOutcome, ToolCall, UpstreamRequest
from libs.common.settings import DenyList, ExecutorSettings
from services.executor.interceptors import (
    DefinitionSecretsInterceptor,
    DenyListInterceptor,
    GuardrailsInterceptor,
    InterceptedCall,
    InterceptedListing,
    Interceptor,
    InterceptorChain,
    Refused,
    configured,
)
from services.executor.replies import refunded
from services.executor.upstreams.interface import Features, Listing
from tests.support.intercepted import through

pytestmark = pytest.mark.unit

CONFIG = ServerConfig(command="srv")
CALLER = Caller(key_id="k1", key_name="ci", user_id="ann", team_id="payments")


def tool_call(arguments: dict[str, Any], tool: str = "echo") -> ToolCall:
    return ToolCall(caller=CALLER, server="srv", tool=tool, name=f"srv__{tool}", arguments=arguments, timeout=5)


class Upstream:
    """What the chain wraps: the upstream call, counting what it was sent."""

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.result = result if result is not None else {"content": [{"type": "text", "text": "ok"}]}

    def execute(self, request: ToolCall | UpstreamRequest) -> Any:
        async def run() -> CallOutcome:
            self.sent.append(request.arguments if isinstance(request, ToolCall) else request.params)
            # as the executor's own calls build it (`upstreams.mcp.mcp_calls`): the upstream's dict itself
            return CallOutcome.model_construct(
                id=request.id, result=self.result, decided_by="executor", execution="ran"
            )

        return run


class Recorder(Interceptor):
    """Writes each hook it is given into `seen`, under its `label`: when it ran, and what it saw."""

    name: ClassVar[str] = "recorder"

    def __init__(self, seen: list[str], label: str) -> None:
        self.seen, self.label = seen, label

    async def start(self, nc: Any) -> None:
        self.seen.append(f"{self.label}:start")

    async def stop(self) -> None:
        self.seen.append(f"{self.label}:stop")

    async def before_call(self, call: InterceptedCall) -> None:
        self.seen.append(f"{self.label}:before:{call.method}:{call.name}:{call.caller.user_id}")

    async def after_result(self, call: InterceptedCall, result: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(f"{self.label}:after")
        return result


class ListingOnly(Interceptor):
    name: ClassVar[str] = "listing_only"

    async def at_listing(self, listing: InterceptedListing) -> None:
        listing.tools = [t for t in listing.tools if t["name"] != "secret"]
        listing.decide(self.name, "hide-secret", "hide", "tool 'secret'")


async def test_no_interceptor_on_calls_keeps_the_request_path_untouched() -> None:
    assert not InterceptorChain().on_calls
    chain = InterceptorChain([ListingOnly()])
    assert not chain.on_calls and chain.on_listings, "a listing-only interceptor costs calls nothing"
    bare = ExecutorSettings(pinning=False, guardrails={"defaults": False})
    assert configured(bare) == [], "nothing configured, nothing in the chain"
    names = [i.name for i in configured(ExecutorSettings())]
    assert names == ["definition_secrets", "pinning", "guardrails"], (
        "on by default: credentials in definitions found first (pinning quarantines them), then pins (they hash"
        " what the upstream sent)"
    )
    unpinned = configured(ExecutorSettings(pinning=False))
    assert [i.name for i in unpinned] == ["definition_secrets", "guardrails"]
    assert InterceptorChain(unpinned[:1]).on_calls, "unpinned, it refuses the calls of what it withheld"
    assert not InterceptorChain(configured(ExecutorSettings())[:1]).on_calls, "pinned, calls never see it"


async def test_hooks_run_in_order_once_each_and_see_the_caller() -> None:
    seen: list[str] = []
    chain = InterceptorChain([Recorder(seen, "a"), ListingOnly(), Recorder(seen, "b")])
    upstream = Upstream()
    request = tool_call({"text": "hi"})
    outcome = await through(chain, request, CONFIG, upstream.execute(request))
    assert outcome.error is None and outcome.result == upstream.result and outcome.interceptions == []
    assert seen == ["a:before:tools/call:echo:ann", "b:before:tools/call:echo:ann", "a:after", "b:after"]
    prompt = UpstreamRequest(
        caller=CALLER, server="srv", method="prompts/get", params={"name": "p"}, target="prompt:p", timeout=5
    )
    await through(chain, prompt, CONFIG, upstream.execute(prompt))
    assert seen[4] == "a:before:prompts/get:prompt:p:ann"


class ReadsOnly(Recorder):
    """A `Recorder` whose after hook reads only the results of resource reads."""

    after_result_methods: ClassVar[frozenset[str] | None] = frozenset({"resources/read"})


async def test_an_after_hook_naming_its_methods_runs_on_their_results_only() -> None:
    seen: list[str] = []
    chain = InterceptorChain([ReadsOnly(seen, "reads"), Recorder(seen, "all")])
    upstream = Upstream()
    for _ in range(2):  # the second time from what the chain learnt for the method
        request = tool_call({"text": "hi"})
        await through(chain, request, CONFIG, upstream.execute(request))
    assert [s for s in seen if s.endswith(":after")] == ["all:after", "all:after"]
    assert seen.count("reads:before:tools/call:echo:ann") == 2, "its before hook still sees every call"
    read = UpstreamRequest(
        caller=CALLER,
        server="srv",
        method="resources/read",
        params={"uri": "x://a"},
        target="resource:x://a",
        timeout=5,
    )
    await through(chain, read, CONFIG, upstream.execute(read))
    assert seen[-2:] == ["reads:after", "all:after"]


class Rewriter(Interceptor):
    name: ClassVar[str] = "rewriter"

    async def before_call(self, call: InterceptedCall) -> None:
        call.arguments = {**call.arguments, "added": True}
        call.decide(self.name, "add", "rewrite", "arguments")


async def test_rewritten_arguments_are_what_the_upstream_gets() -> None:
    upstream = Upstream()
    request = tool_call({"text": "hi"})
    outcome = await through(InterceptorChain([Rewriter()]), request, CONFIG, upstream.execute(request))
    assert upstream.sent == [{"text": "hi", "added": True}]
    assert [d.action for d in outcome.interceptions] == ["rewrite"]
    read = UpstreamRequest(
        caller=CALLER,
        server="srv",
        method="resources/read",
        params={"uri": "x://a", "_meta": {"progressToken": 1}},
        target="resource:x://a",
        timeout=5,
    )
    await through(InterceptorChain([Rewriter()]), read, CONFIG, upstream.execute(read))
    assert upstream.sent[-1] == {"uri": "x://a", "added": True, "_meta": {"progressToken": 1}}, "_meta kept"


class Gate(Interceptor):
    name: ClassVar[str] = "gate"

    def __init__(self, when: str) -> None:
        self.when = when

    async def before_call(self, call: InterceptedCall) -> None:
        call.decide(self.name, "looked", "log", "arguments")
        if self.when == "before":
            raise Refused("not this one", rule="no-echo", detail="echo")
        if self.when == "crash-before":
            raise RuntimeError("bug")

    async def after_result(self, call: InterceptedCall, result: dict[str, Any]) -> dict[str, Any]:
        if self.when == "after":
            raise Refused("not that answer", rule="no-answer")
        if self.when == "crash-after":
            raise RuntimeError("bug")
        return result


async def test_a_refusal_before_the_call_sends_nothing_and_is_refunded() -> None:
    upstream = Upstream()
    request = tool_call({"text": "hi"})
    outcome = await through(InterceptorChain([Gate("before"), Rewriter()]), request, CONFIG, upstream.execute(request))
    assert upstream.sent == []
    assert outcome.error is not None and outcome.error.kind is ErrorKind.FORBIDDEN
    assert outcome.error.message == "not this one" and outcome.execution == "not_run"
    assert [(d.interceptor, d.rule, d.action, d.where, d.detail) for d in outcome.interceptions] == [
        ("gate", "looked", "log", "arguments", None),
        ("gate", "no-echo", "block", "arguments", "echo"),
    ]
    assert refunded(outcome), "a call refused before it ran is not charged"


async def test_a_refusal_after_the_result_withholds_it_and_stays_charged() -> None:
    upstream = Upstream()
    request = tool_call({"text": "hi"})
    outcome = await through(InterceptorChain([Gate("after")]), request, CONFIG, upstream.execute(request))
    assert upstream.sent == [{"text": "hi"}]
    assert outcome.error is not None and outcome.error.kind is ErrorKind.FORBIDDEN
    assert outcome.result is None and outcome.execution == "ran"
    assert [d.action for d in outcome.interceptions] == ["log", "block"]
    assert not refunded(outcome), "the tool did run"


@pytest.mark.parametrize("when", ["crash-before", "crash-after"])
async def test_a_failing_hook_fails_closed(when: str, caplog: pytest.LogCaptureFixture) -> None:
    upstream = Upstream()
    request = tool_call({"text": "hi"})
    with caplog.at_level(logging.ERROR):
        outcome = await through(InterceptorChain([Gate(when)]), request, CONFIG, upstream.execute(request))
    assert outcome.error is not None and outcome.error.kind is ErrorKind.INTERNAL
    assert outcome.result is None and "gate check failed" in outcome.error.message
    assert len(upstream.sent) == (0 if when == "crash-before" else 1)
    assert "interceptor gate failed" in caplog.text


async def test_listing_hooks_filter_what_is_published_and_log_their_decisions(caplog: pytest.LogCaptureFixture) -> None:
    listing = Listing([{"name": "open"}, {"name": "secret"}], Features({"tools": {}}, [{"name": "p"}]))
    with caplog.at_level(logging.INFO):
        shown = await InterceptorChain([ListingOnly()]).at_listing("srv", CONFIG, listing)
    assert shown.tools == [{"name": "open"}] and shown.features.prompts == [{"name": "p"}]
    assert listing.tools == [{"name": "open"}, {"name": "secret"}], "the server's own listing is not changed"
    assert "server srv: listing_only hide (tool 'secret', rule hide-secret)" in caplog.text


# ---------------------------------------------------------------- the deny list

DENY = DenyList(tools=["srv/sleep", "*/prompt:repeat"], max_argument_bytes=64, terms=["Project Falcon", 'say "x"'])


async def test_the_deny_list_hides_and_refuses_listed_tools_and_prompts() -> None:
    deny = DenyListInterceptor(DENY)
    listing = Listing([{"name": "echo"}, {"name": "sleep"}], Features({}, [{"name": "repeat"}, {"name": "other"}]))
    shown = await InterceptorChain([deny]).at_listing("srv", CONFIG, listing)
    assert [t["name"] for t in shown.tools] == ["echo"]
    assert [p["name"] for p in shown.features.prompts] == ["other"]
    upstream = Upstream()
    request = tool_call({"seconds": 1}, tool="sleep")  # called by name though hidden
    outcome = await through(InterceptorChain([deny]), request, CONFIG, upstream.execute(request))
    assert upstream.sent == [] and outcome.error is not None
    assert "srv/sleep is on this gateway's deny list" in outcome.error.message
    assert [(d.rule, d.action) for d in outcome.interceptions] == [("tools", "block")]


async def test_the_deny_list_refuses_arguments_over_its_size() -> None:
    upstream = Upstream()
    chain = InterceptorChain([DenyListInterceptor(DENY)])
    small = tool_call({"text": "x" * 10})
    assert (await through(chain, small, CONFIG, upstream.execute(small))).error is None
    large = tool_call({"text": "x" * 100})
    outcome = await through(chain, large, CONFIG, upstream.execute(large))
    assert outcome.error is not None and "over this gateway's limit of 64 bytes" in outcome.error.message
    assert len(upstream.sent) == 1
    assert [(d.rule, d.detail) for d in outcome.interceptions] == [("max_argument_bytes", "111 bytes")]


async def test_the_deny_list_redacts_its_terms_from_results_copy_on_write() -> None:
    result = {
        "content": [
            {"type": "text", "text": "the project falcon plan"},
            {"type": "text", "text": 'then say "x" twice: say "X"'},
            {"type": "image", "data": "UHJvamVjdCBGYWxjb24=", "mimeType": "image/png"},
        ],
        "structuredContent": {"note": "untouched"},
    }
    upstream = Upstream(result)
    request = tool_call({"text": "hi"})
    outcome = await through(InterceptorChain([DenyListInterceptor(DENY)]), request, CONFIG, upstream.execute(request))
    assert outcome.result is not None
    assert outcome.result["content"][0]["text"] == "the [REDACTED] plan"
    assert outcome.result["content"][1]["text"] == "then [REDACTED] twice: [REDACTED]", "terms JSON escapes, too"
    assert outcome.result["structuredContent"] is result["structuredContent"], "what did not change is shared"
    assert result["content"][0]["text"] == "the project falcon plan", "the upstream's result is not edited"
    assert [(d.rule, d.action, d.where, d.detail) for d in outcome.interceptions] == [
        ("terms", "redact", "result", "3 match(es)")
    ]
    clean = Upstream()
    plain = await through(InterceptorChain([DenyListInterceptor(DENY)]), request, CONFIG, clean.execute(request))
    assert plain.result is clean.result and plain.interceptions == []


async def test_replacing_the_chain_starts_the_new_and_stops_the_dropped() -> None:
    events: list[str] = []
    kept, dropped, added = Recorder(events, "kept"), Recorder(events, "dropped"), Recorder(events, "added")
    chain = InterceptorChain([kept, dropped])
    await chain.replace([kept])
    assert events == [], "not started yet: nothing to start or stop"
    await chain.start(object())  # type: ignore[arg-type]  # a stand-in for the executor's NATS client
    await chain.replace([kept, added])
    await chain.stop()
    assert events == ["kept:start", "added:start", "kept:stop", "added:stop"]


KEY_PAIR = "AKIA" + "W7XQ2ZKD5MNV3RTB" + " r9Kd2Lx7Qp4Vz8Mn3Bw6Ht1Jy5Gc0Fs/Ea+Ub8Ni"


async def test_with_pinning_off_definitions_carrying_a_credential_are_withheld_and_refused() -> None:
    chain = InterceptorChain(configured(ExecutorSettings(pinning=False))[:1])
    tools = [{"name": "echo"}, {"name": "sleep", "inputSchema": {"properties": {"k": {"default": KEY_PAIR}}}}]
    prompts = [{"name": "repeat", "description": f"use {KEY_PAIR}"}, {"name": "other"}]
    resources = [{"uri": "a://b", "name": f"doc {KEY_PAIR}"}, {"uri": "a://c", "name": "c"}]
    shown = await chain.at_listing("srv", CONFIG, Listing(tools, Features({}, prompts, resources)))
    assert [t["name"] for t in shown.tools] == ["echo"] and shown.withheld == ("sleep",)
    assert [p["name"] for p in shown.features.prompts] == ["other"]
    assert [r["uri"] for r in shown.features.resources] == ["a://c"]
    upstream = Upstream()
    request = tool_call({"seconds": 1}, tool="sleep")  # called by name though withheld
    outcome = await through(chain, request, CONFIG, upstream.execute(request))
    assert upstream.sent == [] and outcome.error is not None
    assert "carries a credential (secrets: aws_access_key_id at /inputSchema/properties/k/default" in (
        outcome.error.message
    )
    assert "AKIA" not in outcome.error.message


async def test_a_definition_version_is_scanned_once() -> None:
    screen = configured(ExecutorSettings())[0]
    assert isinstance(screen, DefinitionSecretsInterceptor)
    listed = [{"name": f"t{i}", "description": f"tool {i}"} for i in range(20)]
    for _ in range(3):
        view = InterceptedListing("srv", CONFIG, [dict(t) for t in listed], [], [], [])
        await screen.at_listing(view)
    assert screen.screen.scanned == 20, "listed again: answered from memory"
    changed = InterceptedListing("srv", CONFIG, [*listed[:-1], {"name": "t19", "description": KEY_PAIR}], [], [], [])
    await screen.at_listing(changed)
    assert screen.screen.scanned == 21 and list(changed.credentials) == [("tool", "t19")]
    assert "[REDACTED:aws_access_key_id]" in changed.credentials[("tool", "t19")]["description"]
    assert [t["name"] for t in changed.tools] == [t["name"] for t in listed], "pinning decides what is served"


async def test_a_large_result_is_scanned_while_the_executor_serves_other_calls() -> None:
    """A MiB and more (~75 ms of CPU each) is inspected in a worker thread: the event loop keeps
    turning meanwhile, where on the loop it would not turn once until the scan ended."""
    chain = InterceptorChain([GuardrailsInterceptor(GuardrailsSection())])
    big = {"content": [{"type": "text", "text": "lorem ipsum dolor " * 120_000 + KEY_PAIR}]}
    upstream, request = Upstream(big), tool_call({"text": "hi"})
    turns, scanning = 0, True

    async def other_calls() -> None:
        nonlocal turns
        while scanning:
            turns += 1
            await asyncio.sleep(0)

    others = asyncio.create_task(other_calls())
    await asyncio.sleep(0)
    before = turns
    outcome = await through(chain, request, CONFIG, upstream.execute(request))
    during = turns - before
    scanning = False
    await others
    assert outcome.result is not None and "AKIA" not in outcome.result["content"][0]["text"]
    assert during > 1, "the event loop stood still while the result was scanned"
