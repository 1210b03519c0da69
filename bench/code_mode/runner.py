"""Run one task in both modes through a running gateway and grade it.

Classic: the model sees every tool definition on every turn and makes one call per turn. The
task's script is the plan such a model follows: it runs here in Python (Starlark parses and
behaves as Python for these scripts) with each `module.function(...)` becoming one `tools/call`
of the namespaced catalog tool through the gateway, so every call is one turn and every result
lands in the model's context.

Code Mode: the model sees the five meta-tools. It makes the task's `discover` calls (search,
stub reads, docs, exploratory scripts), then one `execute_code` per script, which the codemode
service runs in its sandbox. The honesty checks (`honesty.py`) run before each script and on the
calls the upstreams received: a tool, argument or result field the transcript never showed fails
the task.

Both modes must produce the expected `result` and leave the upstream worlds in the expected state.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from client import CallFailed, McpClient, result_text
from honesty import Shown, check, check_calls, check_fields
from transcript import Transcript

from libs.common.contracts.codemode import CODE_MODE_HEADER
from libs.common.contracts.naming import assign_names
from services.codemode.metatool_answers import tool_value
from services.codemode.toolset import Toolset

__all__ = ["Outcome", "Task", "Workbench", "load_tasks"]


@dataclass
class Task:
    id: str
    task: str
    discover: list[tuple[str, dict[str, Any]]]
    scripts: list[str]
    """Run in order; the last one's `result` is the task's result."""
    expect: dict[str, Any]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Task:
        discover = []
        for step in raw["discover"]:
            ((tool, arguments),) = step.items()
            discover.append((tool, arguments or {}))
        scripts = [raw["code"]] if isinstance(raw["code"], str) else list(raw["code"])
        return cls(raw["id"], " ".join(raw["task"].split()), discover, scripts, raw["expect"])


def load_tasks(raw: list[dict[str, Any]]) -> list[Task]:
    tasks = [Task.parse(item) for item in raw]
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise SystemExit("task ids must be unique")
    return tasks


@dataclass
class ModeOutcome:
    transcript: Transcript
    result: Any = None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class Outcome:
    task: Task
    classic: ModeOutcome
    code_mode: ModeOutcome


class ScriptToolError(Exception):
    pass


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _path(value: Any, path: str | list[Any]) -> Any:
    for part in path.split(".") if isinstance(path, str) else path:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


class Workbench:
    """A gateway with the benchmark's upstreams behind it, one key, both modes."""

    def __init__(
        self, gateway_url: str, key: str, upstreams_url: str, listings: dict[str, list[dict[str, Any]]]
    ) -> None:
        self.upstreams_url = upstreams_url
        self.classic = McpClient(gateway_url, key, {CODE_MODE_HEADER: "off"})
        self.code_mode = McpClient(gateway_url, key, {CODE_MODE_HEADER: "on"})
        self.classic_tools = self.classic.list_tools()
        self.meta_tools = self.code_mode.list_tools()
        self.names = {
            pair: name
            for name, pair in assign_names(
                (server, tool["name"]) for server, tools in listings.items() for tool in tools
            ).items()
        }
        listed = {tool["name"] for tool in self.classic_tools}
        missing = sorted(name for name in self.names.values() if name not in listed)
        if missing:
            raise SystemExit(f"the gateway does not list {len(missing)} tools, e.g. {missing[:3]}")
        self.definitions = {(server, tool["name"]): tool for server, tools in listings.items() for tool in tools}
        self.toolset = Toolset((server, tool) for server, tools in listings.items() for tool in tools)
        self.by_upstream = {(spec.server, spec.tool): spec for spec in self.toolset.by_name.values()}
        self.modules = set(self.toolset.modules)

    def reset(self) -> None:
        httpx.post(f"{self.upstreams_url}/_reset", timeout=30).raise_for_status()

    def calls(self) -> list[tuple[str, list[str]]]:
        """Calls the upstreams received since the reset, as (`module.function`, stub argument names)."""
        response = httpx.get(f"{self.upstreams_url}/_calls", timeout=30)
        response.raise_for_status()
        calls = []
        for call in response.json():
            spec = self.by_upstream.get((call["server"], call["tool"]))
            if spec is None:
                calls.append((f"{call['server']}/{call['tool']}", call["arguments"]))
                continue
            identifiers = {original: ident for ident, original in spec.params.items()}
            calls.append((spec.qualified, [identifiers.get(a, a) for a in call["arguments"]]))
        return calls

    def state(self, server: str) -> Any:
        response = httpx.get(f"{self.upstreams_url}/_state/{server}", timeout=30)
        response.raise_for_status()
        return response.json()

    def run(self, task: Task, classic_tokens: int, code_mode_tokens: int) -> Outcome:
        self.reset()
        classic = self.run_classic(task, Transcript(classic_tokens, task.task))
        classic.problems += self.grade(task, classic.result)
        self.reset()
        code_mode = self.run_code_mode(task, Transcript(code_mode_tokens, task.task))
        code_mode.problems += self.grade(task, code_mode.result)
        return Outcome(task, classic, code_mode)

    # --- classic ----------------------------------------------------------------------------------

    def run_classic(self, task: Task, transcript: Transcript) -> ModeOutcome:
        outcome = ModeOutcome(transcript)

        def call(qualified: str, arguments: dict[str, Any]) -> Any:
            spec = self.toolset.by_name.get(qualified)
            if spec is None:
                raise ScriptToolError(f"no tool {qualified}")
            name = self.names[(spec.server, spec.tool)]
            upstream_arguments = spec.upstream_arguments(arguments)
            result = self.classic.call(name, upstream_arguments)
            text = result_text(result)
            transcript.add(name, upstream_arguments, text, bool(result.get("isError")))
            if result.get("isError"):
                raise ScriptToolError(f"{qualified}: {text}")
            return tool_value(result, self.definitions[(spec.server, spec.tool)].get("outputSchema"))

        class Module:
            def __init__(self, module: str) -> None:
                self.module = module

            def __getattr__(self, function: str) -> Any:
                return lambda **arguments: call(f"{self.module}.{function}", arguments)

        namespace: dict[str, Any] = {module: Module(module) for module in self.modules}
        namespace["parallel"] = lambda calls: [call(name, dict(arguments)) for name, arguments in calls]
        namespace["print"] = lambda *args, **kwargs: None  # the classic model answers; it prints nothing
        for number, script in enumerate(task.scripts, 1):
            scope = dict(namespace)
            try:
                exec(compile(script, f"<{task.id} script {number}>", "exec"), scope)
            except (ScriptToolError, CallFailed) as exc:
                outcome.problems.append(f"classic: a tool call failed: {exc}")
                return outcome
            except Exception as exc:  # a bug in the task's plan, reported as the task's failure
                outcome.problems.append(f"classic: the plan raised {type(exc).__name__}: {exc}")
                return outcome
            outcome.result = scope.get("result")
        return outcome

    # --- Code Mode --------------------------------------------------------------------------------

    def run_code_mode(self, task: Task, transcript: Transcript) -> ModeOutcome:
        """The discovery calls (meta-tools, exploratory scripts included), then the task's scripts.
        Every script is checked before it runs against what the transcript showed so far."""
        outcome = ModeOutcome(transcript)
        shown: list[Shown] = []
        steps = [*task.discover, *(("execute_code", {"code": script}) for script in task.scripts)]
        for tool, arguments in steps:
            if tool == "execute_code":
                outcome.problems += [f"honesty: {p}" for p in check(arguments["code"], shown, self.modules)]
                outcome.problems += [
                    f"honesty: {p}" for p in check_fields(arguments["code"], task.task, [a.output for a in shown])
                ]
                if outcome.problems:
                    return outcome
            try:
                result = self.code_mode.call(tool, arguments)
            except CallFailed as exc:
                outcome.problems.append(f"code mode: {exc}")
                return outcome
            text = result_text(result)
            transcript.add(tool, arguments, text, bool(result.get("isError")))
            if result.get("isError"):
                outcome.problems.append(f"code mode: {tool} failed: {text[:300]}")
                return outcome
            shown.append(Shown(tool, arguments, text))
            if tool == "execute_code":
                outcome.result = _run_result(result, text)
        outcome.problems += [f"honesty: {p}" for p in check_calls(self.calls(), shown)]
        return outcome

    # --- grading ----------------------------------------------------------------------------------

    def grade(self, task: Task, result: Any) -> list[str]:
        problems = []
        if "result" in task.expect and _normal(result) != _normal(task.expect["result"]):
            problems.append(f"result {json.dumps(result)[:200]} != expected {json.dumps(task.expect['result'])[:200]}")
        states: dict[str, Any] = {}
        for probe in task.expect.get("state", []):
            state = states.setdefault(probe["server"], self.state(probe["server"]))
            try:
                actual = _path(state, probe["path"])
            except (KeyError, IndexError, ValueError, TypeError):
                problems.append(f"state {probe['server']}:{probe['path']} is missing")
                continue
            if "equals" in probe and _normal(actual) != _normal(probe["equals"]):
                problems.append(f"state {probe['server']}:{probe['path']} = {json.dumps(actual)[:200]}")
        return problems

    def close(self) -> None:
        self.classic.close()
        self.code_mode.close()


_RESULT = re.compile(r"(?:^|\n)result: (.*)\Z", re.DOTALL)


def _run_result(result: dict[str, Any], text: str) -> Any:
    """The script's `result` from an execute_code answer: structured if given, else the text's
    `result: <json>` tail."""
    structured = result.get("structuredContent")
    if isinstance(structured, dict) and "result" in structured:
        return structured["result"]
    match = _RESULT.search(text)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except json.JSONDecodeError:
        return match.group(1)
