"""Which `GatewayError` an exception becomes.

And the one-line, secret-free reason a failed connection is logged and published with. Pure, so the rules
are unit-tested directly."""

from __future__ import annotations

import asyncio
import re

import anyio
import httpx2
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED
from pydantic import ValidationError

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError

from .answer_limits import AnswerTooLarge, answer_cutoff

__all__ = [
    "InputUnanswered",
    "UpstreamUnavailable",
    "describe_exception",
    "error_from_exception",
    "scrub_urls",
]

_CLOSED_MESSAGE = "Connection closed"
"""What the SDK's dispatcher says when the transport closed under a pending request. The code alone
(-32000) is ambiguous: many servers use it for their own errors."""

_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, refused, reset, broken pipe, spawn failures, a lean call's http1.HttpClosed
    EOFError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    httpx2.TransportError,  # connect/read/write failures and HTTP-level timeouts
)


_URL = re.compile(r"(https?://)(?:[^/@\s'\"]*@)?([^\s?#'\"]*)(?:[?#][^\s'\"]*)?")


def scrub_urls(text: str) -> str:
    """Drop userinfo and query strings from URLs: API tokens often ride there."""
    return _URL.sub(r"\1\2", text)


class UpstreamUnavailable(Exception):
    """The server has no live session; the message says why (never contains secrets)."""


class InputUnanswered(Exception):
    """The server asked for input (2026-07-28 `input_required`) that the agent could not give."""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe_exception(exc: BaseException) -> str:
    """A one-line, secret-free reason for a failed connection, for logs and the catalog.

    Exception groups from anyio task groups are unwrapped to their first real cause. Messages of
    HTTP errors name the URL, never headers, so they are safe to show.
    """
    leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, asyncio.CancelledError)]
    leaf = leaves[0] if leaves else exc
    if isinstance(leaf, TimeoutError):
        return str(leaf) or "timed out"
    if isinstance(leaf, FileNotFoundError):
        return f"command not found: {leaf.filename}" if leaf.filename else "command not found"
    if isinstance(leaf, MCPError):
        return f"{leaf.message} (code {leaf.code})"
    text = scrub_urls(str(leaf).strip().splitlines()[0]) if str(leaf).strip() else ""
    name = type(leaf).__name__
    return f"{name}: {text}" if text else name


def error_from_exception(exc: BaseException, *, server: str, timeout: float) -> GatewayError:
    """Map what a `tools/call` raised to the error the agent will see."""
    if isinstance(exc, UpstreamUnavailable):
        return GatewayError(kind=ErrorKind.UPSTREAM_UNAVAILABLE, message=str(exc))
    if isinstance(exc, AnswerTooLarge):
        size = f"{exc.size:,} bytes" if exc.size is not None else f"more than {answer_cutoff(exc.limit):,} bytes"
        return GatewayError(
            kind=ErrorKind.RESULT_TOO_LARGE,
            message=(
                f"the upstream's answer is {size}, over the gateway's limit of {exc.limit:,} bytes "
                "(BASTION_MAX_RESULT_BYTES); the request did run upstream"
            ),
        )
    if isinstance(exc, InputUnanswered):
        return GatewayError(kind=ErrorKind.UPSTREAM_ERROR, message=str(exc))
    if isinstance(exc, TimeoutError):
        return GatewayError(
            kind=ErrorKind.UPSTREAM_TIMEOUT,
            message=f"server {server!r} did not answer within {timeout:.3g} seconds",
        )
    if isinstance(exc, MCPError):
        if exc.code == CONNECTION_CLOSED and exc.message == _CLOSED_MESSAGE:
            return GatewayError(
                kind=ErrorKind.UPSTREAM_UNAVAILABLE,
                message=f"server {server!r} closed the connection during the call",
            )
        # the upstream's own words may echo the arguments: the agent reads them, the audit row's
        # `error` column (readable without audit:payloads) only says what happened
        logged = f"server {server!r} answered with JSON-RPC error {exc.code}"
        return GatewayError(
            kind=ErrorKind.UPSTREAM_ERROR, message=exc.message, code=exc.code, data=exc.data, logged=logged
        )
    if isinstance(exc, ValidationError):
        return GatewayError(
            kind=ErrorKind.UPSTREAM_ERROR,
            message=f"server {server!r} sent a tools/call result that does not follow the MCP schema",
        )
    leaves = _leaves(exc)
    if leaves and all(isinstance(leaf, _UNAVAILABLE_ERRORS) for leaf in leaves):
        return GatewayError(
            kind=ErrorKind.UPSTREAM_UNAVAILABLE,
            message=f"server {server!r} is unreachable: {describe_exception(exc)}",
        )
    return GatewayError(kind=ErrorKind.INTERNAL, message=f"unexpected executor failure: {type(exc).__name__}")
