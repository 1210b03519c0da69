"""An OpenAI-compatible fake model provider in a process of its own, for the LLM benchmarks.

    python bench/llm_fake_provider.py [--port 0]     # prints `READY <base_url>` once it serves

It answers every chat completion at once with the same reply, as the tests' fake does (the OpenAI
speaker of `tests/support/provider_wires`, the same JSON and the same SSE frames), but over keep-alive
HTTP/1.1 connections (a stream in chunked transfer encoding) as a real provider's API does: the
tests' fake closes each connection after one answer, which would make every completion, direct or
through Bastion, pay a TCP connect and hide what the gateway itself spends. Its own process, so
its CPU is neither the gateway's nor the load generator's (`llm_overhead.py` reads it apart), and a
`SIGKILL` is a provider dying mid-load: new connections refused, open ones broken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.provider_wires import Answer, Reply, speaker_for

REPLY = Reply("Hello! How can I help?", usage=(12, 7))
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


class KeepAliveProvider:
    """OpenAI's wire on one port; every request answered with `REPLY`, connections kept open."""

    def __init__(self) -> None:
        self.speaker = speaker_for("openai", None)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request answered; whether the connection stays open for the next."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:_MAX_HEAD].decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if lines[0].count(" ") >= 2 else "/"
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            raise ValueError("body too large")
        body = orjson.loads(await reader.readexactly(length)) if length else {}
        route = self.speaker.route(path, body)
        if route is None:
            answer = self.speaker.error(404, f"no route {path}", None)
        else:
            model, streaming = route
            calls: list = []
            answer = (
                self.speaker.stream(REPLY, calls, model, body, whole=True)
                if streaming
                else self.speaker.completion(REPLY, calls, model)
            )
        await _write(writer, answer)
        return headers.get("connection", "").lower() != "close"


async def _write(writer: asyncio.StreamWriter, answer: Answer) -> None:
    head = [f"HTTP/1.1 {answer.status} X", f"Content-Type: {answer.content_type}"]
    head += [f"{name}: {value}" for name, value in answer.headers.items()]
    if not answer.streamed:
        body = b"".join(answer.frames)
        writer.write(("\r\n".join([*head, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return
    writer.write(("\r\n".join([*head, "Transfer-Encoding: chunked"]) + "\r\n\r\n").encode())
    for frame in answer.frames:  # one write per event, as a provider flushes each as it is generated
        writer.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    provider = KeepAliveProvider()
    server = await asyncio.start_server(provider.serve, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{port}{provider.speaker.prefix}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
