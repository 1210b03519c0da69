"""A stand-in for HashiCorp Vault that speaks its real KV v2 HTTP API (what `hvac` sends), for
machines without a Docker engine; `tests/integration/test_vault_store.py` runs the same assertions
against a real Vault image where one exists.

Served over real HTTP on a free port: `X-Vault-Token` is checked (403 `permission denied` otherwise),
`GET|POST|PUT /v1/<mount>/data/<path>` read and write versions, `DELETE /v1/<mount>/metadata/<path>`
removes every version; answers carry Vault's envelopes (`data.data`, `data.metadata`, `errors`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.threaded_http import serving_on_a_thread

__all__ = ["VaultDouble", "running_vault_double"]


class VaultDouble:
    def __init__(self, token: str, mount: str = "secret") -> None:
        self.token, self.mount = token, mount
        self.versions: dict[str, list[dict[str, Any]]] = {}
        """path -> every version's data, oldest first (what Vault keeps)."""
        self.lock = threading.Lock()


def _handler(vault: VaultDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, kind: str) -> str | None:
            """The secret's path when the request is `/v1/<mount>/<kind>/<path>` with a valid token."""
            if self.headers.get("X-Vault-Token") != vault.token:
                self._answer(403, {"errors": ["permission denied"]})
                return None
            prefix = f"/v1/{vault.mount}/{kind}/"
            if not self.path.startswith(prefix) or len(self.path) == len(prefix):
                self._answer(404, {"errors": [f"no handler for route {self.path!r}"]})
                return None
            return self.path[len(prefix) :].split("?")[0]

        def do_GET(self) -> None:
            path = self._route("data")
            if path is None:
                return
            with vault.lock:
                versions = vault.versions.get(path)
                if not versions:
                    self._answer(404, {"errors": []})
                    return
                metadata = {
                    "created_time": datetime.now(UTC).isoformat(),
                    "custom_metadata": None,
                    "deletion_time": "",
                    "destroyed": False,
                    "version": len(versions),
                }
                self._answer(200, {"data": {"data": versions[-1], "metadata": metadata}, "warnings": None})

        def do_POST(self) -> None:
            path = self._route("data")
            if path is None:
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if not isinstance(body.get("data"), dict):
                self._answer(400, {"errors": ["no data provided"]})
                return
            with vault.lock:
                versions = vault.versions.setdefault(path, [])
                versions.append(body["data"])
                created = {"created_time": datetime.now(UTC).isoformat(), "deletion_time": "", "version": len(versions)}
            self._answer(200, {"data": {**created, "destroyed": False}})

        do_PUT = do_POST

        def do_DELETE(self) -> None:
            path = self._route("metadata")
            if path is None:
                return
            with vault.lock:
                vault.versions.pop(path, None)
            self._answer(204)

    return Handler


@contextlib.contextmanager
def running_vault_double(token: str, mount: str = "secret") -> Iterator[tuple[str, VaultDouble]]:
    """(its URL, the double) while it serves on a free loopback port."""
    vault = VaultDouble(token, mount)
    with serving_on_a_thread(_handler(vault)) as url:
        yield url, vault
