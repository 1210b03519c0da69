"""Every route the admin app serves, flattened out of its included routers.

FastAPI keeps an included router as one entry of `app.routes` (`_IncludedRouter`, its routes behind
`original_router`); the API index, the documentation and the role x route test need the routes
themselves. The admin service includes its routers without an extra prefix (their own prefix is in
each route's path), which `flat_routes` checks, so a path here is the path that answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from starlette.routing import BaseRoute

__all__ = ["flat_routes"]


def flat_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is None:
            yield route
            continue
        extra = getattr(getattr(route, "include_context", None), "prefix", "")
        if extra:
            raise ValueError(f"a router included with the prefix {extra!r}: give the router its own prefix instead")
        yield from flat_routes(included.routes)
