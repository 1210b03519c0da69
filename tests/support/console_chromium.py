"""One headless Chromium for a whole test module, each test's page in a tab of its own.

Starting Chromium (its browser, GPU, network and zygote processes) costs about a CPU-second and a
browser context (`Target.createBrowserContext`) about half of one; a tab costs a renderer. So a
test gets a new tab of the one browser, and what a fresh profile gave it is restored between tabs:
no cookies, no storage of any origin a page was opened at, no permission granted, an empty HTTP
cache. `shared_chromium(profile)` starts the browser; `Chromium.page(width, height)` yields a
`TabPage`, the same `Page` as `console_browser.browser` yields (errors kept, dialogs accepted, the
Content-Security-Policy's refusals recorded, the viewport set), its tab closed when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.chromium import FLAGS, chromium
from tests.support.console_browser import _RECORD_VIOLATIONS, Page, devtools_endpoint

__all__ = ["Chromium", "TabPage", "module_chromium", "shared_chromium"]

_MESSAGES = 64 * 1024 * 1024
"""The largest DevTools message read: a full-page screenshot of a long view is tens of MB."""


class TabPage(Page):
    """A `Page` that remembers the origins it was opened at, whose storage goes with its tab."""

    def __init__(self, socket: Any) -> None:
        super().__init__(socket)
        self.origins: set[str] = set()

    async def open(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            self.origins.add(f"{parts.scheme}://{parts.netloc}")
        await super().open(url)


class Chromium:
    def __init__(self, session: aiohttp.ClientSession, endpoint: str, browser: Page) -> None:
        self._session = session
        self._endpoint = endpoint
        """host:port of the DevTools endpoint."""
        self._browser = browser
        """The browser-wide DevTools connection (`Target.*`, `Storage.*`, `Browser.*`)."""

    @contextlib.asynccontextmanager
    async def page(self, width: int = 1400, height: int = 1000) -> AsyncIterator[TabPage]:
        """A blank page in a new tab, its viewport `width` x `height`, closed when the block ends."""
        # a tab of the one window, whose viewport the emulation below sizes: a window of its own
        # costs the browser half as much again
        target = (await self._browser.send("Target.createTarget", url="about:blank"))["targetId"]
        try:
            url = f"ws://{self._endpoint}/devtools/page/{target}"
            async with self._session.ws_connect(url, max_msg_size=_MESSAGES) as socket:
                page = TabPage(socket)
                try:
                    await page.send("Network.clearBrowserCache")  # as empty as a fresh profile's
                    for domain in ("Page", "Runtime", "Log"):
                        await page.send(f"{domain}.enable")
                    await page.send("Page.addScriptToEvaluateOnNewDocument", source=_RECORD_VIOLATIONS)
                    await page.send(
                        "Emulation.setDeviceMetricsOverride",
                        width=width,
                        height=height,
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    yield page
                finally:
                    await _forget(page)
                    await page.close()
        finally:
            await self._browser.send("Target.closeTarget", targetId=target)


async def _forget(page: TabPage) -> None:
    """What a test left in the browser's profile, which the next test's fresh profile would not hold
    (sent to the page's target: the browser's has no storage of its own to clear)."""
    with contextlib.suppress(Exception):  # where it ended up, if it went on by itself
        page.origins.add(str(await asyncio.wait_for(page.evaluate("location.origin"), 10)))
    for origin in sorted(page.origins - {"null"}):
        await page.send("Storage.clearDataForOrigin", origin=origin, storageTypes="all")
    await page.send("Network.clearBrowserCookies")
    await page.send("Browser.resetPermissions")


@contextlib.asynccontextmanager
async def shared_chromium(profile: Path) -> AsyncIterator[Chromium]:
    """Chromium with a fresh profile under `profile`, for `Chromium.page` to open tabs in."""
    proc = await asyncio.create_subprocess_exec(
        chromium(),
        *FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        "--window-size=1400,1000",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = await devtools_endpoint(proc)
        assert proc.stderr is not None
        drain = asyncio.ensure_future(proc.stderr.read())  # chromium keeps logging: never let the pipe fill
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(url, max_msg_size=_MESSAGES) as socket,
            ):
                browser = Page(socket)  # a DevTools connection like a page's, to the browser target
                try:
                    yield Chromium(session, url.split("/")[2], browser)
                finally:
                    with contextlib.suppress(Exception):
                        # a clean exit: the browser reaps its own processes (a kill leaves them to init)
                        await asyncio.wait_for(browser.send("Browser.close"), 10)
                    await browser.close()
        finally:
            drain.cancel()
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture(scope="module")
async def module_chromium(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chromium]:
    """One browser for the module: each test's page is a tab of its own, on a profile left as fresh.
    A module binds it under the name its tests use: `chromium = module_chromium`."""
    async with shared_chromium(tmp_path_factory.mktemp("chromium")) as shared:
        yield shared
