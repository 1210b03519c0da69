"""The pool of sandbox worker processes and one run's conversation with a worker.

The pool pre-starts `size` workers (`services.codemode.worker`) and shares them fairly between the
keys whose scripts run: a key holds at most `per_owner` workers at once; a freed worker goes to the
waiting run whose key has the fewest runs going (the longest waiting among those); and a key with
nothing running that finds every worker busy gets a `burst` worker, started for its run and
stopped after it, so a few keys with long scripts cannot make everyone else wait for them. A run
takes a worker,
sends it the script, performs the tool calls it asks for (through `call`, supplied by the service)
and waits for its answer. The service enforces from outside what a process cannot be trusted to
enforce on itself: the wall-clock limit and the CPU-time limit (read from /proc every
`_CPU_POLL` seconds). A worker that exceeds either, dies (the memory cap makes Go abort), or
breaks the protocol is killed and replaced in the background; the pool never shrinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from libs.common.runtime.walls import confine as confine_module
from libs.common.runtime.walls.confine import Confinement
from libs.common.runtime.walls.profiles import DEVICES, LOADERS, SYSTEM_READ, own_packages, python_paths

from .sandbox_limits import Limits, limit_message

__all__ = ["CallBatch", "RunOutcome", "WorkerPool"]

log = logging.getLogger(__name__)

_CPU_POLL: Final = 0.05
_MAX_MESSAGE: Final = 32 * 1024 * 1024
"""Largest line a worker may send (a batch of tool calls with their arguments)."""
_STDERR_TAIL: Final = 4096
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_START_TIMEOUT: Final = 30.0

CallBatch = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]
"""Performs a batch of a script's tool calls: `[{"name", "arguments"}]` -> `[{"value"} | {"error"}]`
(with `"limit"` naming the run's limit when that is what stopped the call)."""


@functools.cache
def _worker_box() -> list[str]:
    """The launcher that boxes a worker before Python even imports Starlark.

    (Whose Go runtime starts threads a later confinement would not reach): it reads only the interpreter
    and the packages, writes nothing, binds and connects to no port, executes only the interpreter (and
    its loader)."""
    python = python_paths([])
    box = Confinement(
        read=[*SYSTEM_READ, *python, *own_packages()],
        execute=[*LOADERS, *python],
        devices=list(DEVICES),
        bind_ports=[],
        connect_ports=[],
    )
    return [sys.executable, "-I", "-S", confine_module.__file__, box.to_json(), "--"]


@dataclass(slots=True)
class RunOutcome:
    output: str = ""
    truncated: bool = False
    result: str | None = None
    """The JSON text of the script's `result`, if it set one."""
    error: dict[str, Any] | None = None
    """`{"type": "syntax" | "name" | "runtime" | "tool" | "limit" | "result" | "internal", "message", ...}`."""
    calls: int = 0
    cpu_seconds: float = 0.0


class _WorkerFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


@dataclass(slots=True, eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    stderr_head: bytearray = field(default_factory=bytearray)
    stderr: deque[bytes] = field(default_factory=lambda: deque(maxlen=64))
    drain: asyncio.Task[None] | None = None
    runs: int = 0

    def cpu_seconds(self) -> float | None:
        """utime + stime of the process, or None where /proc is not available."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stderr_tail(self) -> str:
        """The first and last few KiB of what the worker wrote to stderr.

        (A Go crash starts with its reason, then dumps every goroutine)."""
        tail = b"".join(self.stderr)[-_STDERR_TAIL:]
        return (bytes(self.stderr_head) + b"\n...\n" + tail).decode(errors="replace")

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps(message) + b"\n")
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise EOFError("worker closed its output")
        message: dict[str, Any] = orjson.loads(line)
        return message

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


@dataclass(slots=True, eq=False)
class _Waiting:
    owner: str
    turn: int
    """Arrival order: among owners with as few runs going, the longest waiting goes first."""
    worker: asyncio.Future[_Worker]


class WorkerPool:
    """`await start()` first; `run()` is safe to call concurrently (each run has its own worker)."""

    def __init__(self, size: int, limits: Limits, per_owner: int | None = None, burst: int = 0) -> None:
        self.size, self.limits = size, limits
        self.per_owner = per_owner or size
        """Workers one owner (a key) may hold at once."""
        self.burst = burst
        """Extra workers started on demand for owners with nothing running while every worker is busy."""
        self._idle: deque[_Worker] = deque()
        self._waiting: list[_Waiting] = []
        self._running: Counter[str] = Counter()
        self._bursting = 0
        self._turns = itertools.count()
        self._all: set[_Worker] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._closed = False
        self.replaced = 0
        """Workers killed or lost and replaced so far (for tests and metrics)."""

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def start(self) -> None:
        self._idle.extend(await asyncio.gather(*(self._spawn() for _ in range(self.size))))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._spawning):
            task.cancel()
        for worker in list(self._all):
            worker.kill()
            with contextlib.suppress(Exception):
                await worker.process.wait()
            if worker.drain is not None:
                worker.drain.cancel()
        self._all.clear()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            *_worker_box(),
            sys.executable,
            "-I",
            "-m",
            "services.codemode.worker",
            str(self.limits.memory_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"GOTRACEBACK": "none", "GOMAXPROCS": "1", "LANG": "C.UTF-8"},
            limit=_MAX_MESSAGE,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the service, not the sandbox
        )
        worker = _Worker(process)
        worker.drain = asyncio.create_task(self._drain(worker))
        self._all.add(worker)
        try:
            ready = await asyncio.wait_for(worker.receive(), _START_TIMEOUT)
        except (TimeoutError, EOFError, orjson.JSONDecodeError) as exc:
            worker.kill()
            self._all.discard(worker)
            raise RuntimeError(f"sandbox worker did not start: {exc!r}; stderr: {worker.stderr_tail()}") from exc
        if ready.get("op") != "ready":
            raise RuntimeError(f"sandbox worker sent {ready!r} instead of ready")
        return worker

    async def _drain(self, worker: _Worker) -> None:
        """Keep the worker's stderr flowing (a full pipe would block it) and its tail for diagnosis."""
        assert worker.process.stderr is not None
        while chunk := await worker.process.stderr.read(4096):
            if len(worker.stderr_head) < _STDERR_TAIL:
                worker.stderr_head += chunk[: _STDERR_TAIL - len(worker.stderr_head)]
            worker.stderr.append(chunk)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._all.discard(worker)
        self.replaced += 1
        if self._closed:
            return

        async def respawn() -> None:
            with contextlib.suppress(Exception):
                await worker.process.wait()
            while not self._closed:
                try:
                    self._idle.append(await self._spawn())
                    self._hand_over()
                    return
                except RuntimeError:
                    log.exception("sandbox: could not start a replacement worker; retrying")
                    await asyncio.sleep(1.0)

        task = asyncio.create_task(respawn())
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    def _hand_over(self) -> None:
        """Give idle workers to waiting runs: fewest runs going first, then first come."""
        while self._idle and self._waiting:
            eligible = [w for w in self._waiting if self._running[w.owner] < self.per_owner]
            if not eligible:
                return
            chosen = min(eligible, key=lambda w: (self._running[w.owner], w.turn))
            self._waiting.remove(chosen)
            self._running[chosen.owner] += 1
            chosen.worker.set_result(self._idle.popleft())

    async def _take(self, owner: str, patience: float) -> tuple[_Worker, bool]:
        """A worker for one run of `owner` and whether it is a burst worker; TimeoutError after `patience` seconds."""
        if self._idle and self._running[owner] < self.per_owner:
            self._running[owner] += 1
            return self._idle.popleft(), False
        if self._running[owner] == 0 and self._bursting < self.burst:
            self._bursting += 1
            self._running[owner] += 1
            try:
                return await asyncio.wait_for(self._spawn(), patience), True
            except BaseException:
                self._bursting -= 1
                self._done(owner)
                raise
        waiting = _Waiting(owner, next(self._turns), asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        try:
            done, _ = await asyncio.wait({waiting.worker}, timeout=patience)
        except BaseException:
            if waiting.worker.done():  # handed over just as the run was abandoned
                self._release(owner, waiting.worker.result(), burst=False, reusable=True)
            else:
                self._waiting.remove(waiting)
            raise
        if not done:
            self._waiting.remove(waiting)
            waiting.worker.cancel()
            raise TimeoutError
        return waiting.worker.result(), False

    def _done(self, owner: str) -> None:
        self._running[owner] -= 1
        if self._running[owner] <= 0:
            del self._running[owner]

    def _release(self, owner: str, worker: _Worker, *, burst: bool, reusable: bool) -> None:
        self._done(owner)
        if burst:  # started for this run alone: stop it, the pool keeps its size
            self._bursting -= 1
            self._all.discard(worker)
            worker.kill()
            if worker.drain is not None:
                worker.drain.cancel()
        elif reusable:
            worker.runs += 1
            self._idle.append(worker)
        else:
            self._replace(worker)
        self._hand_over()

    async def run(self, code: str, tools: list[str], call: CallBatch, owner: str = "") -> RunOutcome:
        """Run one script for `owner` (the key); never raises for anything the script does."""
        if len(code.encode()) > self.limits.max_code_bytes:
            return RunOutcome(error={"type": "limit", "limit": "code", "message": limit_message("code", self.limits)})
        started = time.monotonic()
        try:
            worker, burst = await self._take(owner, self.limits.wall_seconds)
        except TimeoutError:
            if self._running[owner] >= self.per_owner:
                message = f"this key already has {self.per_owner} runs going; waited {self.limits.wall_seconds:g} s"
                return RunOutcome(error={"type": "limit", "limit": "runs", "message": message})
            return RunOutcome(error={"type": "limit", "limit": "wall", "message": limit_message("wall", self.limits)})
        budget = self.limits.wall_seconds - (time.monotonic() - started)
        cpu_start = worker.cpu_seconds()
        conversation = asyncio.create_task(self._converse(worker, code, tools, call))
        watchdog = asyncio.create_task(self._watch_cpu(worker, cpu_start))
        try:
            await asyncio.wait({conversation, watchdog}, timeout=max(budget, 0.001), return_when="FIRST_COMPLETED")
            if conversation.done():
                outcome = conversation.result()
            else:
                limit = "cpu" if watchdog.done() else "wall"
                outcome = RunOutcome(
                    error={"type": "limit", "limit": limit, "message": limit_message(limit, self.limits)}
                )
        except _WorkerFailed as exc:
            outcome = RunOutcome(error=exc.error)
        finally:
            watchdog.cancel()
            conversation.cancel()
            cpu_end = worker.cpu_seconds()
            # not finished: killed by a limit, died, or the run was abandoned mid-conversation
            self._release(owner, worker, burst=burst, reusable=_finished(conversation))
        if cpu_start is not None and cpu_end is not None:
            outcome.cpu_seconds = cpu_end - cpu_start
        return outcome

    async def _watch_cpu(self, worker: _Worker, start: float | None) -> None:
        """Returns when the run has used its CPU time; never when /proc cannot be read."""
        if start is None:
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(_CPU_POLL)
            used = worker.cpu_seconds()
            if used is not None and used - start >= self.limits.cpu_seconds:  # type: ignore[operator]
                return

    async def _converse(self, worker: _Worker, code: str, tools: list[str], call: CallBatch) -> RunOutcome:
        try:
            await worker.send({"op": "run", "code": code, "tools": tools, "limits": self.limits.for_worker()})
            while True:
                message = await worker.receive()
                if message.get("op") == "call":
                    results = await call(message["calls"])
                    await worker.send({"op": "results", "results": results})
                    continue
                if message.get("op") != "done":
                    raise ValueError(f"unexpected message {message.get('op')!r}")
                return RunOutcome(
                    output=message["output"],
                    truncated=message["truncated"],
                    result=message["result"],
                    error=message["error"],
                    calls=message["calls"],
                )
        except (ValueError, asyncio.LimitOverrunError) as exc:
            if "limit" in str(exc):  # StreamReader: a line longer than _MAX_MESSAGE
                text = f"message size limit of {_MAX_MESSAGE // (1024 * 1024)} MiB (a tool call's arguments)"
                raise _WorkerFailed({"type": "limit", "limit": "message", "message": text}) from exc
            raise _WorkerFailed(await self._death(worker, exc)) from exc
        except (EOFError, ConnectionError, KeyError) as exc:
            raise _WorkerFailed(await self._death(worker, exc)) from exc

    async def _death(self, worker: _Worker, exc: Exception) -> dict[str, Any]:
        """Why a worker stopped answering: the memory cap, or something unexpected."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.process.wait(), 2.0)
        if worker.drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(worker.drain), 1.0)
        tail = worker.stderr_tail()
        # under RLIMIT_AS a failed allocation aborts Go ("out of memory") or faults (SIGSEGV)
        if any(sign in tail for sign in ("out of memory", "MemoryError", "cannot allocate memory", "SIGSEGV")):
            return {"type": "limit", "limit": "memory", "message": limit_message("memory", self.limits)}
        log.warning("sandbox worker failed (%r, exit %s): %s", exc, worker.process.returncode, tail[:500])
        return {"type": "internal", "message": "the sandbox worker stopped unexpectedly; the run did not finish"}


def _finished(task: asyncio.Task[RunOutcome]) -> bool:
    """Whether the worker finished the run itself, so it is idle and usable again."""
    return task.done() and not task.cancelled() and task.exception() is None
