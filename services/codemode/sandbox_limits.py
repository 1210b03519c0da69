"""Sandbox limits and what a run reports when it hits one (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from libs.common.settings import CodeModeSettings

__all__ = ["Limits", "limit_message"]


@dataclass(frozen=True, slots=True)
class Limits:
    wall_seconds: float = 30.0
    cpu_seconds: float = 10.0
    memory_bytes: int = 256 * 1024 * 1024
    max_output_bytes: int = 16 * 1024
    max_result_bytes: int = 16 * 1024
    max_calls: int = 100
    max_parallel: int = 10
    max_code_bytes: int = 100_000

    @classmethod
    def from_settings(cls, settings: CodeModeSettings) -> Limits:
        return cls(
            wall_seconds=settings.sandbox_wall_seconds,
            cpu_seconds=settings.sandbox_cpu_seconds,
            memory_bytes=settings.sandbox_memory_mb * 1024 * 1024,
            max_output_bytes=settings.sandbox_max_output_bytes,
            max_result_bytes=settings.sandbox_max_result_bytes,
            max_calls=settings.sandbox_max_calls,
            max_parallel=settings.sandbox_max_parallel,
            max_code_bytes=settings.sandbox_max_code_bytes,
        )

    def for_worker(self) -> dict[str, Any]:
        """The limits the worker enforces itself (the others are enforced from outside)."""
        return {
            "max_output_bytes": self.max_output_bytes,
            "max_result_bytes": self.max_result_bytes,
            "max_calls": self.max_calls,
        }


_MESSAGES: dict[str, Callable[[Limits], str]] = {
    "wall": lambda limits: f"wall-clock time limit of {limits.wall_seconds:g} s per run",
    "cpu": lambda limits: f"CPU time limit of {limits.cpu_seconds:g} s per run",
    "memory": lambda limits: f"memory limit of {limits.memory_bytes // (1024 * 1024)} MiB per run",
    "code": lambda limits: f"script size limit of {limits.max_code_bytes} bytes",
    "calls": lambda limits: f"tool call limit of {limits.max_calls} per run",
    "result": lambda limits: f"result size limit of {limits.max_result_bytes} bytes",
    "output": lambda limits: f"printed output limit of {limits.max_output_bytes} bytes",
}


def limit_message(limit: str, limits: Limits) -> str:
    """`<limit> of <value>` for a limit enforced from outside the worker, or found in its death."""
    message = _MESSAGES.get(limit)
    if message is None:
        raise ValueError(f"unknown limit {limit!r}")
    return message(limits)
