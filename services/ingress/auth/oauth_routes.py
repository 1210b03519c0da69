"""The OAuth routes of the gateway, forwarded to the oauth service over NATS.

Ingress owns the HTTP listener; the oauth service owns the logic and the state. Each request under
`/oauth/` or `/.well-known/oauth-*` becomes one `HttpExchangeRequest` (body capped at
`MAX_HTTP_BODY`, only the headers OAuth needs) and its `HttpExchangeResponse` is written back as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from libs.common.contracts import subjects
from libs.common.contracts.oauth import MAX_HTTP_BODY, HttpExchangeRequest, HttpExchangeResponse

__all__ = ["oauth_router"]

log = logging.getLogger(__name__)

_FORWARDED_HEADERS = ("content-type", "authorization", "accept", "cookie")
_TIMEOUT = 15.0
"""Seconds to wait for the oauth service (a login hashes a password: tens of milliseconds)."""


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        {"error": "temporarily_unavailable", "error_description": message},
        status_code=503,
        headers={"cache-control": "no-store", "retry-after": "2"},
    )


def oauth_router(nc: NATS, base_url: Callable[[], str]) -> APIRouter:
    """`base_url()`: this gateway's public scheme and authority (`BASTION_PUBLIC_URL`)."""
    router = APIRouter(include_in_schema=False)

    async def forward(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_HTTP_BODY):
            return JSONResponse(
                {"error": "invalid_request", "error_description": f"the body exceeds {MAX_HTTP_BODY} bytes"},
                status_code=413,
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_HTTP_BODY:
                return JSONResponse(
                    {"error": "invalid_request", "error_description": f"the body exceeds {MAX_HTTP_BODY} bytes"},
                    status_code=413,
                )
        try:
            text = body.decode()
        except UnicodeDecodeError:
            return JSONResponse({"error": "invalid_request", "error_description": "the body is not UTF-8"}, 400)
        exchange = HttpExchangeRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={name: request.headers[name] for name in _FORWARDED_HEADERS if name in request.headers},
            body=text,
            client_address=request.client.host if request.client else "",
            base_url=base_url(),
        )
        try:
            reply = await nc.request(subjects.OAUTH_HTTP, exchange.model_dump_json().encode(), timeout=_TIMEOUT)
        except NoRespondersError:
            return _unavailable("the oauth service is not running; retry shortly or check `bastion up`")
        except NatsTimeout:
            return _unavailable(f"the oauth service did not answer within {_TIMEOUT:g}s")
        try:
            answer = HttpExchangeResponse.model_validate_json(reply.data)
        except ValidationError:
            log.error("malformed reply from the oauth service")
            return _unavailable("the oauth service sent a malformed reply")
        response = Response(content=answer.body.encode(), status_code=answer.status)
        for name, value in answer.headers:
            response.headers.append(name, value)
        return response

    methods = ["GET", "POST"]
    router.add_api_route("/oauth/{rest:path}", forward, methods=methods)
    router.add_api_route("/.well-known/oauth-protected-resource{rest:path}", forward, methods=["GET"])
    router.add_api_route("/.well-known/oauth-authorization-server{rest:path}", forward, methods=["GET"])
    return router
