"""The five meta-tools, one handler each over one key's `ToolView` (one dispatch table)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libs.common.contracts.codemode import EXECUTE_CODE
from libs.common.contracts.discovery import FIND_TOOLS_NAME, MAX_FOUND
from libs.common.contracts.messages import CodeModeCall

from .calls import CallPath, ScriptCalls
from .metatool_answers import error_result, run_result, text_result
from .metrics import CODEMODE_LIMITS_HIT
from .rewrite import global_name, rewrite
from .sandbox import WorkerPool
from .searcher import Found, Searcher
from .stubs import list_files, render_docs, signature, summary
from .views import ToolView

__all__ = ["MetaTools"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _ReadFile(_Args):
    path: str = Field(min_length=1, max_length=300)
    start_line: int = Field(default=1, ge=1)
    end_line: int | None = Field(default=None, ge=1)


class _Docs(_Args):
    name: str = Field(min_length=1, max_length=300)


class _Search(_Args):
    query: str = Field(min_length=1, max_length=1000)
    limit: int = Field(default=10, ge=1, le=50)


class _Find(_Args):
    query: str = Field(min_length=1, max_length=1000)
    limit: int = Field(default=5, ge=1, le=MAX_FOUND)


class _Execute(_Args):
    code: str


@dataclass(slots=True)
class Answer:
    result: dict[str, Any]
    calls: int = 0
    authorize_urls: dict[str, str] = field(default_factory=dict)
    """Server -> the caller's authorization link (`calls.ScriptCalls.authorize_urls`)."""


def _invalid(tool: str, exc: ValidationError) -> Answer:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}" for error in exc.errors()
    )
    return Answer(error_result(f"invalid arguments for {tool}: {problems}"))


class MetaTools:
    def __init__(self, pool: WorkerPool, searcher: Searcher, calls: CallPath) -> None:
        self.pool, self.searcher = pool, searcher
        self.calls = calls
        """Where scripts' tool calls go (`execute_code`)."""
        self._table: dict[str, Callable[[CodeModeCall, ToolView], Awaitable[Answer]]] = {
            "list_tool_files": self.list_tool_files,
            "read_tool_file": self.read_tool_file,
            "get_tool_docs": self.get_tool_docs,
            "search_tools": self.search_tools,
            EXECUTE_CODE: self.execute_code,
            FIND_TOOLS_NAME: self.find_tools,
        }

    async def answer(self, request: CodeModeCall, view: ToolView) -> Answer:
        handler = self._table.get(request.tool)
        if handler is None:
            return Answer(error_result(f"unknown meta-tool {request.tool!r}; these exist: {', '.join(self._table)}"))
        return await handler(request, view)

    async def list_tool_files(self, request: CodeModeCall, view: ToolView) -> Answer:
        try:
            _Args.model_validate(request.arguments)
        except ValidationError as exc:
            return _invalid(request.tool, exc)
        return Answer(text_result(list_files(view.toolset) or "(no tools: this key may use none right now)"))

    async def read_tool_file(self, request: CodeModeCall, view: ToolView) -> Answer:
        try:
            args = _ReadFile.model_validate(request.arguments)
        except ValidationError as exc:
            return _invalid(request.tool, exc)
        text = view.file(args.path)
        if text is None:
            files = ", ".join(f"servers/{m}.py" for m in list(view.toolset.modules)[:20])
            return Answer(error_result(f"no file {args.path!r}; files: {files or '(none)'}"))
        lines = text.splitlines()
        end = min(args.end_line or len(lines), len(lines))
        if args.start_line > end:
            return Answer(
                error_result(f"{args.path} has {len(lines)} lines; start_line {args.start_line} is past them")
            )
        width = len(str(end))
        numbered = [f"{n:>{width}}  {lines[n - 1]}" for n in range(args.start_line, end + 1)]
        return Answer(text_result("\n".join(numbered)))

    async def get_tool_docs(self, request: CodeModeCall, view: ToolView) -> Answer:
        try:
            args = _Docs.model_validate(request.arguments)
        except ValidationError as exc:
            return _invalid(request.tool, exc)
        spec = view.toolset.by_name.get(args.name)
        if spec is None:
            closest = view.toolset.closest(args.name)
            hint = f"; closest: {', '.join(closest)}" if closest else "; search_tools finds tools by keyword"
            return Answer(error_result(f"no tool {args.name} for this key{hint}"))
        return Answer(text_result(render_docs(spec)))

    async def _search(self, request: CodeModeCall, view: ToolView, form: type[_Search] | type[_Find]) -> Found | Answer:
        """The search `request` asks for over `view` (built or upgraded on the way), or the error."""
        try:
            args = form.model_validate(request.arguments)
        except ValidationError as exc:
            return _invalid(request.tool, exc)
        view.index = await self.searcher.index(view.toolset, view.index)
        return await self.searcher.search(view.index, args.query, args.limit)

    async def search_tools(self, request: CodeModeCall, view: ToolView) -> Answer:
        found = await self._search(request, view, _Search)
        if isinstance(found, Answer):
            return found
        query = request.arguments["query"]
        note = [f"(lexical only: {found.lexical_only})"] if found.lexical_only else []
        if not found.tools:
            return Answer(
                text_result("\n".join([*note, f"no tool matches {query!r}; try other words or list_tool_files"]))
            )
        lines = [f"{spec.qualified}{signature(spec)} — {summary(spec.description, 120)}" for spec in found.tools]
        return Answer(text_result("\n".join([*note, *lines])))

    async def find_tools(self, request: CodeModeCall, view: ToolView) -> Answer:
        """Discovery mode's search: the (server, tool) pairs found, for ingress to name and list."""
        found = await self._search(request, view, _Find)
        if isinstance(found, Answer):
            return found
        pairs = [[spec.server, spec.tool] for spec in found.tools]
        text = f"{len(pairs)} tools found" + (f" (lexical only: {found.lexical_only})" if found.lexical_only else "")
        return Answer(
            {
                "content": [{"type": "text", "text": text}],
                "structuredContent": {"found": pairs, "lexical_only": found.lexical_only},
            }
        )

    async def execute_code(self, request: CodeModeCall, view: ToolView) -> Answer:
        try:
            args = _Execute.model_validate(request.arguments)
        except ValidationError as exc:
            return _invalid(request.tool, exc)
        toolset = view.toolset
        calls = ScriptCalls(request, toolset, self.calls)
        names = [global_name(spec.module, spec.function) for spec in toolset.by_name.values()]
        code = rewrite(args.code, toolset.modules)
        outcome = await self.pool.run(code, names, calls, owner=request.caller.key_id)
        if outcome.error is not None and outcome.error.get("type") == "limit":
            CODEMODE_LIMITS_HIT.labels(str(outcome.error.get("limit"))).inc()
        result = run_result(outcome, args.code, toolset, self.calls.limits.max_output_bytes)
        return Answer(result, calls.count, calls.authorize_urls)
