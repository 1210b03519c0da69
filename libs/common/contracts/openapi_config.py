"""The `openapi` section of a server entry.

A REST API, described by an OpenAPI 3.0 / 3.1 or Swagger 2.0 document, served as an MCP server
(docs/openapi.md).

    mcpServers:
      petstore:
        openapi:
          document: ./petstore.yaml          # a file (relative to the config file) or an http(s) URL
          base_url: https://petstore.example/v3   # overrides the document's `servers`
          include: {tags: [pet]}
          exclude: {methods: [delete]}
          operations:
            getPetById: {name: get_pet, description: "One pet by its id.", read_only: true}
          auth: {type: bearer, token: "${PETSTORE_TOKEN}"}

Only the shape is checked here; whether the document loads and what it turns into is the executor's
business (`services/executor/upstreams/openapi`), and `bastion config check` reports it. Secret values of `auth`
(token, key value, password, client secret) are sealed at rest like a server's `env` and `headers`
(`secret_fields`, `libs.common.runtime.sealing`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

__all__ = [
    "HTTP_METHODS",
    "OpenApiApiKey",
    "OpenApiAuth",
    "OpenApiBasic",
    "OpenApiBearer",
    "OpenApiClientCredentials",
    "OpenApiFilter",
    "OpenApiOperation",
    "OpenApiSection",
    "OpenApiUpstreamOAuth",
    "check_http_url",
]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
"""The operations a path item may hold, in the order OpenAPI lists them."""

Method = Literal["get", "put", "post", "delete", "options", "head", "patch", "trace"]
_TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_Secret = Annotated[str, Field(min_length=1, max_length=8192, repr=False)]
_MAX_DOCUMENT = 256 * 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def check_http_url(url: str, field: str) -> None:
    """`url` is http(s) with a host; the message names `field`, never the URL (it may hold a token)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{field!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"{field!r} has no host")


def _http_url(url: str, info: ValidationInfo) -> str:
    check_http_url(url, info.field_name or "url")
    return url


_HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL with a host, refused naming its field (`check_http_url`)."""


class OpenApiFilter(_Strict):
    """Which operations a filter matches.

    Within one list any entry may match; every list given must match: `{tags: [issues], methods: [get]}`
    is the GET operations tagged `issues`."""

    tags: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)
    operations: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)
    """operationIds, `*` and `?` wildcards allowed."""
    paths: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(default_factory=list)
    """Path templates as the document writes them (`/pets/{petId}`), `*` and `?` wildcards allowed
    (`/repos/*/issues*`)."""
    methods: list[Method] = Field(default_factory=list)

    @field_validator("methods", mode="before")
    @classmethod
    def _lower(cls, methods: Any) -> Any:
        return [m.lower() if isinstance(m, str) else m for m in methods] if isinstance(methods, list) else methods

    @model_validator(mode="after")
    def _not_empty(self) -> OpenApiFilter:
        if not (self.tags or self.operations or self.paths or self.methods):
            raise ValueError("a filter needs at least one of 'tags', 'operations', 'paths' or 'methods'")
        return self


class OpenApiOperation(_Strict):
    """Curation of one operation (keyed by its operationId, or `METHOD /path` when it has none)."""

    name: Annotated[str | None, Field(pattern=_TOOL_NAME)] = None
    """The tool's name instead of the one made from the operationId."""
    description: Annotated[str | None, Field(max_length=16384)] = None
    """The tool's description instead of the document's."""
    read_only: bool | None = None
    """True: the operation is safe (`readOnlyHint`, and retried like a GET); False: it is not, whatever its method."""


class OpenApiBearer(_Strict):
    """`Authorization: Bearer <token>` on every request."""

    type: Literal["bearer"]
    token: _Secret


class OpenApiApiKey(_Strict):
    """An API key in a header, a query parameter or a cookie."""

    type: Literal["api_key"]
    in_: Literal["header", "query", "cookie"] = Field(default="header", alias="in")
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
    value: _Secret


class OpenApiBasic(_Strict):
    """HTTP basic authentication."""

    type: Literal["basic"]
    username: Annotated[str, Field(min_length=1, max_length=1024, repr=False)]
    password: _Secret


class OpenApiClientCredentials(_Strict):
    """OAuth 2 client credentials (RFC 6749 section 4.4).

    The executor fetches a token, keeps it until shortly before it expires, and fetches another when the
    API refuses it."""

    type: Literal["oauth2_client_credentials"]
    token_url: _HttpUrl | None = None
    """The token endpoint; when omitted, the document's one `clientCredentials` flow names it."""
    client_id: Annotated[str, Field(min_length=1, max_length=1024)]
    client_secret: _Secret
    scopes: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list)
    audience: Annotated[str | None, Field(max_length=1024)] = None
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    """How the client authenticates at the token endpoint."""


class OpenApiUpstreamOAuth(_Strict):
    """Bastion's own OAuth client toward upstreams (docs/oauth.md).

    The API answers 401 with a Bearer challenge and publishes its protected resource metadata (RFC 9728)
    like an MCP server must; the token is the server's shared one, or each user's own with `per_user:
    true`."""

    type: Literal["oauth"]
    resource: _HttpUrl | None = None
    """The URL probed for the 401 challenge and the resource tokens are asked for (default: `base_url`)."""


OpenApiAuth = Annotated[
    OpenApiBearer | OpenApiApiKey | OpenApiBasic | OpenApiClientCredentials | OpenApiUpstreamOAuth,
    Field(discriminator="type"),
]

_SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "bearer": ("token",),
    "api_key": ("value",),
    "basic": ("password",),
    "oauth2_client_credentials": ("client_secret",),
    "oauth": (),
}


class OpenApiSection(_Strict):
    """A REST API served as an MCP server: one tool per (curated) operation of its document."""

    document: Annotated[str, Field(min_length=1, max_length=4096)]
    """The OpenAPI 3.0 / 3.1 or Swagger 2.0 document, YAML or JSON: a file path (a relative one is
    resolved against the config file's folder) or an http(s) URL. Read again whenever the executor
    (re)connects the server, and a changed file is noticed by the health check."""
    base_url: _HttpUrl | None = None
    """Where requests go, instead of the document's `servers` (needed when those are relative and the
    document is a file)."""
    include: list[OpenApiFilter] | None = None
    """Only the operations one of these filters matches become tools (all when omitted); one filter may be
    written without the list."""
    exclude: list[OpenApiFilter] | None = None
    """Operations one of these filters matches do not become tools (applied after `include`)."""
    operations: dict[Annotated[str, Field(min_length=1, max_length=1024)], OpenApiOperation] = Field(
        default_factory=dict
    )
    """Renames, new descriptions and read-only marks, by operationId (or `METHOD /path`)."""
    auth: OpenApiAuth | None = None
    output_schemas: bool = True
    """Give tools the `outputSchema` of their JSON success answer. False for an API whose answers do not
    match its document (clients check structured results against the schema)."""
    max_document_bytes: Annotated[int, Field(gt=0, le=_MAX_DOCUMENT)] = 64 * 1024 * 1024
    """The document and every file it refers to, together, are read up to this size."""

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("operations")
    @classmethod
    def _unique_names(cls, operations: dict[str, OpenApiOperation]) -> dict[str, OpenApiOperation]:
        seen: dict[str, str] = {}
        for key, operation in operations.items():
            if operation.name is not None:
                if operation.name in seen:
                    raise ValueError(f"operations {seen[operation.name]!r} and {key!r} are given the same name")
                seen[operation.name] = key
        return operations

    @model_validator(mode="after")
    def _oauth_resource(self) -> OpenApiSection:
        if isinstance(self.auth, OpenApiUpstreamOAuth) and self.auth.resource is None and self.base_url is None:
            raise ValueError("auth type 'oauth' needs 'base_url' (or 'auth.resource'): the URL Bastion's OAuth probes")
        return self

    @property
    def is_url(self) -> bool:
        return self.document.lower().startswith(("http://", "https://"))

    @property
    def oauth_resource(self) -> str | None:
        """For `auth: {type: oauth}`: the URL Bastion's upstream OAuth probes and asks tokens for."""
        if isinstance(self.auth, OpenApiUpstreamOAuth):
            return self.auth.resource or self.base_url
        return None

    def secret_values(self) -> list[str]:
        auth = self.auth
        return [getattr(auth, f) for f in _SECRET_FIELDS[auth.type]] if auth is not None else []

    def map_secrets(self, fn: Callable[[str, str], str]) -> OpenApiSection:
        """A copy with each secret of `auth` replaced by `fn(where, value)` (`where`: `auth.token`, ...)."""
        auth = self.auth
        if auth is None or not _SECRET_FIELDS[auth.type]:
            return self
        changed = {f: fn(f"auth.{f}", getattr(auth, f)) for f in _SECRET_FIELDS[auth.type]}
        return self.model_copy(update={"auth": auth.model_copy(update=changed)})
