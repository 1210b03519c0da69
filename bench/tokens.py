"""Token counting shared by the Code Mode benchmarks: o200k_base, offline, and one tool-definition format.

The tokenizer is tiktoken's `o200k_base` (GPT-4o and later), loaded from the BPE file this repo
carries (`tests/data/tiktoken/o200k_base.tiktoken`): tiktoken is pointed at a private cache
holding that file under the name it would download it as, so it never touches the network and
still checks the file's SHA-256 against the one it expects.

A tool definition is counted as a model API receives it: the Anthropic Messages API form
`{"name", "description", "input_schema"}`, serialized as compact JSON (no whitespace between
tokens, non-ASCII kept). The OpenAI form wraps the same three fields in
`{"type": "function", "function": {"name", "description", "parameters"}}`, a few tokens more per
tool; we count the smaller one so the classic side is never inflated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tiktoken

__all__ = ["BPE_FILE", "count", "count_json", "definition", "definitions_tokens", "encoding"]

BPE_FILE = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiktoken" / "o200k_base.tiktoken"
_BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


@functools.cache
def encoding() -> tiktoken.Encoding:
    if not BPE_FILE.is_file():
        raise SystemExit(f"the o200k_base tokenizer file is missing: {BPE_FILE}")
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="bastion-tiktoken-") as cache:
        # tiktoken's cache key for a blob is the sha1 of its URL
        (Path(cache) / hashlib.sha1(_BPE_URL.encode()).hexdigest()).symlink_to(BPE_FILE)
        os.environ["TIKTOKEN_CACHE_DIR"] = cache
        try:
            return tiktoken.get_encoding("o200k_base")
        finally:
            if previous is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = previous


def count(text: str) -> int:
    """o200k_base tokens of `text` (special-token strings in it count as ordinary text)."""
    return len(encoding().encode(text, disallowed_special=()))


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def count_json(value: Any) -> int:
    return count(compact(value))


def definition(tool: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The Anthropic Messages API tool definition of an MCP `Tool` (as JSON), optionally renamed."""
    return {
        "name": name or tool["name"],
        "description": tool.get("description") or "",
        "input_schema": tool.get("inputSchema") or {"type": "object"},
    }


def definitions_tokens(tools: Iterable[dict[str, Any]]) -> int:
    """Tokens of a request's whole `tools` array of MCP tools, as one JSON array."""
    return count_json([definition(tool) for tool in tools])
