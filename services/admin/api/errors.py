"""Every failure of the admin API as one `ErrorBody`, with the right status; and the permission every
route declares.

`AdminRoute` wraps each route. Deny by default: a route that declares no permission (`needs`) is
refused when it is built, so it never answers. Before FastAPI reads the body it checks the
credential (`auth`) and the route's permission (an anonymous caller gets 401 whatever it sends, a
principal without the permission 403 naming it, and neither makes the service buffer a large body),
then maps what the layers below raise: `AdminError` as is, request validation to 422 naming the field,
`store.NotFound` to 404, `store.Conflict` to 409, NATS trouble to 503, anything else to a 500 that
says nothing about its cause (that goes to the log). Validation details lose their `input`: a
server's `env` or `headers` usually hold credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import nats.errors
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ..roles import AUTHENTICATED, PERMISSIONS, PUBLIC, Scope
from .identity import CURRENT, Identity
from .models import ErrorBody, FieldError, field_errors
from .tables import Conflict, NotFound

if TYPE_CHECKING:
    from .auth import Authenticator

__all__ = [
    "MAX_BODY_BYTES",
    "PERMISSION_KEY",
    "AdminError",
    "AdminRoute",
    "bound_route",
    "documented",
    "forbidden",
    "invalid",
    "needs",
    "permission_of",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
PERMISSION_KEY = "x-bastion-permission"
"""Where a route declares its permission: its OpenAPI operation (`/docs` shows it on every route)."""


class AdminError(Exception):
    """An answer other than success: HTTP status, machine code, one human line, fields at fault."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        detail: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        permission: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.detail, self.headers = status, error, message, detail, headers
        self.permission = permission


def forbidden(identity: Identity, permission: str, scope: Scope | None = None) -> AdminError:
    """403 naming the permission (and the team or customer) the principal lacks."""
    where = f" for {scope}" if scope is not None else ""
    return AdminError(
        403,
        "forbidden",
        f"{identity.principal} ({identity.role_label}) lacks the permission {permission!r}{where}",
        permission=permission,
    )


def needs(permission: str) -> dict[str, Any]:
    """A route's declaration (`openapi_extra=needs("keys:write")`): the permission it requires, or
    `roles.PUBLIC` / `roles.AUTHENTICATED`. A name that is neither fails when the app is built."""
    if permission not in PERMISSIONS and permission not in (PUBLIC, AUTHENTICATED):
        raise ValueError(f"{permission!r} is not a permission (libs: services/admin/roles.py PERMISSIONS)")
    return {PERMISSION_KEY: permission}


def permission_of(route: object) -> str | None:
    """What a route declared, or None (a route that is not an admin route, or declared nothing)."""
    return getattr(route, "permission", None)


def _response(exc: AdminError) -> JSONResponse:
    body = ErrorBody(error=exc.error, message=exc.message, detail=exc.detail, permission=exc.permission)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=exc.status, headers=exc.headers)


def _path(loc: list[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def invalid(detail: list[FieldError], error: str = "validation_error") -> AdminError:
    """A 422 whose message names the first field at fault (and counts the others)."""
    first = detail[0]
    more = f" (and {len(detail) - 1} more problem(s))" if len(detail) > 1 else ""
    return AdminError(422, error, f"{_path(first.loc)}: {first.msg}{more}", detail)


def _content_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        raise AdminError(400, "bad_request", "malformed Content-Length header") from None


class AdminRoute(APIRoute):
    """Route class of the admin routers; `bound_route` subclasses it with the `auth` to use."""

    auth: Authenticator

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        permission = (self.openapi_extra or {}).get(PERMISSION_KEY)
        if not isinstance(permission, str):
            methods = ",".join(sorted(self.methods or ()))
            raise ValueError(f"{methods} {path} declares no permission (openapi_extra=needs(...)): deny by default")
        self.permission: str = permission

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            token = None
            try:
                if self.permission != PUBLIC:
                    identity = await self.auth.identify(request)
                    if self.permission != AUTHENTICATED and not identity.grants.allows(self.permission):
                        raise forbidden(identity, self.permission)
                    token = CURRENT.set(identity)
                if _content_length(request) > MAX_BODY_BYTES:
                    raise AdminError(413, "too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes")
                return await handler(request)
            except AdminError as exc:
                return _response(exc)
            except RequestValidationError as exc:
                return _response(invalid(field_errors(exc.errors())))
            except NotFound as exc:
                return _response(AdminError(404, "not_found", str(exc)))
            except Conflict as exc:
                return _response(AdminError(409, "conflict", str(exc)))
            except HTTPException as exc:  # FastAPI's own, e.g. 400 for a body that is not UTF-8
                code = "bad_request" if exc.status_code == 400 else "http_error"
                return _response(AdminError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})))
            except (nats.errors.Error, TimeoutError, ConnectionError) as exc:
                log.warning("admin API: NATS unavailable (%s)", type(exc).__name__)
                unavailable = "the configuration store (NATS) is not reachable; retry shortly"
                return _response(AdminError(503, "store_unavailable", unavailable))
            except Exception:
                log.exception("admin API: unexpected error on %s %s", request.method, request.url.path)
                return _response(AdminError(500, "internal", "internal error; see the admin service's log"))
            finally:
                if token is not None:
                    CURRENT.reset(token)

        return guarded


def bound_route(auth: Authenticator) -> type[AdminRoute]:
    """`AdminRoute` checking credentials with `auth` (a router's `route_class`)."""
    return type("BoundAdminRoute", (AdminRoute,), {"auth": auth})


_DESCRIPTIONS = {
    401: "No credential, or not a valid one (unknown, expired or revoked token; ended session)",
    403: "The principal lacks the route's permission (named in `permission`), or a virtual key was sent",
    404: "No such record",
    409: "Already exists, or changed since it was read (stale `If-Match` or a concurrent write)",
    422: "Invalid request: the message and `detail` name the field",
    503: "NATS, or the service this route asks, unreachable",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}
