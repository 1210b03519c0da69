"""The tables every batch inserts into merge with a wider selector (`services.audit.merges`), on the real engine.

Each check runs in a process of its own: the embedded engine holds one path per process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.audit import merges

pytestmark = pytest.mark.integration


def _in_engine(chdb_url: str, body: str) -> object:
    """What `body` prints (JSON, last line), run in a fresh process beside a `ClickHouseStore` opened on `chdb_url`."""
    code = (
        "import json, clickhouse_connect\n"
        "from services.audit import merges\n"
        "from services.audit.store import ClickHouseStore\n"
        f"store = ClickHouseStore({chdb_url!r})\n"
        "store.open()\n"
        f"client = clickhouse_connect.get_client(dsn={chdb_url!r})\n"
        f"{body}\n"
        "client.close()\n"
        "store.close()\n"
    )
    found = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)
    return json.loads(found.stdout.strip().splitlines()[-1])


def test_the_tables_every_batch_inserts_into_merge_with_the_wider_selector(chdb_url: str) -> None:
    created = _in_engine(
        chdb_url,
        "rows = client.query(\"SELECT database || '.' || name, create_table_query FROM system.tables"
        " WHERE database = 'bastion' AND engine LIKE '%MergeTree'\").result_rows\n"
        "print(json.dumps(dict(rows)))",
    )
    assert isinstance(created, dict)
    tuned = {table for table, query in created.items() if "merge_selector_base = 10" in query}
    assert tuned == set(merges.TUNED)  # the events and both rollups; checkpoints and refusals merge as before


def test_a_merge_setting_the_engine_does_not_know_is_left_out(chdb_url: str) -> None:
    statements = _in_engine(
        chdb_url,
        "print(json.dumps([merges.tuning(client, {'no_such_setting': 3}),"
        " merges.tuning(client, {'no_such_setting': 3, 'merge_selector_base': 7})]))",
    )
    unknown, mixed = statements  # type: ignore[misc]
    assert unknown == []
    assert mixed == [f"ALTER TABLE {table} MODIFY SETTING merge_selector_base = 7" for table in merges.TUNED]
