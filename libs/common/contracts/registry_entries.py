"""A server found in an MCP Registry (its `server.json`, docs/registry.md) turned into an `mcpServers` entry.

One of its `remotes` into a remote entry (`url`, `headers`), or one of its `packages` into a stdio entry
that runs the package at its published version (`npx -y pkg@1.2.3`, `uvx pkg==1.2.3`, `docker run -i --rm
image:tag`, `dnx pkg@1.2.3`).

What the document declares as inputs (environment variables, headers, arguments, URL variables) is
filled from the values a person gives, else the input's fixed `value` or its `default`; a required
input left without one is refused, all such inputs named at once, so the person can give them and
try again. A value is given by the input's name (an environment variable's or header's name, a
flag, a URL variable) or by its `valueHint` (what a positional argument is known by, and what many
documents also give a flag or a variable); a value naming no input of the chosen remote or package
is refused with the names it accepts, never dropped while the default runs.

The entry remembers where it came from (`RegistryOrigin`): the registry, the server's name and the
version it is pinned at, so a newer version can be offered as an update to approve.

Secrets stay where Bastion seals them: environment variables and headers. A secret input that would
land on a command line (an argument) is refused rather than stored in plain text.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OFFICIAL_REGISTRY", "ImportRefused", "RegistryOrigin", "choices_of", "entry_for"]

OFFICIAL_REGISTRY: Final = "https://registry.modelcontextprotocol.io"

_RUNTIMES: Final = {"npm": "npx", "pypi": "uvx", "oci": "docker", "nuget": "dnx"}
"""The runtime a package type runs with when its document names no `runtimeHint`."""
_KNOWN_RUNTIMES: Final = frozenset({"npx", "uvx", "docker", "podman", "dnx", "bunx", "pnpx"})
"""The runtimes a `runtimeHint` may name: package runners. A registry's document is someone else's
text, so `sh` with `runtimeArguments` of `-c ...` would otherwise be any command at all."""
_REMOTE_TYPES: Final = {"streamable-http": "http", "sse": "sse"}
_VARIABLE = re.compile(r"\{([A-Za-z0-9_.-]+)\}")


class RegistryOrigin(BaseModel):
    """Where an imported server came from, and the version its entry is pinned at."""

    model_config = ConfigDict(extra="forbid")

    registry: str
    """The configured registry's name (`registries` in the configuration)."""
    server: str
    """The server's name in the registry (`io.github.user/weather`)."""
    version: str
    """The version the entry runs; a newer one in the registry is an update a person approves."""
    choice: str = ""
    """Which way of running it was taken: `remote:<n>` or `package:<n>` of the document."""
    inputs: dict[str, str] = Field(default_factory=dict)
    """The non-secret values given for its arguments and URL variables (env and headers are in the
    entry itself), given again when the entry moves to a newer version."""


class ImportRefused(ValueError):
    """A document that cannot become an entry as asked; the message says what to give or choose."""


def choices_of(detail: dict[str, Any]) -> list[str]:
    """The ways `detail` can run through Bastion, best first: its remotes, then its stdio packages."""
    remotes = [f"remote:{n}" for n, r in enumerate(_list(detail, "remotes")) if r.get("type") in _REMOTE_TYPES]
    packages = [
        f"package:{n}"
        for n, p in enumerate(_list(detail, "packages"))
        if (p.get("transport") or {}).get("type", "stdio") == "stdio"
    ]
    return remotes + packages


def entry_for(
    detail: dict[str, Any],
    values: dict[str, str],
    choice: str | None = None,
    carried: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str, dict[str, str]]:
    """The `mcpServers` entry for `detail` (a `server.json`) run the way `choice` names.

    (Default: the first of `choices_of`), with `values` for its inputs (each must name one), else
    `carried` (the values an entry moving to a newer version had: those its new version no longer asks
    for are left out); with the choice taken and the non-secret argument values to remember.
    `ImportRefused` says what is missing, unknown or not possible."""
    available = choices_of(detail)
    if not available:
        kinds = sorted({str((p.get("transport") or {}).get("type")) for p in _list(detail, "packages")})
        raise ImportRefused(
            f"{detail.get('name')!r} has no remote and no stdio package Bastion can run"
            + (f" (its packages' transports: {', '.join(kinds)})" if kinds else "")
        )
    chosen = choice or available[0]
    if chosen not in available:
        raise ImportRefused(f"{detail.get('name')!r} has no {chosen!r}; choose one of: {', '.join(available)}")
    inputs = _Inputs(values, carried or {})
    kind, _, index = chosen.partition(":")
    if kind == "remote":
        entry = _remote_entry(_list(detail, "remotes")[int(index)], inputs)
    else:
        entry = _package_entry(_list(detail, "packages")[int(index)], str(detail.get("version", "")), inputs)
    inputs.check()
    return entry, chosen, inputs.kept


def _list(detail: dict[str, Any], field: str) -> list[dict[str, Any]]:
    items = detail.get(field) or []
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


class _Inputs:
    """The values given, what is still missing, and the non-secret argument values to remember."""

    def __init__(self, values: dict[str, str], carried: dict[str, str]) -> None:
        self.values = values
        self.carried = carried
        self.accepted: dict[str, list[str]] = {}
        """Each input a person may give, by its key: every name that gives it (name, valueHint)."""
        self.missing: list[str] = []
        self.refused: list[str] = []
        self.kept: dict[str, str] = {}

    def resolve(self, spec: dict[str, Any], key: str, *, on_command_line: bool = False) -> str | None:
        """The value of the input `spec` known by `key` (or its `valueHint`).

        A fixed `value` (its `{variables}` filled), else the one given, else its `default`; None for an
        optional input left out."""
        fixed = spec.get("value")
        if isinstance(fixed, str):
            found = spec.get("variables")
            variables: dict[str, Any] = found if isinstance(found, dict) else {}
            return _VARIABLE.sub(lambda m: self._variable(m.group(1), variables, on_command_line, m.group(0)), fixed)
        value = self._given(spec, key)
        if value is None:
            value = spec.get("default") if isinstance(spec.get("default"), str) else None
        elif on_command_line:
            if spec.get("isSecret"):
                self.refused.append(key)
            self.kept[key] = value
        if value is None and spec.get("isRequired"):
            self.missing.append(key + (" (secret)" if spec.get("isSecret") else ""))
        choices = spec.get("choices")
        if value is not None and isinstance(choices, list) and choices and value not in choices:
            self.refused.append(f"{key} (one of: {', '.join(map(str, choices))})")
        return value

    def _given(self, spec: dict[str, Any], key: str) -> str | None:
        hint = spec.get("valueHint")
        names = list(dict.fromkeys(n for n in (key, hint) if isinstance(n, str) and n))
        if names:
            self.accepted[key or names[0]] = names
        given = {self.values[name] for name in names if name in self.values}
        if len(given) > 1:
            self.refused.append(f"{' and '.join(names)} (two values for one input)")
        if given:
            return given.pop()
        return next((self.carried[name] for name in names if name in self.carried), None)

    def _variable(self, name: str, variables: dict[str, Any], on_command_line: bool, literal: str) -> str:
        spec = variables.get(name)
        if not isinstance(spec, dict):
            return literal  # the format's rule: an unknown `{name}` stays as written
        return self.resolve(spec, name, on_command_line=on_command_line) or ""

    def check(self) -> None:
        known = {name for names in self.accepted.values() for name in names}
        unknown = sorted(name for name in self.values if name not in known)
        if unknown:
            accepted = ", ".join(" or ".join(names) for names in self.accepted.values()) or "none"
            raise ImportRefused(f"no input is named {', '.join(unknown)}; the inputs it takes: {accepted}")
        if self.refused:
            raise ImportRefused(
                "refused: "
                + ", ".join(self.refused)
                + " (a secret cannot go on a command line: Bastion seals env and header values only;"
                " a value with choices must be one of them; one input takes one value)"
            )
        if self.missing:
            raise ImportRefused(f"give a value for: {', '.join(self.missing)}")


def _remote_entry(remote: dict[str, Any], inputs: _Inputs) -> dict[str, Any]:
    url = inputs.resolve({"value": remote.get("url", ""), "variables": remote.get("variables") or {}}, "url")
    headers = _pairs(remote.get("headers"), inputs)
    return {"type": _REMOTE_TYPES[remote["type"]], "url": url or "", "headers": headers}


def _pairs(specs: Any, inputs: _Inputs) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for spec in specs if isinstance(specs, list) else []:
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            value = inputs.resolve(spec, spec["name"])
            if value is not None:
                pairs[spec["name"]] = value
    return pairs


def _arguments(specs: Any, inputs: _Inputs) -> list[str]:
    argv: list[str] = []
    for spec in specs if isinstance(specs, list) else []:
        if not isinstance(spec, dict):
            continue
        named = spec.get("type") == "named"
        key = str(spec.get("name") if named else spec.get("valueHint") or spec.get("value") or "")
        value = inputs.resolve(spec, key, on_command_line=True)
        if named and ("value" in spec or value is not None):
            argv += [key, value] if value else [key]
        elif not named and value is not None:
            argv.append(value)
    return argv


def _package_entry(package: dict[str, Any], server_version: str, inputs: _Inputs) -> dict[str, Any]:
    kind = str(package.get("registryType", ""))
    runtime = str(package.get("runtimeHint") or _RUNTIMES.get(kind, ""))
    if not runtime:
        raise ImportRefused(f"a {kind!r} package names no runtime (runtimeHint) Bastion could run it with")
    if runtime not in _KNOWN_RUNTIMES:
        known = ", ".join(sorted(_KNOWN_RUNTIMES))
        raise ImportRefused(f"runtimeHint {runtime!r} is not a package runner Bastion runs (known: {known})")
    identifier = str(package.get("identifier", ""))
    version = str(package.get("version") or ("" if kind == "oci" else server_version))
    env = _pairs(package.get("environmentVariables"), inputs)
    runtime_args = _arguments(package.get("runtimeArguments"), inputs)
    package_args = _arguments(package.get("packageArguments"), inputs)
    if runtime in ("docker", "podman"):
        # the image reads the entry's env only through `-e NAME` (the value stays in the env: sealed)
        passed = [part for name in env for part in ("-e", name)]
        args = ["run", "-i", "--rm", *runtime_args, *passed, identifier, *package_args]
    elif runtime == "uvx":
        args = [*runtime_args, f"{identifier}=={version}" if version else identifier, *package_args]
    elif runtime == "dnx":
        spec = f"{identifier}@{version}" if version else identifier
        args = [*runtime_args, spec, "--yes", *(["--", *package_args] if package_args else [])]
    else:  # npx and anything named by runtimeHint: `<runtime> <spec> <args>`
        spec = f"{identifier}@{version}" if version else identifier
        args = [*runtime_args, *(["-y"] if runtime == "npx" else []), spec, *package_args]
    return {"command": runtime, "args": args, "env": env}
