"""Reading the Bastion configuration file.

The file itself, `${VAR}` from the environment, and one clear message for a document that does not
validate (the models are `libs.common.contracts.config`'s).

Inside `mcpServers`, `${VAR}` and `${VAR:-default}` in strings are expanded from the environment, as
Claude Code does (and Cursor's `${env:VAR}`). Any problem raises one `ConfigError` whose message starts
with the file and the offending field (`mcpServers.github: needs 'command' ...`) and never repeats a
key secret.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from libs.common.contracts.config import BastionConfig, GatewaySection, KeyConfig, ServerConfig, StackSection
from libs.common.contracts.config_records import CONFIG_SOURCE
from libs.common.contracts.config_text import ConfigError, parse_text
from libs.common.contracts.egress import EgressSection
from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import KeyRecord
from libs.common.contracts.refused_values import refusal_text

__all__ = ["env_references", "key_hash", "key_records", "load_config", "parse_config"]

# `${VAR}` and `${VAR:-default}` (Claude Code), `${env:VAR}` (Cursor)
_ENV_REF = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def key_hash(key: KeyConfig) -> str:
    """The key's id, the sha256 of its secret: given, written, or read from its `key_env` variable."""
    if key.key_sha256:
        return key.key_sha256
    secret = key.key if key.key is not None else os.environ.get(key.key_env or "", "")
    if not secret:
        raise ConfigError(f"keys.{key.name}.key_env: environment variable {key.key_env!r} is not set")
    return key_id(secret)


def key_records(config: BastionConfig) -> list[KeyRecord]:
    """The KV records for the config's keys; also the checks the schema alone cannot make.

    Raises `ConfigError` if a `key_env` variable is unset, two keys share a secret, or a server
    name cannot be a KV key (a trailing '.').
    """
    for name in config.mcp_servers:
        if name.endswith("."):
            raise ConfigError(f"mcpServers.{name}: a server name cannot end with '.'")
    records: dict[str, KeyRecord] = {}
    for key in config.keys:
        record = KeyRecord(
            id=key_hash(key),
            name=key.name,
            grants=list(key.tools),
            groups=list(key.groups),
            user_id=key.user,
            team_id=key.team,
            customer_id=key.customer,
            budget=key.budget,
            rate_limit=key.rate_limit,
            agent=key.agent,
            models=None if key.models is None else list(key.models),
            llm_limits=key.llm_limits,
            code_mode=key.code_mode,
            discovery=key.discovery,
            discovery_pinned=list(key.discovery_pinned),
            content_logging=key.content_logging,
            source=CONFIG_SOURCE,
        )
        if (twin := records.get(record.id)) is not None:
            raise ConfigError(f"keys.{key.name}: has the same secret as key {twin.name!r}; give each key its own")
        records[record.id] = record
    return list(records.values())


# where each section's entries are validated, to list the allowed keys when one is unknown
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "mcpServers": ServerConfig,
    "keys": KeyConfig,
    "gateway": GatewaySection,
    "stack": StackSection,
    "guardrails": GuardrailsSection,
    "egress": EgressSection,
}


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


def env_references(raw: Any) -> list[str]:
    """Where the `mcpServers` of a parsed document write a `${VAR}`.

    (`mcpServers.github.headers.Authorization`), for a reader that must not expand them (one that came
    over the network: its environment is not the sender's). Paths only: a value is never repeated."""
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, str) and _ENV_REF.search(value):
            found.append(where)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    for section in ("mcpServers", "mcp_servers"):
        if isinstance(raw, dict) and isinstance(raw.get(section), dict):
            walk(raw[section], section)
    return found


def _field_path(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """`mcpServers.github.env.TOKEN`, `keys[0] (name 'ci').tools`, ... for a pydantic error location."""
    parts: list[str] = []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") + str(item))
    if len(loc) >= 2 and loc[0] == "keys" and isinstance(loc[1], int):
        entries = raw.get("keys")
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            parts[1] += f" (name {entry['name']!r})"
    return "".join(parts) or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation names: `X | None`, `Annotated[A | B, ...]`, ..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _nested_model(model: type[BaseModel], path: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose entry `path` (below `model`) is.

    `openapi.include` of a server is an `OpenApiFilter`, `openapi.auth.bearer` (pydantic names a tagged
    union's member by its tag) an `OpenApiBearer`."""
    parts = list(path)
    while parts:
        part = str(parts.pop(0))
        if part.isdigit():  # an entry of a list: the same model
            continue
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        candidates = _models_in(field.annotation) if field is not None else []
        if len(candidates) > 1 and parts:  # a tagged union: the next part is the member's tag
            tag = str(parts.pop(0))
            candidates = [m for m in candidates if tag in get_args(m.model_fields["type"].annotation)]
        if len(candidates) != 1:
            return None
        model = candidates[0]
    return model


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """Message for a key no model declares: the closest allowed key, then all of them."""
    model = BastionConfig if len(loc) == 1 else _SECTION_MODELS.get(str(loc[0]))
    if model is None:  # pragma: no cover - every section with extra="forbid" is listed
        return "unknown key"
    if model is ServerConfig and len(loc) > 3:  # below a server entry: `mcpServers.<name>.openapi.<key>`
        model = _nested_model(model, loc[2:-1]) or model
    allowed = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed here: {', '.join(allowed)}"


def _error_message(error: Any, raw: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        message = _unknown_key(loc)
    else:
        message = refusal_text(error)  # the rule, never the refused value
    return f"{_field_path(loc, raw)}: {message}"


def parse_config(raw: Any, source: str = "config", *, expand: bool = True) -> BastionConfig:
    """Validate an already-parsed config document; `source` prefixes every error message.

    `expand`: `${VAR}` in `mcpServers` is read from this process's environment; only for the owner's own
    file (`load_config`), never for a document that came over the network (`env_references` finds them)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with an 'mcpServers' section")
    for section in ("mcpServers", "mcp_servers"):  # the alias, or the field name (populate_by_name)
        servers = raw.get(section)
        if expand and isinstance(servers, dict):
            raw = {**raw, section: {n: _expand(s, f"{source}: {section}.{n}") for n, s in servers.items()}}
    try:
        return BastionConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_error_message(error, raw) for error in exc.errors()]
        if len(problems) == 1:
            raise ConfigError(f"{source}: {problems[0]}") from None
        listed = "".join(f"\n  - {problem}" for problem in problems)
        raise ConfigError(f"{source}: {len(problems)} problems:{listed}") from None


def load_config(path: str | Path) -> BastionConfig:
    """Read and validate a config file.

    Relative stdio `cwd`s, `sandbox` paths and arguments naming an existing file or folder resolve
    against the file's folder. A stdio server without a `cwd` gets none: it runs in its own working
    folder (`<stdio root>/<server>`), never in this file's folder, which its box would then grant (this
    file holds keys and other servers' tokens)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: editors on Windows may add a BOM
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read the configuration file (not UTF-8 text)") from None
    config = parse_config(parse_text(text, path), str(path))
    base = path.resolve().parent
    for server in config.mcp_servers.values():
        if server.command:
            if server.cwd:
                server.cwd = str((base / Path(server.cwd).expanduser()).resolve())
            else:
                server.args = [_beside(base, arg) for arg in server.args]
                if os.sep in server.command:  # `./start.sh`; a bare name is looked up on PATH
                    server.command = _beside(base, server.command)
            sandbox = server.sandbox
            sandbox.read = [str((base / Path(p).expanduser()).resolve()) for p in sandbox.read]
            sandbox.write = [str((base / Path(p).expanduser()).resolve()) for p in sandbox.write]
        if server.openapi is not None and not server.openapi.is_url:
            server.openapi.document = str((base / Path(server.openapi.document).expanduser()).resolve())
    return config


def _beside(base: Path, arg: str) -> str:
    """`arg` made absolute when it is a relative path to an existing file or folder in `base`.

    (A script beside the config file), as it named one when `base` was the server's working folder."""
    if not arg or arg.startswith("-") or "\x00" in arg or Path(arg).expanduser().is_absolute():
        return arg
    try:
        found = (base / arg).resolve()
        return str(found) if found.exists() else arg
    except (OSError, RuntimeError):  # a name too long, a loop of links: not a path
        return arg
