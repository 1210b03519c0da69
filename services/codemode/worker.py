"""A sandbox worker process: runs one Starlark script at a time for the codemode service.

Started by `WorkerPool` as `python -I -m services.codemode.worker <memory bytes>` with an empty
environment. It speaks JSON lines over its stdin/stdout (its real stdout is kept for the protocol,
fd 1 then points at stderr so nothing else can corrupt it):

    worker  -> service  {"op": "ready"}
    service -> worker   {"op": "run", "code": ..., "tools": [global names], "limits": {...}}
    worker  -> service  {"op": "call", "calls": [{"name": "module.function", "arguments": {...}}]}
    service -> worker   {"op": "results", "results": [{"value": ...} | {"error": "...", "limit"?: "wall"}]}
    worker  -> service  {"op": "done", "output": ..., "truncated": bool, "result": json text | null,
                         "error": {...} | null, "calls": n}

Starlark itself has no file, network, clock or environment access and `load()` is not
implemented here; the memory cap is `RLIMIT_AS` set at start-up above the process's own size.
Wall-clock and CPU time are enforced from outside by the service, which kills the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import signal
import sys
from typing import IO, Any

import orjson
from starlark_go import (
    ConversionError,
    EvalError,
    ResolveError,
    Starlark,
    StarlarkError,
    configure_starlark,
)
from starlark_go import (
    SyntaxError as StarlarkSyntaxError,
)

from .rewrite import DOT, restore

__all__ = ["WORKER_NICENESS", "main"]

_FILENAME = "script.star"
_FRAME = re.compile(r"^\s*" + re.escape(_FILENAME) + r":(\d+):(\d+): in (.+)$")
_DUMPS = orjson.OPT_NON_STR_KEYS
_PR_SET_PDEATHSIG = 1
WORKER_NICENESS = 10
"""How much lower than its service a worker runs (`nice`): a script gets the CPU the services leave."""


class _Channel:
    def __init__(self, rx: IO[bytes], tx: IO[bytes]) -> None:
        self.rx, self.tx = rx, tx

    def send(self, message: dict[str, Any]) -> None:
        self.tx.write(orjson.dumps(message, option=_DUMPS) + b"\n")
        self.tx.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self.rx.readline()
        return orjson.loads(line) if line else None


class _Run:
    """One script's state: printed output, call count, and why it stopped if it did."""

    def __init__(self, channel: _Channel, limits: dict[str, int]) -> None:
        self.channel = channel
        self.max_output = limits["max_output_bytes"]
        self.max_calls = limits["max_calls"]
        self.output: list[str] = []
        self.output_bytes = 0
        self.truncated = False
        self.calls = 0
        self.stop: dict[str, Any] | None = None
        """Set when a tool failed or a limit was hit: the Starlark error that follows is its echo."""

    def print(self, text: str) -> None:
        size = len(text.encode()) + 1
        if self.output_bytes + size > self.max_output:
            self.truncated = True
            return
        self.output.append(text)
        self.output_bytes += size

    def call_many(self, calls: list[dict[str, Any]]) -> list[Any]:
        if self.calls + len(calls) > self.max_calls:
            self.stop = {"type": "limit", "limit": "calls", "message": f"tool call limit of {self.max_calls} per run"}
            raise RuntimeError(self.stop["message"])
        self.calls += len(calls)
        self.channel.send({"op": "call", "calls": calls})
        reply = self.channel.receive()
        if reply is None:
            raise SystemExit(0)  # the service went away
        values = []
        for call, outcome in zip(calls, reply["results"], strict=True):
            if "limit" in outcome:  # the service stopped the call at a limit of the run
                self.stop = {"type": "limit", "limit": outcome["limit"], "message": outcome["error"]}
                raise RuntimeError(outcome["error"])
            if "error" in outcome:
                self.stop = {"type": "tool", "tool": call["name"], "message": outcome["error"]}
                raise RuntimeError(f"{call['name']} failed: {outcome['error']}")
            values.append(outcome["value"])
        return values

    def tool(self, qualified: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError(f"{qualified}() takes keyword arguments only: {qualified}(name=value, ...)")
            return self.call_many([{"name": qualified, "arguments": kwargs}])[0]

        return call

    def parallel(self, calls: Any = None, *extra: Any) -> list[Any]:
        if extra or not isinstance(calls, list | tuple):
            raise TypeError('parallel() takes one list of ("module.function", {"arg": value}) pairs')
        batch = []
        for i, item in enumerate(calls):
            if not (isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise TypeError(f'parallel(): item {i} is not a ("module.function", {{"arg": value}}) pair')
            if not isinstance(item[1], dict):
                raise TypeError(f"parallel(): the arguments of item {i} ({item[0]}) must be a dict")
            batch.append({"name": item[0], "arguments": item[1]})
        return self.call_many(batch) if batch else []


def _error(exc: StarlarkError) -> dict[str, Any]:
    if isinstance(exc, StarlarkSyntaxError):
        return {"type": "syntax", "message": restore(exc.msg), "line": exc.line, "column": exc.column}
    if isinstance(exc, ResolveError):
        first = exc.errors[0] if exc.errors else None
        return {
            "type": "name",
            "message": restore(first.msg if first else exc.error),
            "line": first.line if first else 0,
            "column": first.column if first else 0,
            "more": [restore(item.msg) for item in exc.errors[1:5]],
        }
    if isinstance(exc, EvalError):
        frames = [m.groups() for m in map(_FRAME.match, exc.backtrace.splitlines()) if m]
        trace = [{"line": int(line), "column": int(col), "function": restore(fn)} for line, col, fn in frames]
        message = str(exc.args[0])  # `exc.error` has the position prepended
        where = trace[-1] if trace else {"line": exc.line, "column": exc.column}
        return {
            "type": "runtime",
            "message": restore(message),
            "line": where["line"],
            "column": where["column"],
            "trace": trace,
        }
    return {"type": "runtime", "message": restore(str(exc)), "line": 0, "column": 0}


def _run(channel: _Channel, request: dict[str, Any]) -> dict[str, Any]:
    run = _Run(channel, request["limits"])
    globals_: dict[str, Any] = {name: run.tool(restore(name)) for name in request["tools"] if DOT in name}
    globals_["parallel"] = run.parallel
    error: dict[str, Any] | None = None
    result: bytes | None = None
    try:
        starlark = Starlark(globals=globals_, print=run.print)
        starlark.exec(request["code"], filename=_FILENAME)
        if "result" in starlark.globals():
            result = orjson.dumps(starlark.eval("result"), option=_DUMPS)
    except StarlarkError as exc:
        error = _error(exc)
        if run.stop is not None:
            error = {**run.stop, "line": error.get("line", 0), "column": error.get("column", 0)}
    except (ConversionError, TypeError, orjson.JSONEncodeError) as exc:
        error = {"type": "result", "message": f"`result` cannot be returned as JSON: {exc}"}
    max_result = request["limits"]["max_result_bytes"]
    if result is not None and len(result) > max_result:
        error = {"type": "limit", "limit": "result", "message": f"result size limit of {max_result} bytes"}
        result = None
    return {
        "op": "done",
        "output": "\n".join(run.output),
        "truncated": run.truncated,
        "result": result.decode() if result is not None else None,
        "error": error,
        "calls": run.calls,
    }


def _cap_resources(extra_bytes: int) -> None:
    """Address space: what the process (Python + the Go runtime's reservations) has now, plus the cap.

    No core dumps (a Go abort would write one per killed run) and no file writes. A lower CPU priority
    (`WORKER_NICENESS`): scripts spinning on every core must not starve the service that stops them, nor
    the other services on the machine, of the moments they need to acknowledge and answer calls."""
    os.nice(WORKER_NICENESS)
    with open("/proc/self/status", encoding="ascii") as status:
        size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = size_kb * 1024 + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _die_with_parent() -> None:
    """The service enforces the time limits: a worker must not outlive it (Linux `PR_SET_PDEATHSIG`)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the line above
        raise SystemExit(0)


def main() -> None:
    _die_with_parent()
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray writes (Go runtime, print without a callback) cannot corrupt the protocol
    channel = _Channel(sys.stdin.buffer, protocol)
    configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=False)
    Starlark().exec("x = [i for i in range(10)]", filename=_FILENAME)  # warm the Go runtime first
    _cap_resources(int(sys.argv[1]))
    channel.send({"op": "ready"})
    while (request := channel.receive()) is not None:
        channel.send(_run(channel, request))


if __name__ == "__main__":
    main()
