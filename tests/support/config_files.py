"""Config-file test helpers shared by the config test modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.common.contracts.config import ConfigError
from libs.common.settings.config_file import parse_config

__all__ = ["SECRET", "_ci_key", "_error", "_servers", "_write"]

SECRET = "sk-bastion-live-7f3c9a1e5b2d4f60"  # 32 characters: a valid `key`


def _write(folder: Path, name: str, content: str | dict[str, Any]) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content, indent=2) if path.suffix == ".json" else yaml.safe_dump(content)
    path.write_text(content)
    return path


def _error(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


def _servers(servers: dict[str, Any]) -> dict[str, Any]:
    return {"mcpServers": servers}


def _ci_key(**fields: Any) -> dict[str, Any]:
    """A config with one key, named `ci`, of these `fields`."""
    return {"keys": [{"name": "ci", **fields}]}
