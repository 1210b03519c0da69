"""The audit row of a model request names the API the caller spoke: one request through each front
(OpenAI chat completions and Responses with the `openai` SDK, Anthropic Messages with the
`anthropic` SDK, Gemini's `generateContent` as google-genai sends it) to the same scripted provider,
each `llm_request` row with its `llm_front`."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import ADMIN_KEY
from tests.support.llm_gateway import MODEL, anthropic_client, audit_rows_since, sdk_client
from tests.support.llm_provider import Reply

pytestmark = pytest.mark.integration


async def test_each_front_is_named_in_its_audit_row(began, front_gateway, provider) -> None:
    provider.script = [Reply(text=f"answer {i}") for i in range(4)]
    user = "say something"
    chat = await sdk_client(front_gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": user}]
    )
    response = await sdk_client(front_gateway).responses.create(model=MODEL, input=user)
    message = await anthropic_client(front_gateway).messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": user}]
    )
    async with httpx.AsyncClient(timeout=30) as http:
        gemini = await http.post(
            f"{front_gateway.url.removesuffix('/mcp')}/v1beta/models/{MODEL}:generateContent",
            headers={"x-goog-api-key": ADMIN_KEY},
            json={"contents": [{"role": "user", "parts": [{"text": user}]}]},
        )
    assert gemini.status_code == 200, gemini.text
    answers = [
        chat.choices[0].message.content,
        response.output_text,
        message.content[0].text,  # type: ignore[union-attr]
        gemini.json()["candidates"][0]["content"]["parts"][0]["text"],
    ]
    assert answers == ["answer 0", "answer 1", "answer 2", "answer 3"]

    rows = await audit_rows_since(front_gateway, 4, began)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    assert [(r.llm_front, r.status) for r in llm] == [
        ("chat_completions", "ok"),
        ("responses", "ok"),
        ("messages", "ok"),
        ("gemini", "ok"),
    ]
