"""What an admin change costs in CPU: 200 key creations through the admin API, in-process against a
real NATS store, by an owner (the permission held everywhere) and by a key manager bound to a team
(every write decided on its links, `services/admin/api/outcome.py`).

    PYTHONPATH=. .venv/bin/python bench/bench_admin_change.py

`time.process_time` of this process counts the admin service and its HTTP client together (both run
here; NATS is a child process, not counted). Keys accumulate over the run, and creating one lists
the active keys to refuse a duplicate name, so later creations cost more: compare runs of the same
script, not single numbers. This is a script, not a test.
"""

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from cli.stack import EmbeddedNats
from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.settings import AdminSettings
from services.admin.service import AdminService
from tests.support.admin_api import BOOTSTRAP, first_owner, principal_token
from tests.support.stores import declared

CHANGES = 200
SEED: list[tuple[str, dict[str, Any]]] = [
    ("/customers", {"id": "acme", "name": "Acme"}),
    ("/teams", {"id": "team-a", "name": "A", "customer_id": "acme"}),
    ("/users", {"id": "ua", "name": "ua", "team_id": "team-a"}),
]


async def _patch(http: httpx.AsyncClient, token: str, key_id: str, n: int) -> float:
    """CPU seconds of this process for one change of a key's grants as `token` (no name check, no listing)."""
    start = time.process_time()
    changed = await http.patch(
        f"/keys/{key_id}", json={"grants": [f"s/t{n}"]}, headers={"Authorization": f"Bearer {token}"}
    )
    spent = time.process_time() - start
    assert changed.status_code == 200, changed.text
    return spent


async def _create(http: httpx.AsyncClient, token: str, name: str) -> float:
    """CPU seconds of this process for one key creation as `token`, linked to team-a and its user ua."""
    start = time.process_time()
    made = await http.post(
        "/keys", json={"name": name, "team_id": "team-a", "user_id": "ua"}, headers={"Authorization": f"Bearer {token}"}
    )
    spent = time.process_time() - start
    assert made.status_code == 201, made.text
    return spent


async def main() -> None:
    server = EmbeddedNats(Path(tempfile.mkdtemp()) / "nats").start()
    nc = await connect(server.url, "bench-store-owners")
    await declared(nc.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM)
    await nc.close()
    admin = AdminService(AdminSettings(nats_url=server.url, admin_port=0, admin_bootstrap_token=BOOTSTRAP))
    await admin.start()
    try:
        owner = await first_owner(admin)
        async with httpx.AsyncClient(base_url=f"{admin.url}/admin/v1", timeout=30) as http:
            for path, body in SEED:
                await http.post(path, json=body, headers={"Authorization": f"Bearer {owner}"})
            scoped = await principal_token(admin, owner, "km-a", {"role": "key_manager", "team_id": "team-a"})
            for n in range(CHANGES):  # warm: imports, connections, caches
                await _create(http, owner, f"warm{n}")
            who = {"owner": owner, "key manager of team-a": scoped}
            created = dict.fromkeys(who, 0.0)
            patched = dict.fromkeys(who, 0.0)
            for n in range(CHANGES):  # alternated: both meet the same number of stored keys
                for name, token in who.items():
                    created[name] += await _create(http, token, f"{name.split()[0]}{n}")
            keys = {
                k["name"]: k["id"]
                for k in (await http.get("/keys", headers={"Authorization": f"Bearer {owner}"})).json()
            }
            for n in range(CHANGES):
                for name, token in who.items():
                    patched[name] += await _patch(http, token, keys["key0"], n)
            for name in who:
                for what, spent in (("key creations", created[name]), ("key changes", patched[name])):
                    print(f"{name:>22}: {CHANGES} {what:>13}, {spent:6.3f} s CPU, {spent / CHANGES * 1e3:6.2f} ms each")
    finally:
        await admin.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
