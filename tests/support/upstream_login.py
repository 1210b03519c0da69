"""Drive the OAuth-protected test upstream (`tests/support/oauth_upstream.py`) from tests: start it,
and play the browser of the authorization step (open the authorization URL, log in, follow the
redirect back) with plain HTTP requests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2

from libs.common.web.guarded_http import shared_tls
from tests.support.gateway import Gateway, running_oauth_gateway
from tests.support.processes import serving_process

__all__ = [
    "callback_params",
    "follow_authorization_link",
    "gateway_for_oauth_upstreams",
    "log_in",
    "running_oauth_upstream",
]


@contextmanager
def running_oauth_upstream(host: str = "127.0.0.1") -> Iterator[str]:
    """The upstream's base URL (`/mcp` streamable HTTP, `/sse` SSE, the AS at the root), under `host`
    (a name resolving to 127.0.0.1: every URL it names uses it)."""
    root = str(Path(__file__).resolve().parents[2])
    command = [sys.executable, "-m", "tests.support.oauth_upstream", "--host", host, "--port", "0"]
    with serving_process(command, "the OAuth upstream", cwd=root) as url:
        yield url


async def log_in(http: httpx2.AsyncClient, authorization_url: str, username: str) -> str:
    """Open the upstream's login form, approve as `username`; returns where it redirects (the
    client's callback URL with `code` and `state`)."""
    form = await http.get(authorization_url)
    assert form.status_code == 200, form.text
    params = dict(parse_qs(urlsplit(authorization_url).query, keep_blank_values=True))
    data = {k: v[0] for k, v in params.items()} | {"username": username}
    approved = await http.post(authorization_url.split("?")[0], data=data, follow_redirects=False)
    assert approved.status_code == 302, approved.text
    return approved.headers["location"]


def callback_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def follow_authorization_link(link: str, public: str, upstream_account: str) -> str:
    """What a person does with a Bastion authorization link (`bastion servers list`, a per-user error):
    open it, log in at the upstream as `upstream_account`, come back to Bastion's callback. Returns
    the page Bastion shows at the end."""
    async with httpx2.AsyncClient(timeout=20, verify=shared_tls()) as browser:
        started = await browser.get(link)
        assert started.status_code == 302, started.text
        back = await log_in(browser, started.headers["location"], upstream_account)
        assert back.startswith(f"{public}/oauth/upstream/callback?"), back
        done = await browser.get(back)
        assert done.status_code == 200, done.text
        return done.text


@asynccontextmanager
async def gateway_for_oauth_upstreams(
    nats_url: str,
    redis_url: str,
    workdir: Path,
    raw_config: dict[str, Any],
    *,
    allow_private: bool = True,
    oauth_options: dict[str, Any] | None = None,
    executor_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Gateway, str]]:
    """The whole gateway with the oauth service and the admin API, in front of OAuth-protected test
    upstreams; yields it and its public URL (known before it listens: the redirect URI Bastion
    registers upstream is built from it). `allow_private`: let the oauth service reach the upstream
    on 127.0.0.1, which its SSRF guard refuses otherwise; `oauth_options` are further `OAuthSettings`,
    `executor_options` further `ExecutorSettings`.
    `options` go to `running_gateway` (e.g. `codemode`)."""
    async with running_oauth_gateway(
        nats_url,
        redis_url,
        workdir,
        raw_config,
        admin=True,
        executor_options={"reconnect_max_backoff": 0.5, **(executor_options or {})},
        oauth_options={"upstream_oauth_allow_private": allow_private, **(oauth_options or {})},
        **options,
    ) as (gateway, public):
        yield gateway, public
