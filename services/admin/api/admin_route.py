"""The route class of every admin router.

Deny by default, credential and permission checked before the body is read, and every failure answered as
one `ErrorBody`.

A route that declares no permission (`errors.needs`) is refused when it is built, so it never
answers. Before FastAPI reads the body `AdminRoute` checks the credential (`auth`) and the route's
permission (an anonymous caller gets 401 whatever it sends, a principal without the permission 403
naming it, and neither makes the service buffer a large body), then maps what the layers below
raise: `AdminError` as is, request validation to 422 naming the field, `store.NotFound` to 404,
`store.Conflict` to 409, NATS trouble to 503, anything else to a 500 that says nothing about its
cause (that goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import nats.errors
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ..roles import AUTHENTICATED, PUBLIC
from .auth import Authenticator
from .errors import PERMISSION_KEY, AdminError, documented, forbidden, invalid
from .identity import CURRENT, Identity
from .models import ErrorBody, field_errors
from .tables import Conflict, NotFound

__all__ = ["MAX_BODY_BYTES", "AdminRoute", "bound_route", "error_response"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


def error_response(exc: AdminError) -> JSONResponse:
    """`exc` as the `ErrorBody` answer every admin error is (`app` answers the router's own refusals with it too)."""
    body = ErrorBody(error=exc.error, message=exc.message, detail=exc.detail, permission=exc.permission)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=exc.status, headers=exc.headers)


def _content_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        raise AdminError(400, "bad_request", "malformed Content-Length header") from None


class AdminRoute(APIRoute):
    """Route class of the admin routers; `bound_route` subclasses it with the `auth` to use."""

    auth: Authenticator

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        responses = kwargs.get("responses") or {}
        if "{" in path and 404 not in responses:
            # the router answers 404 before the route runs for a path its pattern cannot hold (a line
            # break in a `{name:path}`, a `/` sent as `%2F` in any other parameter: `app._unrouted`), so
            # every operation with a path parameter documents it, an upsert or a lookup by name alike
            kwargs["responses"] = {**responses, **documented(404)}
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
            identity: Identity | None = None
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
                if exc.status == 403 and identity is not None:  # the route's or a handler's (servers:command)
                    self.auth.forbidden(identity, request.method, request.url.path, exc.permission, exc.message)
                return error_response(exc)
            except RequestValidationError as exc:
                return error_response(invalid(field_errors(exc.errors())))
            except NotFound as exc:
                return error_response(AdminError(404, "not_found", str(exc)))
            except Conflict as exc:
                return error_response(AdminError(409, "conflict", str(exc)))
            except HTTPException as exc:  # FastAPI's own, e.g. 400 for a body that is not UTF-8
                code = "bad_request" if exc.status_code == 400 else "http_error"
                headers = dict(exc.headers or {})
                return error_response(AdminError(exc.status_code, code, str(exc.detail), headers=headers))
            except (nats.errors.Error, TimeoutError, ConnectionError) as exc:
                log.warning("admin API: NATS unavailable (%s)", type(exc).__name__)
                unavailable = "the configuration store (NATS) is not reachable; retry shortly"
                return error_response(AdminError(503, "store_unavailable", unavailable))
            except Exception:
                log.exception("admin API: unexpected error on %s %s", request.method, request.url.path)
                return error_response(AdminError(500, "internal", "internal error; see the admin service's log"))
            finally:
                if token is not None:
                    CURRENT.reset(token)

        return guarded


def bound_route(auth: Authenticator) -> type[AdminRoute]:
    """`AdminRoute` checking credentials with `auth` (a router's `route_class`)."""
    return type("BoundAdminRoute", (AdminRoute,), {"auth": auth})
