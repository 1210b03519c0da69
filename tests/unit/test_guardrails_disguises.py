"""Credentials disguised or cut in pieces are found and redacted in their disguise; a call whose
arguments hold one is refused (or, configured so, passed with a warning), never sent altered; values
that only look like secrets under a `token` key (ids, counters, cursors) are left alone; an
upstream's error text passes the same checks as its results."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.contracts.messages import Caller, CallOutcome, GatewayError, ToolCall
from services.executor.guardrails import Guardrails, Subject
from services.executor.guardrails.decode import _B64, _SPACED, Budget, _spaced_out, encoded_runs, viewless, views
from services.executor.interceptors import GuardrailsInterceptor, InterceptorChain
from tests.support.intercepted import through

pytestmark = pytest.mark.unit

AWS = "AKIA" + "Q4TZ7XNM2VBR6P3K"
GITHUB = "ghp_" + "R5t8Wq2Zx7Lm4Nv9Bc3Kd6Hf1Jg0Ps5Ya8Eu"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzQ8t3Lp2vX9a"
ENGINE = Guardrails.compile(GuardrailsSection())
CALLER = Caller(key_id="k1", key_name="ci", user_id="ann")
CONFIG = ServerConfig(command="srv")

DISGUISES = {
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64url": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "base64_twice": lambda s: base64.b64encode(base64.b64encode(s.encode())).decode(),
    "hex": lambda s: s.encode().hex(),
    "hex_of_base64": lambda s: base64.b64encode(s.encode()).hex(),
    "json_escaped": lambda s: "".join(f"\\u{ord(c):04x}" for c in s),
    "percent": lambda s: "".join(f"%{ord(c):02x}" for c in s),
    "zero_width": lambda s: "\u200b".join(s),
    "bidi_marks": lambda s: "\u202e\u2066".join(s),
    "spaced": lambda s: " ".join(s),
    "spaced_twice": lambda s: "  ".join(s),
    "spaced_tab_space": lambda s: "\t ".join(s),
    "spaced_nbsp": lambda s: "\u00a0".join(s),
    "fullwidth": lambda s: "".join(chr(ord(c) + 0xFEE0) for c in s),
}


def _result(*texts: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": t} for t in texts]}


def _agent_reads(payload: Any) -> str:
    return json.dumps(ENGINE.inspect("result", Subject("srv", "tool", CALLER), payload).content, ensure_ascii=False)


@pytest.mark.parametrize("disguise", sorted(DISGUISES))
@pytest.mark.parametrize("secret", [AWS, GITHUB], ids=["aws", "github"])
def test_a_disguised_credential_is_redacted_in_its_disguise(disguise: str, secret: str) -> None:
    hidden = DISGUISES[disguise](secret)
    read = _agent_reads(_result(f"the key is {hidden} for prod"))
    assert hidden not in read and secret not in read
    assert "[REDACTED:" in read and read.startswith('{"content": [{"type": "text", "text": "the key is [REDACTED:')
    assert "for prod" in read


def test_an_aws_secret_cut_by_percent_encoding_is_found() -> None:
    read = _agent_reads(_result(f"aws_secret_access_key={AWS_SECRET.replace('/', '%2F')}"))
    assert "bPxRfiCY" not in read and "[REDACTED:" in read


def test_a_credential_cut_across_content_blocks_is_redacted_in_each_piece() -> None:
    read = _agent_reads(_result(f"first {AWS[:8]}", f"{AWS[8:]} then {GITHUB[:15]}", f"{GITHUB[15:]} end"))
    assert all(piece not in read for piece in (AWS[:8], AWS[8:], GITHUB[:15], GITHUB[15:])), read
    blocks = json.loads(read)["content"]
    assert [b["type"] for b in blocks] == ["text"] * 3, "the protocol's own fields stay as they were"
    assert blocks[0]["text"].startswith("first [REDACTED:aws_access_key_id]") and blocks[2]["text"].endswith(" end")


def test_a_credential_cut_across_sibling_fields_and_in_json_text_is_redacted() -> None:
    fields = {"id": 7, "head": GITHUB[:20], "tail": GITHUB[20:], "name": "deploy"}
    read = _agent_reads({"content": [{"type": "text", "text": json.dumps(fields)}], "structuredContent": fields})
    assert GITHUB[:20] not in read and GITHUB[20:] not in read, read
    assert '"name": "deploy"' in read and json.loads(json.loads(read)["content"][0]["text"])["id"] == 7


@pytest.mark.parametrize(
    "benign",
    [
        "sha256:" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "data in a line: " + base64.b64encode(bytes(range(200))).decode(),
        "commit 3f2b8c1e9a4d4e7b8c2a1d5e6f7a8b9c3f2b8c1e by alice",
        "a b c d e f g h i j k l m n o p: the alphabet, spaced",
        base64.b64encode(b"just an ordinary sentence about the weather today").decode(),
        "src/services/executor/guardrails/engine_and_more.py",
        "café, naïve, ｆｕｌｌｗｉｄｔｈ words and a zero\u200bwidth joiner",
    ],
)
def test_ordinary_text_that_looks_encoded_is_left_alone(benign: str) -> None:
    inspection = ENGINE.inspect("result", Subject("srv", "tool", CALLER), _result(benign))
    assert inspection.action is None, inspection.decisions


def test_decoding_stops_at_its_budget() -> None:
    runs = " ".join(base64.b64encode(f"line {i} of a long ordinary log text".encode()).decode() for i in range(50))
    budget = Budget(max_bytes=200, max_depth=2)
    decoded = views(runs, budget)
    assert 0 < len(decoded) <= 6 and budget.max_bytes < 50


# ----------------------------------------------------------------------------------- arguments


class Upstream:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def execute(self, request: ToolCall) -> Any:
        async def run() -> CallOutcome:
            self.sent.append(request.arguments)
            return CallOutcome.model_construct(
                id=request.id, result={"content": [{"type": "text", "text": "ok"}]}, decided_by="executor"
            )

        return run


def _call(arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(caller=CALLER, server="srv", tool="t", name="srv__t", arguments=arguments, timeout=5)


async def test_a_credential_in_the_arguments_refuses_the_call_naming_rule_and_field() -> None:
    upstream = Upstream()
    request = _call({"query": "open", "auth": {"header": f"token {GITHUB}"}})
    chain = InterceptorChain([GuardrailsInterceptor(GuardrailsSection())])
    outcome = await through(chain, request, CONFIG, upstream.execute(request))
    assert upstream.sent == [], "nothing reaches the upstream"
    assert outcome.error is not None and outcome.error.kind is ErrorKind.FORBIDDEN
    assert "'default-secrets'" in outcome.error.message and "at /auth/header" in outcome.error.message
    assert GITHUB not in outcome.error.message
    assert [(d.rule, d.action, d.where) for d in outcome.interceptions] == [("default-secrets", "block", "arguments")]


async def test_configured_to_warn_the_arguments_go_as_sent() -> None:
    upstream = Upstream()
    arguments = {"text": f"push with {base64.b64encode(GITHUB.encode()).decode()}"}
    request = _call(dict(arguments))
    chain = InterceptorChain([GuardrailsInterceptor(GuardrailsSection(arguments="warn"))])
    outcome = await through(chain, request, CONFIG, upstream.execute(request))
    assert upstream.sent == [arguments], "sent unaltered"
    assert outcome.error is None
    assert [(d.rule, d.action, d.where) for d in outcome.interceptions] == [("default-secrets", "warn", "arguments")]


@pytest.mark.parametrize(
    "arguments",
    [
        {"token": "3f2b8c1e-9a4d-4e7b-8c2a-1d5e6f7a8b9c"},
        {"token": "call 1234 attempt 0"},
        {"token": "17"},
        {"token": "call-17-attempt-2"},
        {"token": "eyJwYWdlIjoyLCJzaXplIjo1MH0="},
        {"page_token": "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA0NDF1NhAB"},
        {"cursor": "dXNlcjpXMGI3Mzk4OTk2ZDRhNjE4NTk0"},
        {"next_token": "AYABeHNqZ2xrc2RqZmxrc2pkZmxrag"},
        {"continuation_token": "1/0:Zm9vYmFyYmF6cXV4"},
    ],
)
async def test_token_named_arguments_holding_ids_counters_and_cursors_pass_unaltered(arguments: dict[str, Any]) -> None:
    upstream = Upstream()
    request = _call(dict(arguments))
    outcome = await through(
        InterceptorChain([GuardrailsInterceptor(GuardrailsSection())]), request, CONFIG, upstream.execute(request)
    )
    assert upstream.sent == [arguments] and outcome.error is None and not outcome.interceptions


async def test_a_real_token_under_a_token_key_is_still_refused() -> None:
    upstream = Upstream()
    request = _call({"token": "q8Zr2LmX9vTn4KpW7sYd"})
    outcome = await through(
        InterceptorChain([GuardrailsInterceptor(GuardrailsSection())]), request, CONFIG, upstream.execute(request)
    )
    assert upstream.sent == [] and outcome.error is not None and "at /token" in outcome.error.message


# ----------------------------------------------------------------------------------- other channels


async def test_an_upstreams_error_text_is_redacted_and_a_message_channel_is_checked() -> None:
    chain = InterceptorChain([GuardrailsInterceptor(GuardrailsSection())])

    async def failing() -> CallOutcome:
        error = GatewayError(kind=ErrorKind.UPSTREAM_ERROR, message=f"bad key {AWS}", data={"hint": GITHUB})
        return CallOutcome.model_construct(id="c1", error=error, decided_by="executor")

    outcome = await through(chain, _call({}), CONFIG, failing)
    assert outcome.error is not None and AWS not in outcome.error.message and GITHUB not in str(outcome.error.data)
    assert outcome.error.message == "bad key [REDACTED:aws_access_key_id]"
    progress = await chain.outgoing("srv", "notifications/progress", {"progress": 1, "message": f"using {GITHUB}"})
    assert progress == {"progress": 1, "message": "using [REDACTED:github_token]"}
    clean = {"progress": 2, "message": "step 2"}
    assert await chain.outgoing("srv", "notifications/progress", clean) is clean


def test_decoy_runs_before_the_credential_do_not_use_up_the_decoding_budget() -> None:
    decoys = [
        base64.b64encode(f"ordinary line {i} of a long text, nothing here".encode()).decode() for i in range(3000)
    ]
    hidden = base64.b64encode(GITHUB.encode()).decode()
    read = _agent_reads(_result(" ".join(decoys), f"and then {hidden}"))
    assert hidden not in read and "[REDACTED:github_token]" in read


async def test_a_rule_scoped_to_callers_holds_for_what_is_sent_to_their_agents() -> None:
    rule = {"name": "ci-no-tokens", "detector": "secrets", "where": ["result"], "action": "block", "keys": ["ci"]}
    chain = InterceptorChain([GuardrailsInterceptor(GuardrailsSection(defaults=False, rules=[rule]))])
    note = {"level": "info", "data": f"using {GITHUB}"}
    assert await chain.outgoing("srv", "notifications/message", note, CALLER) is None, "withheld from ci's agent"
    other = Caller(key_id="k2", key_name="ops", user_id="bo")
    assert await chain.outgoing("srv", "notifications/message", note, other) is note


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from([*"aZ09+/_-=", " ", ".", "é", "\n"]), max_size=120), st.integers(0, 40))
def test_encoded_runs_are_the_expressions_own_spans(text: str, repeat: int) -> None:
    """The byte-mapped search finds exactly the runs `_B64` matches: where they start, end, take
    their padding, and whatever follows a run cut short by `=`."""
    text = text.replace("a", "a" * repeat)
    assert encoded_runs(text) == [run.span() for run in _B64.finditer(text)]


def _gappy(chars: str, gaps: list[str]) -> st.SearchStrategy[str]:
    """Texts around a stretch of `chars` each followed by one of `gaps` (a spaced run when at least
    eleven gaps in a row are one to three spaces, tabs or no-break spaces)."""
    char, gap = st.sampled_from([*chars]), st.sampled_from(gaps)
    edge = st.lists(st.one_of(char, gap), max_size=12).map("".join)
    stretch = st.lists(st.tuples(char, gap), min_size=10, max_size=14).map(
        lambda pairs: "".join(c + g for c, g in pairs)
    )
    return st.tuples(edge, stretch, edge).map("".join)


_GAPPY = _gappy("aK9-=é", [" ", "  ", "   ", "\t", " \t", "\t\t", "\u00a0", "\n", "    "])
_ASCII_GAPPY = _gappy("aK9-=", [" ", "  ", "   ", "\t", " \t", "\n"])
"""Mostly gaps that make a spaced run, in text `viewless` reads at all (ASCII)."""


@settings(max_examples=600, deadline=None)
@given(_GAPPY)
def test_the_spaced_run_check_never_misses_a_spaced_run(text: str) -> None:
    """`_spaced_out` only spares the expression's search where it would find nothing: never stricter."""
    if _SPACED.search(text) is not None:
        assert _spaced_out(text)


@settings(max_examples=600, deadline=None)
@given(_ASCII_GAPPY)
def test_a_text_judged_viewless_has_no_view_in_any_stretch(text: str) -> None:
    if viewless(text):
        for start in range(0, len(text), 7):
            assert views(text[start:], Budget()) == []


@pytest.mark.parametrize(
    "text",
    ["", "a" * 26, "a" * 27, "=" + "a" * 27 + "===" + "b" * 30 + "=", "x.y" + "-" * 40 + "==", "é" + "a" * 30],
)
def test_encoded_runs_at_their_edges(text: str) -> None:
    assert encoded_runs(text) == [run.span() for run in _B64.finditer(text)]
