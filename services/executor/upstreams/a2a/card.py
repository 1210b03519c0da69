"""An A2A agent card, read once per session: its checks, its signature, and the tools its skills become.

The card is untrusted input from the upstream: its size, its skill count and every string it
contributes are bounded before anything is derived from it. Each skill becomes one tool whose
`_meta` carries the card's digest, so any change to the card (a new endpoint, a skill reworded,
a key rotated) changes every tool's pinned hash and waits for a person's approval (pinning).

A signed card (A2A 1.0: detached JWS over the JCS form of the card without `signatures`, empty
values dropped) is verified against the public key the owner configured; with a key configured,
an unsigned card or one whose every signature fails is refused.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Final

import orjson
import rfc8785
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from libs.common.contracts.a2a_config import skill_tool
from libs.common.contracts.json_codec import loads_object

__all__ = ["MAX_CARD_BYTES", "AgentCard", "CardError", "read_card"]

MAX_CARD_BYTES: Final = 256 * 1024
MAX_SKILLS: Final = 200
_MAX_TEXT: Final = 4000
_MAX_EXAMPLES: Final = 5
_ALGORITHMS: Final = ["ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA"]
META_KEY: Final = "io.a2a/agent"
"""The `_meta` entry of a skill's tool: which agent, which skill, the card's digest."""

INPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "What to ask the agent (sent as the message's text part)."},
        "data": {"type": "object", "description": "Structured input, sent as a data part beside the text."},
        "contextId": {"type": "string", "description": "Continue the conversation this id names (from an answer)."},
    },
    "required": ["message"],
    "additionalProperties": False,
}


class CardError(ValueError):
    """The card cannot be used: malformed, too large, no JSON-RPC endpoint, or its signature fails."""


@dataclass(frozen=True, slots=True)
class AgentCard:
    """What the executor keeps of a card: where to send messages, and the tools its skills became."""

    name: str
    endpoint: str
    """The JSON-RPC interface's URL (A2A 1.0 `supportedInterfaces`, or the 0.3 card's `url`)."""
    sha256: str
    tools: list[dict[str, Any]]
    skills: dict[str, str]
    """Tool name -> skill id."""
    signed: bool


def read_card(raw: bytes, public_key: str | None) -> AgentCard:
    """The card in `raw`, checked; `public_key` (PEM or JWK JSON) makes a valid signature mandatory."""
    if len(raw) > MAX_CARD_BYTES:
        raise CardError(f"the agent card is larger than {MAX_CARD_BYTES} bytes")
    try:
        card = loads_object(raw)
    except ValueError as exc:
        raise CardError(f"the agent card is {exc}") from None
    signatures = card.get("signatures") or []
    if public_key is not None:
        _verify(card, signatures, public_key)
    name = _text(card.get("name"), "name")
    skills = card.get("skills") or []
    if not isinstance(skills, list) or len(skills) > MAX_SKILLS:
        raise CardError(f"the agent card's 'skills' must be a list of at most {MAX_SKILLS}")
    digest = hashlib.sha256(rfc8785.dumps(card)).hexdigest()
    tools, by_tool = _tools(name, skills, digest)
    return AgentCard(name, _endpoint(card), digest, tools, by_tool, bool(signatures))


def _tools(agent: str, skills: list[Any], digest: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    tools: list[dict[str, Any]] = []
    by_tool: dict[str, str] = {}
    for skill in skills:
        if not isinstance(skill, dict):
            raise CardError("each skill of the agent card must be an object")
        skill_id = _text(skill.get("id"), "skills[].id")
        tool = skill_tool(skill_id)
        if tool in by_tool:
            raise CardError(f"two skills of the agent card map to one tool name {tool!r}")
        by_tool[tool] = skill_id
        tools.append(
            {
                "name": tool,
                "title": _text(skill.get("name") or skill_id, "skills[].name"),
                "description": _description(skill),
                "inputSchema": INPUT_SCHEMA,
                "_meta": {META_KEY: {"agent": agent, "skill": skill_id, "card_sha256": digest}},
            }
        )
    return tools, by_tool


def _description(skill: dict[str, Any]) -> str:
    given = skill.get("description")
    text = _text(given, "skills[].description") if given else ""
    examples = [e for e in (skill.get("examples") or [])[:_MAX_EXAMPLES] if isinstance(e, str)]
    if examples:
        text += "\nExamples: " + "; ".join(e[:200] for e in examples)
    return text[:_MAX_TEXT]


def _endpoint(card: dict[str, Any]) -> str:
    interfaces = card.get("supportedInterfaces") or []
    if isinstance(interfaces, list):
        for interface in interfaces:
            if isinstance(interface, dict) and interface.get("protocolBinding", "JSONRPC") == "JSONRPC":
                return _url(interface.get("url"))
    if "url" in card and card.get("preferredTransport", "JSONRPC") == "JSONRPC":  # an A2A 0.3 card
        return _url(card["url"])
    raise CardError("the agent card names no JSON-RPC interface (supportedInterfaces with protocolBinding JSONRPC)")


def _url(value: Any) -> str:
    url = _text(value, "url")
    if not url.startswith(("http://", "https://")):
        raise CardError("the agent card's interface URL must be http:// or https://")
    return url


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise CardError(f"the agent card's {where!r} must be a non-empty string of at most {_MAX_TEXT} characters")
    return value


def _verify(card: dict[str, Any], signatures: Any, public_key: str) -> None:
    if not isinstance(signatures, list) or not signatures:
        raise CardError("the agent card is not signed, and this agent's card must be (a2a.card_public_key is set)")
    key = _public_key(public_key)
    unsigned = _without_empty({k: v for k, v in card.items() if k != "signatures"})
    payload = base64.urlsafe_b64encode(rfc8785.dumps(unsigned)).rstrip(b"=").decode()
    for signature in signatures[:8]:
        if not isinstance(signature, dict):
            continue
        token = f"{signature.get('protected', '')}.{payload}.{signature.get('signature', '')}"
        try:
            jws.deserialize_compact(token, key, algorithms=_ALGORITHMS)
        except (JoseError, ValueError):
            continue
        return
    raise CardError("no signature of the agent card verifies with a2a.card_public_key")


def _public_key(text: str) -> ECKey | RSAKey | OKPKey:
    """The configured key, a JWK (JSON) of its own type or a PEM tried as each type the algorithms use."""
    try:
        value: Any = orjson.loads(text) if text.lstrip().startswith("{") else text
    except orjson.JSONDecodeError:
        raise CardError("a2a.card_public_key is neither a PEM nor a JWK") from None
    kinds: dict[str, type[ECKey] | type[RSAKey] | type[OKPKey]] = {"EC": ECKey, "RSA": RSAKey, "OKP": OKPKey}
    named = str(value.get("kty")) if isinstance(value, dict) else ""
    for kind in [kinds[named]] if named in kinds else list(kinds.values()):
        try:
            key: ECKey | RSAKey | OKPKey = kind.import_key(value)
        except (ValueError, TypeError, JoseError):
            continue
        return key
    raise CardError("a2a.card_public_key is neither a PEM nor a JWK of an EC, RSA or OKP public key")


def _without_empty(value: Any) -> Any:
    """The card as the A2A SDK signs it: empty strings, lists and objects dropped, recursively."""
    if isinstance(value, dict):
        kept = {k: c for k, v in value.items() if (c := _without_empty(v)) is not None}
        return kept or None
    if isinstance(value, list):
        items = [c for v in value if (c := _without_empty(v)) is not None]
        return items or None
    if isinstance(value, str) and not value:
        return None
    return value
