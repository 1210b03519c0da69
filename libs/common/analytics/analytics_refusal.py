"""The one error every analytics check raises (`analytics_sql`, `analytics_params`, `analytics_bind`)."""

from __future__ import annotations

__all__ = ["NotReadOnly"]


class NotReadOnly(ValueError):
    """The SQL (or a parameter) is not what the allow-list admits; the message names the part refused."""
