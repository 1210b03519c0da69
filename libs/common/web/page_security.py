"""The security headers of the web pages Bastion's services serve.

(The admin service's console, dashboard, API reference, start and sign-in pages; the gateway's landing
page).

Every response gets them (`PageSecurity`, an ASGI middleware): a Content-Security-Policy that runs
scripts from the service's own origin only, no plugin, no `<base>`, no framing by any page
(`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for browsers that predate it), no MIME
sniffing and no `Referer` leaving the page. A page with inline scripts sets its own policy
(`page_headers(page)`), which allows exactly those scripts by their sha256, computed once from the
page as the service ships it, never from a response: a script injected into a response would not
match. Inline styles stay allowed (the pages' own `style` attributes); they run no code.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "PageSecurity", "content_security_policy", "inline_scripts", "page_headers"]

CSP: Final = "Content-Security-Policy"
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.S | re.I)


def inline_scripts(page: str) -> list[str]:
    """The text of every inline `<script>` of `page` (an import map too: a browser checks it as one)."""
    return _INLINE_SCRIPT.findall(page)


def _sha256(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


def content_security_policy(page: str = "") -> str:
    """The policy for `page`: its inline scripts by hash (none: scripts from this origin only)."""
    scripts = " ".join(["'self'", *dict.fromkeys(_sha256(s) for s in inline_scripts(page))])
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


def page_headers(page: str = "") -> dict[str, str]:
    """Every header a page is served with; its policy allows the page's own inline scripts."""
    return {
        CSP: content_security_policy(page),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


_DEFAULTS: Final[Mapping[str, str]] = page_headers()


class PageSecurity:
    """Adds `page_headers()` to every HTTP response that does not set its own.

    (A page with inline scripts sets its policy itself), so a page added later cannot be served without
    them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _DEFAULTS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
