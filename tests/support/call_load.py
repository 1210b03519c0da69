"""A light, bounded call load for failover tests: a few callers, each sending its next `echo` call once
the last one is answered, remembering when each success was sent and answered, and every error."""

from __future__ import annotations

import asyncio
import itertools
import time

from mcp import Client

__all__ = ["CallLoad"]


class CallLoad:
    def __init__(self, client: Client, workers: int = 4) -> None:
        self.client = client
        self.workers = workers
        self.successes: list[tuple[float, float]] = []
        """(sent, answered) of each successful call."""
        self.errors: list[str] = []
        self.failures: list[tuple[float, float, str]] = []
        """(sent, answered, the error) of each failed call."""

    async def run(self) -> None:
        async with asyncio.TaskGroup() as callers:
            for worker in range(self.workers):
                callers.create_task(self._calls(worker))

    async def _calls(self, worker: int) -> None:
        for i in itertools.count():
            sent = time.monotonic()
            try:
                result = await self.client.call_tool("echo__echo", {"text": f"call {worker}.{i}"})
            except Exception as exc:
                self._failed(sent, str(exc))
                continue
            if result.is_error:
                self._failed(sent, str(result.content[0].text))  # type: ignore[union-attr]
            else:
                self.successes.append((sent, time.monotonic()))

    def _failed(self, sent: float, error: str) -> None:
        self.errors.append(error)
        self.failures.append((sent, time.monotonic(), error))

    def timeline(self, since: float) -> list[str]:
        """The first 40 calls answered after `since`: sent and answered (seconds from `since`), and why not ok."""
        calls = [*self.failures, *((s, a, "ok") for s, a in self.successes[-200:])]
        return [f"{s - since:+.1f}..{a - since:+.1f}s {e[:160]}" for s, a, e in sorted(calls) if a > since][:40]

    def sent_and_answered_after(self, moment: float) -> bool:
        """Whether a call sent after `moment` succeeded (one answered from a socket's buffer does not count)."""
        return any(sent > moment for sent, _ in self.successes)

    def longest_gap(self, since: float) -> float:
        """The longest time without a successful call sent after `since`, from `since` on."""
        answered = sorted(done for sent, done in self.successes if sent > since)
        return max(b - a for a, b in itertools.pairwise([since, *answered, time.monotonic()]))
