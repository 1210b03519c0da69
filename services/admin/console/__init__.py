"""The web console (`/console`).

Servers, catalog, keys, groups, LLM providers, live traffic and a playground, for the people who run the
gateway. A static page (Preact + htm, vendored under `static/vendor`, no build step) over the admin REST
API, plus the few routes of `routes` the admin API does not have. docs/console.md says what each view
does.
"""

from __future__ import annotations

from .routes import CONSOLE_PATH, console_api, console_pages

__all__ = ["CONSOLE_PATH", "console_api", "console_pages"]
