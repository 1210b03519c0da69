"""How the engine merges the tables every batch inserts into: a wider merge selector, half the rows rewritten.

Each insert makes one part in `audit_events` and one in each rollup (through its view), and background
merges fold the parts together, rewriting each row about log_base(parts) times. With the engine's
default `merge_selector_base` (5), a writer inserting 1,000-event batches for a while re-merged ~6,500
rows per batch and spent about as much CPU merging as inserting; with 10, ~3,300 rows and ~14 % less of
the store's CPU per batch (bench/bench_audit_store.py, docs/benchmarks.md). The price: a partition keeps
more active parts (after 300 batches ~10-15 instead of ~5-10; the selector lets up to about `base`
parts of a size wait for a merge), which `FINAL` reads and the rollup queries combine at read time; far
below the engine's own limits (`parts_to_delay_insert`, 1,000 per partition).

A setting the engine does not know (an older ClickHouse server) is left out: the tables then merge as
they did. The settings are applied with `ALTER TABLE ... MODIFY SETTING`, idempotent, so a table
created by an earlier release gets them too.
"""

from __future__ import annotations

from typing import Final

from clickhouse_connect.driver.client import Client

from . import rollups
from .schema import TABLE

__all__ = ["MERGE_SETTINGS", "TUNED", "tuning"]

MERGE_SETTINGS: Final = {"merge_selector_base": 10}
"""MergeTree settings of the tables in `TUNED` (the engine's default `merge_selector_base` is 5)."""
TUNED: Final = (TABLE, rollups.HOURLY, rollups.DAILY)
"""The tables every batch inserts into; the checkpoints and refusals get a row now and then."""


def tuning(client: Client, settings: dict[str, int] = MERGE_SETTINGS) -> list[str]:
    """The statements that give `TUNED` those of `settings` the engine knows (none if it knows none)."""
    found = client.query(
        "SELECT name FROM system.merge_tree_settings WHERE has({names:Array(String)}, name)",
        parameters={"names": list(settings)},
    )
    known = {str(row[0]) for row in found.result_rows}
    clause = ", ".join(f"{name} = {int(value)}" for name, value in settings.items() if name in known)
    return [f"ALTER TABLE {table} MODIFY SETTING {clause}" for table in TUNED] if clause else []
