"""The playground's MCP App frames.

An app's HTML (a `ui://` resource read through the gateway as the key) is handed to the browser as a
document of its own, `GET /console/app-frame/<ticket>`, never inline in the console: a `srcdoc` or
`blob:` frame inherits the console's own policy (scripts of this origin only), which would stop the
app's scripts, and loosening the console's policy for them is not an option. The frame's document
gets the policy the app declared (`_meta.ui.csp`, as the ext-apps spec maps it: nothing the app
did not name, no network at all when it named none) and a CSP `sandbox allow-scripts`, so even opened
on its own it runs in an opaque origin, never as the console. The console frames it with
`sandbox="allow-scripts"` as well.

A ticket is 32 random bytes, served once and within `FRAME_SECONDS`; at most `MAX_FRAMES` wait,
the oldest going first. Held in this process's memory: the admin service is one process.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import OrderedDict
from typing import Any, Final

from starlette.responses import Response

__all__ = ["FRAME_SECONDS", "MAX_APP_BYTES", "MAX_FRAMES", "AppFrames", "app_policy", "frame_response"]

MAX_FRAMES: Final = 32
FRAME_SECONDS: Final = 120.0
MAX_APP_BYTES: Final = 2 * 1024 * 1024
"""The largest app HTML the playground renders."""
_MAX_SOURCES: Final = 32
_ORIGIN: Final = re.compile(r"(?:https|wss|http|ws)://(?:\*\.)?[A-Za-z0-9.-]+(?::\d{1,5})?")
"""An origin an app may name: a scheme, a host (a leading `*.` allowed), a port. Nothing that could
end a directive (`;`, `,`, spaces, quotes) or widen it to everything (`*`, a keyword)."""


def _sources(declared: Any, *fixed: str) -> str:
    """The source list of one directive: `fixed` and the valid origins of `declared`, else `'none'`."""
    named = declared if isinstance(declared, list) else []
    origins = [o for o in named[:_MAX_SOURCES] if isinstance(o, str) and _ORIGIN.fullmatch(o)]
    return " ".join([*fixed, *dict.fromkeys(origins)]) or "'none'"


def app_policy(csp: Any) -> str:
    """The Content-Security-Policy of an app's frame, from its `_meta.ui.csp` (ext-apps' mapping).

    `resourceDomains` feed scripts, styles, images, fonts and media; `connectDomains` the network;
    `frameDomains` nested frames; `baseUriDomains` `<base>`. Inline scripts and styles run (an app is
    one HTML document). No `'self'`: the frame's URL is the admin service, which is no app's."""
    declared = csp if isinstance(csp, dict) else {}
    resources = declared.get("resourceDomains")
    inline = "'unsafe-inline'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {_sources(resources, inline)}",
            f"style-src {_sources(resources, inline)}",
            f"img-src {_sources(resources, 'data:')}",
            f"font-src {_sources(resources, 'data:')}",
            f"media-src {_sources(resources, 'data:')}",
            f"connect-src {_sources(declared.get('connectDomains'))}",
            f"frame-src {_sources(declared.get('frameDomains'))}",
            f"base-uri {_sources(declared.get('baseUriDomains'))}",
            "form-action 'none'",
            "object-src 'none'",
            "frame-ancestors 'self'",
            "sandbox allow-scripts",
        ]
    )


class AppFrames:
    """App documents waiting for their frame to load them, each under a one-time ticket."""

    def __init__(self) -> None:
        self._waiting: OrderedDict[str, tuple[float, str, str]] = OrderedDict()

    def put(self, html: str, csp: Any) -> str:
        """Keep `html` with the policy its `csp` declares; the ticket its frame loads it by."""
        now = time.monotonic()
        for ticket, (since, _, _) in list(self._waiting.items()):
            if now - since > FRAME_SECONDS or len(self._waiting) >= MAX_FRAMES:
                del self._waiting[ticket]
        ticket = secrets.token_urlsafe(32)
        self._waiting[ticket] = (now, html, app_policy(csp))
        return ticket

    def take(self, ticket: str) -> tuple[str, str] | None:
        """The HTML and policy under `ticket`, once; None when unknown, served already or too old."""
        found = self._waiting.pop(ticket, None)
        if found is None or time.monotonic() - found[0] > FRAME_SECONDS:
            return None
        return found[1], found[2]


def frame_response(frames: AppFrames, ticket: str) -> Response:
    """The app's document under its own policy, or 404 (an unknown, used or stale ticket)."""
    found = frames.take(ticket)
    if found is None:
        return Response("no such app frame", status_code=404, media_type="text/plain")
    html, policy = found
    headers = {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)
