"""URIs the gateway names after their server.

An upstream's `<scheme>://<rest>` is offered as `<scheme>://<server>/<rest>` (MCP Apps' `ui://`, Skills'
`skill://`), unique across servers (a server name is a valid URI host: `config.SERVER_NAME`) and turned
back into the upstream's URI by cutting the server off again.

The server part is the configured name exactly; nothing else in the path is interpreted, but a path
that could mean another place to a resolver (`.` or `..` segments, percent-encoded dots, slashes or
backslashes, backslashes, control characters) is refused rather than passed on. Pure.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_URI", "namespaced_uri", "split_namespaced"]

MAX_URI: Final = 2048
_SERVER: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
"""A configured server name (`config.SERVER_NAME`)."""
_UNSAFE: Final = re.compile(r"[\\\x00-\x1f\x7f]|%2e|%2f|%5c", re.IGNORECASE)


def namespaced_uri(server: str, uri: str, scheme: str) -> str:
    """`uri` of `server` as agents see it: `<scheme>://<rest>` -> `<scheme>://<server>/<rest>`.

    A URI of another scheme unchanged."""
    if not uri.startswith(scheme):
        return uri
    return f"{scheme}{server}/{uri[len(scheme) :]}"


def split_namespaced(uri: str, scheme: str) -> tuple[str, str]:
    """(server, the upstream's own URI) of a gateway `<scheme>://<server>/<rest>`.

    ValueError saying why when `uri` is not one (no server part, an empty rest, a path that could resolve
    elsewhere)."""
    if not uri.startswith(scheme) or len(uri) > MAX_URI:
        raise ValueError(f"not a gateway {scheme} URI ({scheme}<server>/<path>, at most {MAX_URI} characters)")
    server, slash, rest = uri[len(scheme) :].partition("/")
    if not slash or not rest or not _SERVER.match(server):
        raise ValueError(f"a gateway {scheme} URI names its server first: {scheme}<server>/<path>")
    path = rest.split("?", 1)[0].split("#", 1)[0]
    if _UNSAFE.search(rest) or any(segment in (".", "..") for segment in path.split("/")):
        raise ValueError(f"a {scheme} URI may hold no '.' or '..' segment, encoded dot or slash, or control character")
    return server, f"{scheme}{rest}"
