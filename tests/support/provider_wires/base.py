"""What a fake provider's wire says: each module renders the scripted provider's steps (a reply, an
error, an overload, a stream) as its provider does, and refuses what its provider would refuse."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson

__all__ = ["Answer", "Call", "Reply", "Speaker", "WireSpeaker", "json_answer", "retrying", "turn_problem"]


@dataclass
class Reply:
    """A completion: assistant text and/or tool calls `(name, arguments)`; `ids` are the calls' ids
    when a test chooses them (some providers repeat ids across answers, or leave them empty);
    `cached` of the prompt tokens came from the provider's cache, `reasoning` of the completion
    tokens were thinking."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    usage: tuple[int, int] = (10, 5)
    ids: tuple[str, ...] = ()
    cached: int = 0
    reasoning: int = 0


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Answer:
    """An HTTP answer: status, headers, body (one piece, or the frames of a stream)."""

    status: int
    content_type: str
    frames: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    streamed: bool = False


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, "application/json", [orjson.dumps(payload)], headers or {})


class Speaker(Protocol):
    prefix: str
    """The path of the provider's `base_url` on the fake's host."""

    def route(self, path: str, body: dict[str, Any]) -> tuple[str, bool] | None:
        """(model, streaming) for a request to `path`, or None when the provider has no such route."""

    def refusal(self, path: str, headers: dict[str, str], raw: bytes, body: dict[str, Any]) -> Answer | None:
        """The provider's answer to a request it refuses (credentials, schema, conversation), or None."""

    def completion(self, reply: Reply, calls: list[Call], model: str) -> Answer: ...

    def stream(self, reply: Reply, calls: list[Call], model: str, body: dict[str, Any], whole: bool) -> Answer:
        """The reply streamed; `whole` False stops after the text (no finish, no usage, no end marker)."""

    def error(self, status: int, message: str, retry_after: float | None) -> Answer: ...

    def overload(self) -> Answer:
        """What the provider answers when it is overloaded."""

    def broken(self, text: str, model: str) -> Answer:
        """A stream that starts (`text`) and then carries the provider's error event (an overload)."""

    def call_ids(self, count: int) -> list[str]: ...

    def tool_names(self, body: dict[str, Any]) -> list[str]:
        """The names of the tools a request offered."""

    def tool_results(self, body: dict[str, Any]) -> list[str]:
        """The texts of the tool results a request carried, in order."""


class WireSpeaker(Speaker):
    """What every fake wire keeps alike: the credential it wants (None: any), the counter its ids come
    from, and a broken stream, which is the reply's text followed by the provider's overload event."""

    prefix: str = ""
    overload_event: ClassVar[bytes]
    """The frame of the provider's stream that reports an overload, as its provider frames it."""

    def __init__(self, key: str | None = None) -> None:
        self._key = key
        self._ids = itertools.count(1)

    def broken(self, text: str, model: str) -> Answer:
        """A stream that starts (`text`) and then carries the provider's overload event."""
        answer = self.stream(Reply(text), [], model, {}, whole=False)
        answer.frames.append(self.overload_event)
        return answer


def retrying(answer: Answer, retry_after: float | None) -> Answer:
    """`answer` with the `retry-after` header a provider sends when it names the wait."""
    if retry_after is not None:
        answer.headers["retry-after"] = f"{retry_after:g}"
    return answer


Ids = Callable[[list[dict[str, Any]]], set[str]]


def turn_problem(
    messages: list[dict[str, Any]], calls: Ids, answers: Ids, alternate: str, unanswered: str
) -> str | None:
    """Why a provider that wants user and assistant turns to alternate (from the user), and each
    turn's tool calls (`calls`: their ids in a turn's blocks) answered by the next user turn's
    results (`answers`), refuses `messages`: its `alternate` or `unanswered` message (`{i}`: the turn)."""
    expected, open_calls = "user", set[str]()
    for i, message in enumerate(messages):
        if message["role"] != expected:
            return alternate.format(i=i)
        blocks = message["content"] if isinstance(message["content"], list) else []
        if message["role"] == "user" and answers(blocks) != open_calls:
            return unanswered.format(i=i)
        open_calls = calls(blocks)
        expected = "assistant" if expected == "user" else "user"
    return None
