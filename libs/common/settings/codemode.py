"""The Code Mode service's settings."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, SecretStr

from libs.common.settings.base import AuditJournalSettings, RequestPathSettings

__all__ = ["CodeModeSettings"]


class CodeModeSettings(RequestPathSettings, AuditJournalSettings):
    """The codemode service: its sandbox worker pool and the limits of every run (docs/code-mode.md)."""

    sandbox_workers: int = Field(default=4, ge=1, le=64)
    """Pre-started worker processes; a worker runs one script at a time."""
    sandbox_runs_per_key: int = Field(default=2, ge=1)
    """Runs of one key at the same time; further runs of that key wait, so one key cannot take every worker."""
    sandbox_burst_workers: int = Field(default=2, ge=0, le=64)
    """Extra workers started on demand, each for one run of a key that has nothing running while every
    pre-started worker is busy (stopped after that run): other keys' long scripts cannot hold it up."""
    sandbox_wall_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Wall-clock time of a run, tool calls included; the worker is killed and replaced when exceeded."""
    sandbox_cpu_seconds: float = Field(default=10.0, gt=0, le=3600)
    """CPU time of a run (measured by the service from /proc); the worker is killed and replaced."""
    sandbox_memory_mb: int = Field(default=256, ge=16, le=65536)
    """Address space a worker may add to its start-up size (`RLIMIT_AS`)."""
    sandbox_max_output_bytes: int = Field(default=16 * 1024, ge=256)
    """Printed output kept per run; the rest is dropped and the answer says so."""
    sandbox_max_result_bytes: int = Field(default=16 * 1024, ge=256)
    """Size of the JSON of a run's `result`."""
    sandbox_max_calls: int = Field(default=100, ge=1)
    """Tool calls per run."""
    sandbox_max_parallel: int = Field(default=10, ge=1)
    """Tool calls of one run in flight at once (`parallel`)."""
    sandbox_max_code_bytes: int = Field(default=100_000, ge=1)
    """Size of a script."""
    call_timeout: float = Field(default=120.0, gt=0)
    """Seconds one tool call of a script may take (the run's wall-clock limit still applies)."""
    search_embeddings: bool = True
    """Tool search ranks with a sentence-embedding model beside BM25 (docs/code-mode.md); False, or a
    model that cannot be loaded, leaves it lexical only, and its answers say so."""
    search_query_model: Literal["tuned", "base"] = "tuned"
    """What embeds a search's query: `tuned`, the model fine-tuned for agents' needs (recall@5 84.5 →
    94.0 % on the repository's query set; docs/code-mode.md), or `base`, the published model that
    embeds the tools. Switching recomputes the tool vectors (their needs are embedded by the query model)."""
    search_needs: bool = True
    """Rank with the shipped needs: what agents ask for when they want each of 1,587 tools of 68
    public MCP servers, matched by tool name and description (hybrid recall@1 72.2 → 89.2 %, recall@5
    93.8 → 98.8 % on the repository's query set; docs/code-mode.md, "Needs")."""
    search_needs_file: str = ""
    """A JSON-lines file of this deployment's own needs, `{"server", "tool", "needs": [...]}` per
    line, in its own server names (docs/code-mode.md, "Needs"). One that cannot be read or parsed
    is left out, and the log says which line."""
    search_needs_writer_url: str = ""
    """An OpenAI-compatible API (up to and including `/v1`) that writes needs for every tool that has
    none (a deployment's own servers): this gateway's own `/v1`, so each request passes a virtual
    key's budget and the audit trail (docs/code-mode.md, "Needs written for your tools"). Empty: none
    are written."""
    search_needs_writer_key: SecretStr = SecretStr("")
    """The bearer key for `search_needs_writer_url`: a virtual key of this gateway with an LLM budget."""
    search_needs_writer_model: str = ""
    """The model that writes needs (one a configured provider serves); empty: none are written."""
    search_needs_writer_batch: int = Field(default=8, ge=1, le=50)
    """Tools of one server asked about in one request."""
    search_needs_writer_timeout: float = Field(default=120.0, gt=0, le=600)
    """Seconds one request may take."""
    search_needs_writer_retry_seconds: float = Field(default=5.0, ge=0, le=300)
    """The first pause before a failed request is sent again (doubling, at most 300 s): three error
    answers and that batch is left until restart; an API that cannot be reached is waited for."""
    search_needs_writer_max_tools: int = Field(default=5000, ge=0)
    """Tools asked about per process lifetime: bounds what a catalog that keeps changing its
    definitions can spend."""
    search_needs_written_file: str = ""
    """Where written needs are kept (JSON lines, a needs file's format): a restart asks for none of
    them again. Empty: in memory only. `bastion up` keeps it in `<data_dir>/codemode/written-needs.jsonl`."""
    search_cache_file: str = ""
    """File keeping tool embeddings across restarts (computed once per tool definition); empty: in
    memory only. `bastion up` keeps it in `<data_dir>/codemode/tool-vectors.npz`."""
    search_cache_entries: int = Field(default=20_000, ge=100, le=1_000_000)
    """Tool embeddings kept (in memory and in the file), the least recently used dropped first
    (1.5 KB each in memory, 0.8 KB in the file)."""
    search_threads: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)
    """Threads that embed one search's query (ONNX Runtime intra-op threads; they sleep between
    searches rather than spin: the cores are shared with the sandbox workers). Two took a query's
    embedding from about 6 ms to 3.6 on an idle machine; a query is a dozen tokens, too little work
    to share among more. Default: two, or one on a one-core machine."""
    search_warmup_wait: float = Field(default=30.0, ge=0, le=600)
    """Seconds a search waits for its tools to be embedded when many are new (a fresh start with
    tools the shipped vectors do not cover): it then ranks as a warm replica does. Past it the
    answer is lexical and says so; 0: never wait (docs/code-mode.md, "From the first search")."""
    search_query_cache: int = Field(default=1024, ge=0, le=1_000_000)
    """Query embeddings kept (1.5 KB each), the least recently used dropped first: agents repeat
    their searches, and a repeated one skips the model. 0: none kept."""
