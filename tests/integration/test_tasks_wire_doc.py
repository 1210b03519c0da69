"""docs/tasks.md's wire example of the 2026-07-28 tasks extension is what the gateway sends: each request
of the example is sent as written to a real gateway in front of the tests' task server
(`tests/support/task_server.py`), and each answer must equal the example's, but for the values no two
runs share (the task's id, its times), which are read from the doc and matched by their shape.

When they differ the failure prints the whole exchange as the doc writes it, to paste in its place.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from tests.support.gateway import ADMIN_KEY, ROOT, Gateway, default_config, gateway_on_own_servers
from tests.support.polling import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

DOC = ROOT / "docs" / "tasks.md"
SECTION = "### On the wire: the 2026-07-28 form"
TASK_SERVER = str(ROOT / "tests" / "support" / "task_server.py")
KEY_IN_DOC = "bk_your_key"
TASK_ID = re.compile(r"\A[A-Za-z0-9_-]{32}\Z")
"""A gateway task id (`new_task_id`: 24 random bytes, url-safe base64)."""
MOMENT = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\Z")


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    config = default_config({"jobs": {"command": sys.executable, "args": [TASK_SERVER], "protocol": "legacy"}})
    options = {"task_max_ttl_ms": 600_000, "task_poll_interval_ms": 500}
    async with gateway_on_own_servers(tmp_path_factory.mktemp("taskwire"), config, **options) as gw:
        yield gw


def doc_steps() -> list[tuple[str, dict[str, Any]]]:
    """The example's (request as written, answer) pairs, in order."""
    text = DOC.read_text()
    assert SECTION in text, f"docs/tasks.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    requests = re.findall(r"```http\n(.*?)```", section, flags=re.S)
    answers = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, flags=re.S)]
    assert len(requests) == len(answers) >= 3, "each request of the example is followed by its answer"
    return list(zip(requests, answers, strict=True))


def parse_request(written: str, task_id: str | None, doc_task_id: str | None) -> tuple[dict[str, str], bytes]:
    """The headers and body of a request as the doc writes it, with the run's task id in the doc's place."""
    if task_id is not None and doc_task_id is not None:
        written = written.replace(doc_task_id, task_id)
    head, _, body = written.partition("\n\n")
    lines = head.splitlines()
    assert lines[0] == "POST /mcp HTTP/1.1", lines[0]
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers["Authorization"] = headers["Authorization"].replace(KEY_IN_DOC, ADMIN_KEY)
    return headers, body.strip().encode()


def as_in_doc(answer: Any, doc: Any) -> Any:
    """`answer` with each value no two runs share replaced by the doc's value at the same place, when it
    has the same shape (a task id, an ISO moment); everything else must be equal as it is."""
    if isinstance(answer, dict) and isinstance(doc, dict):
        return {key: as_in_doc(value, doc.get(key)) for key, value in answer.items()}
    if isinstance(answer, list) and isinstance(doc, list) and len(answer) == len(doc):
        return [as_in_doc(a, d) for a, d in zip(answer, doc, strict=True)]
    if isinstance(answer, str) and isinstance(doc, str):
        for shape in (TASK_ID, MOMENT):
            if shape.match(answer) and shape.match(doc):
                return doc
    return answer


def rendered(exchange: list[tuple[str, dict[str, Any]]]) -> str:
    return "\n".join(
        f"```http\n{request}```\n\n```json\n{json.dumps(answer, indent=2)}\n```\n" for request, answer in exchange
    )


async def test_the_docs_wire_example_is_what_the_gateway_sends(gateway: Gateway) -> None:
    steps = doc_steps()
    doc_task_id = steps[0][1]["result"]["taskId"]
    task_id: str | None = None
    exchange: list[tuple[str, dict[str, Any]]] = []
    async with httpx2.AsyncClient(timeout=30) as http:
        for number, (written, expected) in enumerate(steps):
            headers, body = parse_request(written, task_id, doc_task_id)
            if expected.get("result", {}).get("status") == "completed":  # the job ends before this poll
                release = {"name": "jobs__release", "arguments": {"job": "q3-report", "text": "4,210 rows"}}
                async with gateway.client() as client:
                    await client.call_tool(release["name"], release["arguments"])

            async def answer(headers: dict[str, str] = headers, body: bytes = body) -> dict[str, Any]:
                sent = await http.post(gateway.url, headers=headers, content=body)
                assert sent.status_code == 200, sent.text
                got: dict[str, Any] = sent.json()
                return got

            status = expected.get("result", {}).get("status")

            async def settled(status: str | None = status) -> dict[str, Any] | None:
                got = await answer()
                return got if got.get("result", {}).get("status") == status else None

            got = await (poll_until(settled, f"step {number}: status {status}") if status else answer())
            if task_id is None:
                task_id = got["result"]["taskId"]
            exchange.append((written, as_in_doc(got, expected)))
    assert [answer for _, answer in exchange] == [answer for _, answer in steps], rendered(exchange)
