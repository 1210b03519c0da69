"""What the console's browser tests share: the stack with a token per role, and a person's moves.

`Stack` is the running gateway and admin service with an owner's, an analyst's, an auditor's and a
viewer's API tokens (`tests/integration/console/conftest.py` starts it); then signing in, a
customer or team made with the directory's form, a screenshot saved as a test artifact, an audit
event found by its arguments, and the check that a view is all in the keyboard's reach and fits.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import httpx

from services.admin.service import AdminService
from tests.support.console_browser import CONSOLE_ARTIFACTS, Page, open_console
from tests.support.gateway import Gateway
from tests.support.polling import poll_until

__all__ = [
    "Stack",
    "_created_in_directory",
    "_event_with_arguments",
    "_laptop_check",
    "_shot",
    "_signed_in",
]

_TLS = ssl.create_default_context()
"""One for every client of the admin API: each new one would read the CA bundle again (tens of ms of CPU)."""


@dataclass
class Stack:
    gateway: Gateway
    admin: AdminService
    owner: str
    """API tokens of an owner, an analyst, an auditor and a viewer (docs/admin-api.md)."""
    analyst: str
    auditor: str
    viewer: str

    @property
    def console(self) -> str:
        return f"{self.admin.url}/console"

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.owner}"}
        return httpx.AsyncClient(base_url=f"{self.admin.url}/admin/v1", headers=headers, timeout=60, verify=_TLS)


async def _signed_in(page: Page, stack: Stack, token: str | None = None, view: str = "servers") -> None:
    await open_console(page, stack.console, token or stack.owner, view)


async def _created_in_directory(page: Page, kind: str, entity: str, fields: dict[str, str]) -> str:
    """A customer or team (`kind`) made with the directory's form, `fields` filled (`#<kind>-<field>`):
    the text of its new row."""
    await page.click(f"#{kind}-new")
    await page.fill(f"#{kind}-id", entity)
    for field, value in fields.items():
        await page.fill(f"#{kind}-{field}", value)
    await page.click(f"#{kind}-save")
    row = f"#directory-{kind} tr[data-entity='{entity}']"
    await page.shown(row)
    return await page.text(row)


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(CONSOLE_ARTIFACTS / f"{name}.png")


async def _event_with_arguments(stack: Stack, text: str) -> str:
    """The id of the audit event whose arguments hold `text`, once it has reached ClickHouse."""
    sql = "SELECT event_id FROM bastion.audit_events FINAL WHERE position(arguments, {text:String}) > 0 LIMIT 1"

    async def landed() -> str | None:
        async with stack.api(stack.auditor) as api:
            answer = await api.post("/analytics/query", json={"sql": sql, "parameters": {"text": text}})
        if answer.status_code == 503:  # "retry shortly": a NATS request of the admin API timed out under load
            return None
        assert answer.status_code == 200, answer.text
        rows = answer.json()["rows"]
        return str(rows[0][0]) if rows else None

    return await poll_until(landed, f"the event of the call with {text!r}", 60, every=0.5)


# Something a click works but the keyboard cannot reach: a clickable row without a tab stop, or a
# control taken out of the tab order.
_UNREACHABLE = (
    ".clickable:not([tabindex]), a[tabindex='-1'], button[tabindex='-1'], input[tabindex='-1'],"
    " select[tabindex='-1'], textarea[tabindex='-1'], tr[tabindex='-1']"
)


_WIDE = (
    "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
    ".slice(0, 3).map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + e.className)"
)


async def _laptop_check(page: Page, where: str) -> None:
    """Nothing in the view is out of the keyboard's reach, and nothing makes the page scroll sideways."""
    assert await page.evaluate(f"document.querySelectorAll({_UNREACHABLE!r}).length") == 0, where
    width = await page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"{where} scrolls sideways ({width}); too wide: {await page.evaluate(_WIDE)}"
