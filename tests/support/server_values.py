"""The values a test server script serves (its secrets, its hostile strings), read by the test that
checks what the gateway does with them: the script loaded as a module of its own, not run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["server_values"]


def server_values(script: Path, name: str, argv: list[str] | None = None) -> ModuleType:
    """`script` loaded as module `name` (registered, so its dataclasses resolve); `argv`: what its
    top level reads from `sys.argv`, restored after."""
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    saved = sys.argv
    if argv is not None:
        sys.argv = argv
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = saved
    return module
