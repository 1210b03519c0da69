"""How the `bastion` admin commands reach the admin API: where it is, with which token, over HTTP.

URL and token come from the flags, else `BASTION_ADMIN_URL` / `BASTION_ADMIN_TOKEN`, else the running
stack's `stack.json` (written by `bastion up`, mode 0600). The stack's token is only ever sent to the
stack's own URL, so pointing `--admin-url` elsewhere cannot leak it. Every failure becomes one
`AdminFailure` whose message is a single line fit for a terminal and whose `exit_code` is 2 when the
caller must change what they typed (missing settings, invalid input) and 1 otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stackfile import STACK_FILE, read_stack, running_stack
from .summary import safe_url

__all__ = ["API_PREFIX", "AdminClient", "AdminFailure", "AdminTarget", "find_admin"]

API_PREFIX = "/admin/v1"


class AdminFailure(Exception):
    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code, self.status = exit_code, status


@dataclass(frozen=True)
class AdminTarget:
    url: str
    """The API root, ending in /admin/v1."""
    token: str
    source: str
    """Where the settings came from, for error messages."""


def api_root(url: str) -> str:
    """`http://host:port` or `http://host:port/admin/v1` (trailing / allowed) -> the API root."""
    url = url.strip().rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


def find_admin(
    url_flag: str | None, token_flag: str | None, data_dir: Path, environ: dict[str, str] | None = None
) -> AdminTarget:
    """The admin API to talk to; `AdminFailure` (exit code 2) saying what to do when unknown."""
    environ = dict(os.environ) if environ is None else environ
    url = url_flag or environ.get("BASTION_ADMIN_URL") or None
    token = token_flag or environ.get("BASTION_ADMIN_TOKEN") or None
    source = "--admin-url" if url_flag else "BASTION_ADMIN_URL" if url else None
    if url is None or token is None:
        stack = running_stack(data_dir)
        stack_url = stack.get("admin_url") if stack else None
        if url is None:
            if not isinstance(stack_url, str) or not stack_url:
                raise AdminFailure(_no_stack(data_dir), 2)
            url, source = stack_url, str(data_dir / STACK_FILE)
        if token is None and isinstance(stack_url, str) and api_root(stack_url) == api_root(url):
            token = stack.get("admin_token") if stack else None
        if not token:
            raise AdminFailure(
                f"no admin token for {safe_url(api_root(url))}: pass --admin-token or set BASTION_ADMIN_TOKEN", 2
            )
    return AdminTarget(api_root(url), str(token), source or "")


def _no_stack(data_dir: Path) -> str:
    info = read_stack(data_dir)
    if info is None:
        why = f"no running stack found ({data_dir / STACK_FILE} does not exist)"
    elif running_stack(data_dir) is None:
        why = f"{data_dir / STACK_FILE} is stale (pid {info.get('pid')} is not running)"
    else:
        why = f"{data_dir / STACK_FILE} has no admin_url (a stack started by an older bastion)"
    return f"{why}: start one with `bastion up`, or pass --admin-url/--admin-token (BASTION_ADMIN_URL/_TOKEN)"


class AdminClient:
    """Thin synchronous client: JSON in, JSON out, `AdminFailure` for anything else."""

    def __init__(self, target: AdminTarget, timeout: float = 15.0) -> None:
        import httpx  # only the admin commands pay for it

        self.target = target
        self._httpx = httpx
        self._http = httpx.Client(
            base_url=target.url, headers={"Authorization": f"Bearer {target.token}"}, timeout=timeout
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body, params=params)
        except self._httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise AdminFailure(f"cannot reach the admin API at {safe_url(self.target.url)}: {reason}") from None
        if response.status_code >= 400:
            raise AdminFailure(_message(response), 2 if response.status_code == 422 else 1, response.status_code)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params or None)


def _message(response: Any) -> str:
    """One line from an error answer: the API's own `message`, else the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):  # a route that does not exist
        text = body["detail"]
    else:
        text = response.reason_phrase or "error"
    hint = " (is this the right --admin-token?)" if response.status_code == 401 else ""
    return f"{' '.join(text.split())} [HTTP {response.status_code}]{hint}"
