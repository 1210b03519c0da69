"""Running a checked analytics query with its parameters.

So that the engine receives exactly the checked text and every value apart from it (docs/analytics.md,
"Parameters").

clickhouse-connect sends a query's parameters as server-side parameters (`param_<name>` beside the
text over HTTP, `params` to the embedded engine) only when the text has a `{name:Type}`
placeholder; without one it pastes them into the text with Python `%` formatting, after the
allow-list has checked it. `analytics_params` refuses a parameter no typed placeholder uses, and
this is the second wall, at the driver: the query context is built first, and the query runs only
if its text is the checked text unchanged and every parameter is a server-side one.
"""

from __future__ import annotations

from collections.abc import Mapping

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

from libs.common.analytics.analytics_refusal import NotReadOnly

__all__ = ["run_bound"]


def run_bound(client: Client, text: str, parameters: Mapping[str, str | int | float]) -> QueryResult:
    """Run `text` (checked by `analytics.read_only`, with what Bastion adds around it) on `client`.

    `parameters` bound by the engine. `NotReadOnly` if the driver would send another text or bind a
    parameter any other way."""
    context = client.create_query_context(query=text, parameters=dict(parameters) or None)
    if context.final_query != text:
        raise NotReadOnly("the query's parameters would be pasted into its text: bind them as {name:Type} placeholders")
    if set(context.bind_params) != {f"param_{name}" for name in parameters}:
        raise NotReadOnly("the query's parameters would not all be sent as server-side values; refused")
    return client.query(context=context)
