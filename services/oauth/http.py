"""HTTP over NATS: the route table of the oauth service and the answers its routes build.

Ingress forwards each OAuth request as an `HttpExchangeRequest`; `Router.dispatch` finds its route
(exact path, else the longest registered prefix: RFC 9728 / RFC 8414 metadata paths may carry the
resource path after the well-known name) and turns whatever happens into an `HttpExchangeResponse`.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse

__all__ = [
    "HttpError",
    "Route",
    "Router",
    "form_of",
    "html_page",
    "json_response",
    "query_of",
    "redirect",
]

log = logging.getLogger(__name__)

Route = Callable[[HttpExchangeRequest], Awaitable[HttpExchangeResponse]]

_NO_STORE = [("cache-control", "no-store"), ("pragma", "no-cache")]
_MAX_FIELDS = 64


class HttpError(Exception):
    """An OAuth error answered as JSON (`{"error": ..., "error_description": ...}`, RFC 6749 §5.2)."""

    def __init__(self, status: int, error: str, description: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description
        self.headers = headers or []

    def response(self) -> HttpExchangeResponse:
        return json_response({"error": self.error, "error_description": self.description}, self.status, self.headers)


def json_response(
    body: Mapping[str, Any], status: int = 200, headers: list[tuple[str, str]] | None = None
) -> HttpExchangeResponse:
    return HttpExchangeResponse(
        status=status,
        headers=[("content-type", "application/json"), *_NO_STORE, *(headers or [])],
        body=orjson.dumps(body).decode(),
    )


def redirect(location: str, params: Mapping[str, str]) -> HttpExchangeResponse:
    """302 to `location` with `params` added to its query (the location was validated by the caller)."""
    sep = "&" if "?" in location else "?"
    return HttpExchangeResponse(status=302, headers=[("location", location + sep + urlencode(params)), *_NO_STORE])


def html_page(title: str, body_html: str, status: int = 200) -> HttpExchangeResponse:
    """A minimal page; `body_html` must already be escaped. Framing is refused (clickjacking of the login form)."""
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + "</title><style>body{font-family:system-ui,sans-serif;max-width:28em;margin:4em auto}"
        "label,input,button{display:block;margin:.4em 0}</style></head><body>" + body_html + "</body></html>"
    )
    headers = [
        ("content-type", "text/html; charset=utf-8"),
        ("x-frame-options", "DENY"),
        ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
        *_NO_STORE,
    ]
    return HttpExchangeResponse(status=status, headers=headers, body=page)


def _pairs(raw: str, what: str) -> dict[str, str]:
    pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:  # RFC 6749 §3.1: parameters must not be repeated
            raise HttpError(400, "invalid_request", f"the {what} parameter {name!r} is repeated")
        out[name] = value
    return out


def query_of(request: HttpExchangeRequest) -> dict[str, str]:
    try:
        return _pairs(request.query, "query")
    except ValueError as exc:
        raise HttpError(400, "invalid_request", f"malformed query string: {exc}") from exc


def form_of(request: HttpExchangeRequest) -> dict[str, str]:
    """The body as `application/x-www-form-urlencoded` (what the token, revocation and login endpoints take)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise HttpError(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        return _pairs(request.body, "form")
    except ValueError as exc:
        raise HttpError(400, "invalid_request", f"malformed form body: {exc}") from exc


@dataclass
class Router:
    """Routes by (method, path). Modules contribute their routes with `add`; prefixes for metadata paths."""

    exact: dict[tuple[str, str], Route]
    prefixes: dict[tuple[str, str], Route]

    @classmethod
    def empty(cls) -> Router:
        return cls({}, {})

    def add(self, method: str, path: str, route: Route, *, prefix: bool = False) -> None:
        table = self.prefixes if prefix else self.exact
        if (method, path) in table:
            raise ValueError(f"route {method} {path} registered twice")
        table[(method, path)] = route

    def find(self, method: str, path: str) -> Route | None:
        route = self.exact.get((method, path))
        if route is not None:
            return route
        matches = [(p, r) for (m, p), r in self.prefixes.items() if m == method and path.startswith(p)]
        return max(matches, key=lambda match: len(match[0]))[1] if matches else None

    async def dispatch(self, request: HttpExchangeRequest) -> HttpExchangeResponse:
        route = self.find(request.method, request.path)
        if route is None:
            known = any(p == request.path for _, p in self.exact)
            if known:
                return HttpError(
                    405, "invalid_request", f"{request.method} is not allowed on {request.path}"
                ).response()
            return HttpError(404, "not_found", f"no OAuth endpoint at {request.path}").response()
        try:
            return await route(request)
        except HttpError as exc:
            return exc.response()
        except Exception:
            log.exception("oauth route %s %s failed", request.method, request.path)
            return HttpError(500, "server_error", "the authorization server failed; see its log").response()
