"""Analytics over HTTP: read-only SQL and the dashboard's panels (`/admin/v1/analytics`), and the `/dashboard` page.

`panels` holds the fixed panel queries, `routes` the HTTP layer."""

from __future__ import annotations

from .routes import DASHBOARD_PATH, analytics_router, dashboard_router

__all__ = ["DASHBOARD_PATH", "analytics_router", "dashboard_router"]
