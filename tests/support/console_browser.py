"""A real browser a test drives like a person: Debian's Chromium (headless, `chromium.chromium()`)
over the Chrome DevTools Protocol, for the console tests.

`browser(profile)` starts Chromium with a fresh profile and yields a `Page`: open a URL, click,
type, pick, press keys, wait for what the page shows (every wait bounded by `polling.poll_until`, which names
what it waited for), read text, save a screenshot. Confirm dialogs are accepted, as a person
would; uncaught script errors are kept in `Page.errors` so a test can require there were none, and
what the Content-Security-Policy refused in `Page.csp_violations()`. `open_console(page, console,
token, view)` signs in with a token as the console's login page does and goes to one view.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from libs.common.web.guarded_http import shared_tls
from tests.support.chromium import FLAGS, chromium
from tests.support.polling import poll_until

__all__ = ["CONSOLE_ARTIFACTS", "Page", "browser", "open_console"]

CONSOLE_ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "console"
"""Where the console tests leave their screenshots."""

_LISTENING = re.compile(rb"DevTools listening on (ws://[^\s]+)")


async def devtools_endpoint(proc: asyncio.subprocess.Process) -> str:
    """The browser's DevTools WebSocket URL, read from the line chromium writes on stderr once it listens."""
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, "chromium exited before its DevTools endpoint was up"
        if found := _LISTENING.search(line):
            return found.group(1).decode()


_FILL = """(sel, value) => {
  const el = document.querySelector(sel);
  if (!el) return false;
  const proto = el instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype
    : el instanceof HTMLSelectElement ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
  Object.getOwnPropertyDescriptor(proto, "value").set.call(el, value);
  el.dispatchEvent(new Event("input", { bubbles: true }));
  el.dispatchEvent(new Event("change", { bubbles: true }));
  return true;
}"""


_RECORD_VIOLATIONS = """window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(
  `${e.effectiveDirective} refused ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`));"""
"""Run before any script of each page (DevTools' own, not subject to the page's policy)."""

_KEYS = {"Tab": (9, ""), "Enter": (13, "\r")}
"""Key -> its virtual key code and the text it types."""


class Page:
    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.logged: list[str] = []
        """What the browser itself logged on the console (refusals of the page's policy among them)."""
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for frame in self._socket:
            message = json.loads(frame.data)
            if "id" in message and (future := self._waiting.pop(message["id"], None)) is not None:
                if not future.done():
                    future.set_result(message)
            elif message.get("method") == "Page.javascriptDialogOpening":
                # answered here, not through `send`: this loop is what would read the reply
                accept = {"id": next(self._ids), "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}
                await self._socket.send_str(json.dumps(accept))
            elif message.get("method") == "Log.entryAdded":
                self.logged.append(str(message["params"]["entry"].get("text", "")))
            elif message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.errors.append(str(details.get("exception", {}).get("description") or details.get("text")))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._socket.send_str(json.dumps({"id": number, "method": method, "params": params}))
        answer = await asyncio.wait_for(future, 60)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        answer = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression[:80]}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def call(self, function: str, *args: Any) -> Any:
        return await self.evaluate(f"({function})(...{json.dumps(list(args))})")

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def wait(self, condition: str, what: str, within: float = 60.0) -> Any:
        """The first truthy value of the JavaScript expression `condition`."""

        async def holds() -> Any:
            with contextlib.suppress(RuntimeError):  # mid-navigation: the context is being replaced
                return await self.evaluate(condition)
            return None

        try:
            return await poll_until(holds, what, within, every=0.1)
        except AssertionError as exc:  # say what the page showed instead
            shown = await self._visible()
            raise AssertionError(f"{exc}; page errors: {self.errors}; the page shows: {shown}") from None

    async def _visible(self) -> str:
        with contextlib.suppress(RuntimeError):
            return str(await self.evaluate("document.body.innerText.slice(0, 1500)"))
        return "(nothing readable)"

    async def shown(self, selector: str, within: float = 60.0) -> None:
        await self.wait(f"!!document.querySelector({json.dumps(selector)})", f"{selector} on the page", within)

    async def csp_violations(self) -> list[str]:
        """What the page's Content-Security-Policy refused since it loaded, seen by the page and logged."""
        seen = await self.evaluate("window.__cspViolations || []")
        return [*seen, *(line for line in self.logged if "Content Security Policy" in line)]

    async def text(self, selector: str) -> str:
        found = await self.evaluate(f"document.querySelector({json.dumps(selector)})?.innerText ?? null")
        assert found is not None, f"no {selector} on the page"
        return str(found)

    async def click(self, selector: str) -> None:
        await self.shown(selector)
        clicked = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el || el.disabled) return false; el.click(); return true; })()"
        )
        assert clicked, f"{selector} is disabled"

    async def fill(self, selector: str, value: str) -> None:
        """Type `value` into an input, text area or select as a person would (input and change events)."""
        await self.shown(selector)
        assert await self.call(_FILL, selector, value), selector

    async def press(self, key: str) -> None:
        """Press and release a key on whatever has the focus, as the keyboard would (`Tab`, `Enter`)."""
        code, text = _KEYS[key]
        down = {"key": key, "code": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        await self.send(
            "Input.dispatchKeyEvent", **({"type": "keyDown", "text": text} if text else {"type": "rawKeyDown"}), **down
        )
        await self.send("Input.dispatchKeyEvent", type="keyUp", **down)

    async def screenshot(self, target: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_bytes, base64.b64decode(shot["data"]))
        return target

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


@contextlib.asynccontextmanager
async def browser(profile: Path, width: int = 1400, height: int = 1000) -> AsyncIterator[Page]:
    """Chromium with a fresh profile under `profile`, and its one page."""
    proc = await asyncio.create_subprocess_exec(
        chromium(),
        *FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        f"--window-size={width},{height}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    page: Page | None = None
    try:
        port = (await devtools_endpoint(proc)).split(":")[2].split("/")[0]
        async with httpx.AsyncClient(verify=shared_tls()) as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        drain = asyncio.ensure_future(proc.stderr.read())  # chromium keeps logging: never let the pipe fill
        async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=64 * 1024 * 1024) as socket:
            page = Page(socket)
            for domain in ("Page", "Runtime", "Log"):
                await page.send(f"{domain}.enable")
            await page.send("Page.addScriptToEvaluateOnNewDocument", source=_RECORD_VIOLATIONS)
            await page.send(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            try:
                yield page
            finally:
                await page.close()
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def open_console(page: Page, console: str, token: str, view: str) -> None:
    """The console at `console` (its URL) signed in with `token`, showing `view` (a `#nav-<view>` entry)."""
    await page.open(f"{console}#token={token}")
    await page.wait("document.body.dataset.state === 'ready'", "the console signed in")
    await page.click(f"#nav-{view}")
    await page.wait(f"document.body.dataset.view === {view!r}", f"the {view} view")
