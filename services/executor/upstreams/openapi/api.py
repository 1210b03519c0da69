"""One REST API from its `openapi` configuration.

The document read and normalized, its operations curated, named and defined as tools, and everything
refused listed with where and why.

`load_api` is synchronous (the executor runs it in a worker thread; `bastion config check` calls it
directly). A problem with the document as a whole (unreadable, not OpenAPI, an unsupported version,
no usable base URL) raises `DocumentError`; a problem with one operation refuses that operation only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin

from libs.common.contracts.openapi_config import OpenApiClientCredentials, OpenApiSection
from libs.common.web.egress_rules import EgressRules

from .definitions import Binding, define
from .names import identities, tool_names
from .operations import Operation, collect, matches
from .refs import Resolver
from .schemas import Dialect, SchemaSet
from .source import DocumentError, DocumentStamp, Reader, is_url
from .swagger2 import convert

__all__ = ["Api", "Refusal", "load_api", "resolve_server"]

_VARIABLE: Final = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True, slots=True)
class Refusal:
    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


@dataclass(slots=True)
class Api:
    """What one document gives: tool definitions (in document order) and how to call each."""

    version: str
    """`2.0`, `3.0.3`, `3.1.0`...: what the document declares."""
    title: str
    base_url: str
    tools: list[dict[str, Any]] = field(default_factory=list)
    bindings: dict[str, Binding] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Tool name -> its operation's stable names (`names.identities`)."""
    refused: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was left out that is not a problem: operations curated away, webhooks, callbacks."""
    token_url: str | None = None
    """The document's OAuth 2 client credentials token endpoint, if it names exactly one."""
    read_bytes: int = 0
    operations: int = 0
    stamp: DocumentStamp | None = None
    """The root document's, when it was fetched from a URL: health checks ask whether it changed."""


def _dialect(document: Any) -> tuple[str, Dialect | None]:
    if not isinstance(document, dict):
        raise DocumentError("the document is not a mapping: not an OpenAPI document")
    if "swagger" in document:
        version = str(document["swagger"])
        if version != "2.0":
            raise DocumentError(f"Swagger {version} is not supported (Swagger 2.0, OpenAPI 3.0 and 3.1 are)")
        return version, None
    version = str(document.get("openapi", ""))
    if not version:
        raise DocumentError("the document has neither 'openapi' nor 'swagger': not an OpenAPI document")
    if version.startswith("3.0"):
        return version, "3.0"
    if version.startswith(("3.1", "3.2")):
        return version, "3.1"
    raise DocumentError(f"OpenAPI {version} is not supported (Swagger 2.0, OpenAPI 3.0 and 3.1 are)")


def resolve_server(server: Any, against: str | None, where: str) -> str:
    """A server object's URL with its variables at their defaults, made absolute against `against`."""
    if not isinstance(server, dict) or not isinstance(server.get("url"), str):
        raise DocumentError(f"{where}: a server has no 'url'")
    declared = server.get("variables")
    variables: dict[str, Any] = declared if isinstance(declared, dict) else {}

    def value(match: re.Match[str]) -> str:
        spec = variables.get(match.group(1))
        if not isinstance(spec, dict) or "default" not in spec:
            raise DocumentError(f"{where}: server variable {match.group(1)!r} has no default")
        return str(spec["default"])

    url = _VARIABLE.sub(value, server["url"])
    if is_url(url):
        return url
    if against is None:
        raise DocumentError(
            f"{where}: the server URL {url!r} is relative and the document is a file: set 'openapi.base_url'"
        )
    return urljoin(against, url)


def _base_url(section: OpenApiSection, document: dict[str, Any], location: str) -> str:
    if section.base_url is not None:
        return section.base_url
    servers = document.get("servers") or [{"url": "/"}]
    return resolve_server(servers[0], location if is_url(location) else None, "servers")


def _token_url(document: dict[str, Any], base_url: str) -> str | None:
    """The one clientCredentials token endpoint the document names (relative to the base URL, as OpenAPI says)."""
    components = document.get("components")
    schemes = components.get("securitySchemes") if isinstance(components, dict) else None
    urls = {
        flow["tokenUrl"]
        for scheme in (schemes.values() if isinstance(schemes, dict) else ())
        if isinstance(scheme, dict) and scheme.get("type") == "oauth2"
        for name, flow in (scheme.get("flows") or {}).items()
        if name == "clientCredentials" and isinstance(flow, dict) and isinstance(flow.get("tokenUrl"), str)
    }
    return urljoin(base_url + "/", urls.pop()) if len(urls) == 1 else None


def _notes(document: dict[str, Any], operations: list[Operation]) -> list[str]:
    notes = []
    webhooks = document.get("webhooks") or document.get("x-webhooks")
    if isinstance(webhooks, dict) and webhooks:
        notes.append(f"{len(webhooks)} webhook(s) ignored: they are requests the API sends, not operations")
    paths = document.get("paths")
    callbacks = sum(
        1
        for item in (paths.values() if isinstance(paths, dict) else ())
        if isinstance(item, dict)
        for spec in item.values()
        if isinstance(spec, dict) and spec.get("callbacks")
    )
    if callbacks:
        notes.append(f"{callbacks} operation(s) declare callbacks, which are ignored (the operations are served)")
    return notes


def _curated(section: OpenApiSection, operations: list[Operation]) -> tuple[list[Operation], int]:
    kept = [
        op
        for op in operations
        if (section.include is None or any(matches(op, f) for f in section.include))
        and not any(matches(op, f) for f in section.exclude or [])
    ]
    return kept, len(operations) - len(kept)


def load_api(section: OpenApiSection, *, timeout: float = 30.0, egress: EgressRules | None = None) -> Api:
    """Read, normalize and curate the API `section` describes.

    `DocumentError` when it cannot be served. A document read over HTTP is fetched within `egress` (None:
    public addresses only)."""
    reader = Reader(section.document, max_bytes=section.max_document_bytes, timeout=timeout, egress=egress)
    with reader:
        resolver = Resolver(reader)
        raw = reader.read(reader.root)
        version, dialect = _dialect(raw)
        refused: list[Refusal] = []
        if dialect is None:
            document, converted = convert(raw, reader.root, resolver.follow)
            reader.replace(reader.root, document)
            refused += [Refusal(f"{m.upper()} {p}", why) for (p, m), why in converted.items()]
            dialect = "3.0"
        else:
            document = raw
        base_url = _base_url(section, document, reader.root)
        title = str((document.get("info") or {}).get("title") or "")
        operations, skipped = collect(document, resolver)
        refused += [Refusal(where, why) for where, why in skipped]
        api = Api(version=version, title=title, base_url=base_url, refused=refused, operations=len(operations))
        api.stamp = reader.stamps.get(reader.root)
        api.notes = _notes(document, operations)
        kept, excluded = _curated(section, operations)
        if excluded:
            api.notes.append(f"{excluded} operation(s) left out by 'include' / 'exclude'")
        known = {op.operation_id for op in operations} | {op.key for op in operations}
        api.notes += [
            f"'operations' names {key!r}, which the document does not have"
            for key in section.operations
            if key not in known
        ]
        renames = {key: op.name for key, op in section.operations.items() if op.name is not None}
        schemas = SchemaSet(resolver, dialect)
        for operation, name in zip(kept, tool_names(kept, renames), strict=True):
            curated = section.operations.get(operation.operation_id or "") or section.operations.get(operation.key)
            try:
                operation.servers = [
                    resolve_server(s, base_url, f"{operation.where} servers") for s in operation.servers
                ]
                definition, binding = define(name, operation, schemas, curated, section.output_schemas)
            except DocumentError as exc:
                api.refused.append(Refusal(operation.where, str(exc)))
                continue
            api.tools.append(definition)
            api.bindings[name] = binding
            if stable := identities(operation, name):
                api.aliases[name] = stable
        if isinstance(section.auth, OpenApiClientCredentials):
            api.token_url = section.auth.token_url or _token_url(document, base_url)
            if api.token_url is None:
                raise DocumentError(
                    "auth 'oauth2_client_credentials' has no 'token_url' and the document names no single "
                    "clientCredentials flow"
                )
        api.read_bytes = reader.read_bytes
        return api
