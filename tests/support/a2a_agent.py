"""A small A2A agent built on the official `a2a-sdk` (JSON-RPC binding, A2A 1.0), run as its own process.

`python -m tests.support.a2a_agent [--skills-file F] [--sign-key PEM]` prints `READY <url>`. Its skills
are read from `--skills-file` (a JSON list of `{id, name, description}`) each time the card is served,
so a test changes the card by rewriting that file; with `--sign-key` (an EC P-256 private key, PEM)
every card served is signed with the SDK's own signer. What it does with a message's text:

- `slow <text>`: answers with a working task, and completes it a moment later with `<TEXT>` as an
  artifact (the gateway must follow the task with `GetTask`); `slower <text>` takes 2.5 s (longer
  than an agent's default `after_ms`: through the front it becomes a gateway-hosted task);
- `hang`: a task that never ends (until cancelled);
- `ask`: a task that needs the user's input;
- `fail`: a task that fails;
- anything else: a message at once, the text upper-cased, then `skill=<the skillId hint>`; a data
  part comes back as a data part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from a2a.helpers.proto_helpers import (
    new_data_part,
    new_message,
    new_task_from_user_message,
    new_text_artifact,
    new_text_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette

from tests.support.asgi_serve import bind, serve_ready

DEFAULT_SKILLS = [
    {"id": "shout", "name": "Shout", "description": "Repeats what you say, louder."},
    {"id": "research", "name": "Research", "description": "Looks things up; takes a moment."},
]


class Agent(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        message = context.message
        hint = (MessageToDict(message.metadata) if message is not None else {}).get("skillId", "")
        context_id = context.context_id or ""
        if text.split(" ", 1)[0] in ("slow", "slower", "hang", "ask", "fail") and message is not None:
            task = context.current_task or new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
            await self._task(text, TaskUpdater(event_queue, task.id, task.context_id))
            return
        parts = [new_text_part(f"{text.upper()} skill={hint}")]
        data = [p for p in (message.parts if message is not None else []) if p.HasField("data")]
        parts += [new_data_part(MessageToDict(p)["data"]) for p in data]
        await event_queue.enqueue_event(new_message(parts, context_id=context_id, task_id=None))

    async def _task(self, text: str, updater: TaskUpdater) -> None:
        await updater.start_work()
        word, _, rest = text.partition(" ")
        if word == "ask":
            await updater.requires_input(new_text_message("which city?", task_id=updater.task_id))
        elif word == "fail":
            await updater.failed(new_text_message("the archive is closed", task_id=updater.task_id))
        elif word == "hang":
            await asyncio.sleep(3600)
        else:
            await asyncio.sleep(0.3 if word == "slow" else 2.5)
            await updater.add_artifact(new_text_artifact("answer", rest.upper()).parts, name="answer")
            await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()


def key_pair() -> tuple[str, str]:
    """A fresh EC P-256 key pair as (private PKCS#8 PEM, public SPKI PEM): an agent's card signing key."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return pem, public


def _card(url: str, skills: list[dict[str, Any]]) -> AgentCard:
    return AgentCard(
        name="Test Agent",
        description="An agent of the test suite",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url + "/", protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id=s["id"], name=s["name"], description=s["description"], tags=["test"]) for s in skills],
    )


def app(url: str, skills_file: Path | None, sign_key: str | None) -> Starlette:
    def skills() -> list[dict[str, Any]]:
        if skills_file is not None and skills_file.exists():
            loaded: list[dict[str, Any]] = json.loads(skills_file.read_text())
            return loaded
        return DEFAULT_SKILLS

    signer = None
    if sign_key is not None:
        from a2a.utils.signing import create_agent_card_signer

        signer = create_agent_card_signer(sign_key, {"alg": "ES256", "kid": "test-key", "typ": "JOSE"})  # type: ignore[typeddict-item]

    async def current(_: AgentCard) -> AgentCard:
        card = _card(url, skills())
        return signer(card) if signer is not None else card

    card = _card(url, skills())
    handler = DefaultRequestHandlerV2(agent_executor=Agent(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = [*create_agent_card_routes(card, card_modifier=current), *create_jsonrpc_routes(handler, rpc_url="/")]
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skills-file", type=Path)
    parser.add_argument("--sign-key")
    args = parser.parse_args()
    sock, url = bind("127.0.0.1", 0)
    key = Path(args.sign_key).read_text() if args.sign_key else None
    asyncio.run(serve_ready(app(url, args.skills_file, key), sock, url))


if __name__ == "__main__":
    main()
