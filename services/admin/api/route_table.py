"""How an admin route module declares its routes.

One table of `Route(method, path, permission, handler)`, put on a router by `register`.

A handler is a plain module-level function whose first parameter is what the module's handlers share
(the store, a NATS client, ...): `register` binds it, so FastAPI sees the remaining parameters only.
Every route declares its permission in the table (`errors.needs` refuses a name that is not one,
and `admin_route.AdminRoute` a route that declares none), so a reader sees who may call what in one
place.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from fastapi import APIRouter

from .errors import documented, needs

__all__ = ["Route", "register"]


class Route(NamedTuple):
    method: str
    path: str
    permission: str
    """`errors.needs`: a permission, or `roles.PUBLIC` / `roles.AUTHENTICATED`."""
    handler: Callable[..., Any]
    status: int | None = None
    """The success status, where not 200."""
    errors: tuple[int, ...] = ()
    """The error statuses the route documents beyond the router's own (401, 403, 503)."""
    name: str | None = None
    """The operation's name, where not the handler's."""
    summary: str | None = None
    body: Any = None
    """The request model of the handler's `body` parameter, where the handler serves several models."""
    answer: Any = None
    """The response model, where the handler's return annotation does not name it."""


def register(router: APIRouter, table: Iterable[Route], tag: str, shared: object) -> None:
    """Put every route of `table` on `router` under `tag`, each handler bound to `shared`."""
    for route in table:
        options: dict[str, Any] = {}
        if route.answer is not None:
            options["response_model"] = route.answer
        router.add_api_route(
            route.path,
            _bound(route.handler, shared, route.body),
            methods=[route.method],
            status_code=route.status,
            tags=[tag],
            name=route.name,
            summary=route.summary,
            responses=documented(*route.errors),
            openapi_extra=needs(route.permission),
            **options,
        )


def _bound(handler: Callable[..., Any], shared: object, body: Any) -> Callable[..., Any]:
    """`handler` with its first argument given; FastAPI reads the signature of what is left."""
    signature = inspect.signature(handler)
    parameters = list(signature.parameters.values())[1:]
    if body is not None:
        parameters = [p.replace(annotation=body) if p.name == "body" else p for p in parameters]

    @functools.wraps(handler)
    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        return await handler(shared, *args, **kwargs)

    endpoint.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]  # read by inspect.signature
    return endpoint
