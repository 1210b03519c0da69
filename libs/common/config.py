"""The Bastion configuration file (YAML or JSON).

`mcpServers` is accepted exactly as Claude Desktop, Cursor and Claude Code write it:
`command`/`args`/`env` for stdio, `url`/`headers` (optionally `type: http|sse`) for remote servers.
Bastion's own sections (`gateway`, `stack`, `keys`) sit beside it. `${VAR}` and `${VAR:-default}`
in strings are expanded from the environment, as Claude Code does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "BastionConfig",
    "ConfigError",
    "GatewaySection",
    "KeyConfig",
    "ServerConfig",
    "StackSection",
    "load_config",
]

SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# keys other MCP clients write into their mcpServers entries; accepted and ignored
_FOREIGN_SERVER_KEYS = frozenset({"autoApprove", "alwaysAllow", "description", "transportType", "envFile", "oauth"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServerConfig(_Strict):
    """One upstream MCP server, in the `mcpServers` dialect plus Bastion's optional knobs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["stdio", "http", "streamable-http", "streamableHttp", "sse"] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # Bastion additions
    timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Seconds a single upstream call may take before it fails with a timeout error."""
    disabled: bool = False
    tools: list[str] | None = None
    """Tool names (wildcards allowed) this server exposes through Bastion; all when omitted."""

    @model_validator(mode="before")
    @classmethod
    def _drop_client_extras(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in _FOREIGN_SERVER_KEYS}
        return data

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if self.command and self.url:
            raise ValueError("give either 'command' (stdio) or 'url' (http/sse), not both")
        if not self.command and not self.url:
            raise ValueError("needs 'command' (stdio server) or 'url' (streamable HTTP / SSE server)")
        if self.type == "stdio" and not self.command:
            raise ValueError("type 'stdio' needs 'command'")
        if self.type not in (None, "stdio") and not self.url:
            raise ValueError(f"type {self.type!r} needs 'url'")
        if self.url and not re.match(r"^https?://", self.url):
            raise ValueError("'url' must start with http:// or https://")
        return self

    @property
    def transport(self) -> Literal["stdio", "http", "sse"]:
        if self.command:
            return "stdio"
        if self.type == "sse":
            return "sse"
        return "http"


class KeyConfig(_Strict):
    """A virtual key declared in the file. Only its sha256 ever leaves the loader."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    key: str | None = Field(default=None, repr=False)
    key_env: str | None = None
    key_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None
    tools: list[str] = Field(default_factory=list)
    """Grants: `server/tool` patterns with `*` wildcards. Deny by default: empty means nothing."""

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        given = [f for f in ("key", "key_env", "key_sha256") if getattr(self, f)]
        if len(given) != 1:
            raise ValueError("give exactly one of 'key', 'key_env' or 'key_sha256'")
        if self.key is not None and len(self.key) < 16:
            raise ValueError("'key' must be at least 16 characters")
        return self

    @field_validator("tools")
    @classmethod
    def _grant_shape(cls, grants: list[str]) -> list[str]:
        for grant in grants:
            if grant != "*" and grant.count("/") != 1:
                raise ValueError(f"grant {grant!r} must look like 'server/tool' (wildcards allowed) or '*'")
        return grants

    def key_hash(self) -> str:
        if self.key_sha256:
            return self.key_sha256
        secret = self.key if self.key is not None else os.environ.get(self.key_env or "", "")
        if not secret:
            raise ConfigError(f"keys.{self.name}.key_env: environment variable {self.key_env!r} is not set")
        return hashlib.sha256(secret.encode()).hexdigest()


class GatewaySection(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8420
    max_body_bytes: Annotated[int, Field(gt=0)] = 4 * 1024 * 1024
    response_mode: Literal["json", "sse"] = "json"
    call_timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0
    """Upper bound on a whole tools/call through the gateway, whatever the server allows."""


class StackSection(_Strict):
    """External infrastructure. Anything left unset is started embedded by `bastion up`."""

    nats_url: str | None = None
    redis_url: str | None = None
    clickhouse_url: str | None = None
    data_dir: str = ".bastion"


class BastionConfig(_Strict):
    mcp_servers: dict[str, ServerConfig] = Field(default_factory=dict, alias="mcpServers")
    keys: list[KeyConfig] = Field(default_factory=list)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    stack: StackSection = Field(default_factory=StackSection)

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, servers: dict[str, ServerConfig]) -> dict[str, ServerConfig]:
        for name in servers:
            if not SERVER_NAME.match(name):
                raise ValueError(
                    f"server name {name!r} must start with a letter or digit and use only letters, digits, '_', '-', '.'"
                )
        return servers

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[KeyConfig]) -> list[KeyConfig]:
        seen: set[str] = set()
        for key in keys:
            if key.name in seen:
                raise ValueError(f"key name {key.name!r} is used twice")
            seen.add(key.name)
        return keys


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name!r} is not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("function-after[_one_transport()]", "function-after[_one_secret()]"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def parse_config(raw: Any, source: str = "config") -> BastionConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with an 'mcpServers' section")
    servers = raw.get("mcpServers")
    if isinstance(servers, dict):
        raw = {**raw, "mcpServers": {n: _expand(s, f"mcpServers.{n}") for n, s in servers.items()}}
    try:
        return BastionConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        extra = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: {_field_path(first['loc'])}: {message}{extra}") from None


def load_config(path: str | Path) -> BastionConfig:
    """Read and validate a config file; relative stdio `cwd`s resolve against the file's folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    config = parse_config(raw, str(path))
    base = path.resolve().parent
    for server in config.mcp_servers.values():
        if server.command:
            server.cwd = str((base / server.cwd).resolve()) if server.cwd else str(base)
    return config
