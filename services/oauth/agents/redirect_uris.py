"""Which redirect URIs a client may register, whichever way it registers.

(Dynamically, by a metadata document, or preregistered in the configuration): absolute, no fragment, and
either https, http on a loopback address (native apps, RFC 8252 §7.3), or a private-use scheme
(`cursor://...`, RFC 8252 §7.1).
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["LOOPBACK", "redirect_uri_problem"]

_MAX_URI = 2000
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def redirect_uri_problem(uri: str) -> str | None:
    """Why `uri` may not be registered as a redirect URI, or None."""
    if len(uri) > _MAX_URI:
        return f"a redirect URI may have at most {_MAX_URI} characters"
    try:
        parts = urlsplit(uri)
    except ValueError:
        return f"{uri!r} is not a URI"
    if not parts.scheme or parts.fragment or "#" in uri:
        return f"{uri!r} must be absolute and carry no fragment"
    scheme = parts.scheme.lower()
    if scheme == "https":
        return None if parts.hostname else f"{uri!r} has no host"
    if scheme == "http":
        if parts.hostname in LOOPBACK:
            return None
        return f"{uri!r}: plain http is allowed only for loopback addresses (127.0.0.1, localhost, [::1])"
    if scheme in {"javascript", "data", "file", "vbscript", "about", "blob"}:
        return f"{uri!r}: the {scheme!r} scheme cannot be a redirect URI"
    return None  # a private-use scheme of a native app
