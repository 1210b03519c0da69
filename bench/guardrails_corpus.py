"""The guardrail data sets: the labelled attack set the repository ships, and the benign set.

Attack set: `tests/data/guardrails/attacks.jsonl` (see the README beside it): one payload per line,
labelled with the detector (and entity) that must fire and where it is checked. Fake secrets are
stored with a `{{}}` marker inside them so no secret scanner takes the repository for a leak; the
loader removes it.

Benign set: the project's real tool dumps (`tests/data/tool-schemas`, 516 tool definitions) and
results generated here with a fixed seed, shaped like what tools really return: code, logs, JSON API
answers, markdown documents, git diffs, Kubernetes manifests, lockfiles, SQL rows, web page text;
full of things that look random and are not secrets (commit and blob hashes, UUIDs, node ids,
integrity digests, pagination cursors, request ids, base64 data) and of code that names secrets
without holding one (`password = os.environ["DB_PASSWORD"]`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["ATTACKS", "SCHEMAS", "benign_results", "load_attacks", "tool_definitions"]

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ROOT / "tests" / "data" / "guardrails" / "attacks.jsonl"
SCHEMAS = ROOT / "tests" / "data" / "tool-schemas"
_MARK = "{{}}"


def _unmark(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_MARK, "")
    if isinstance(value, dict):
        return {_unmark(k): _unmark(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmark(v) for v in value]
    return value


def load_attacks(path: Path = ATTACKS) -> list[dict[str, Any]]:
    """The labelled attack items, fake secrets reassembled."""
    return [_unmark(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def tool_definitions() -> list[tuple[str, dict[str, Any]]]:
    """(server, tool definition) for every tool of the real dumps."""
    return [
        (path.stem, tool) for path in sorted(SCHEMAS.glob("*.json")) for tool in json.loads(path.read_text())["tools"]
    ]


# --------------------------------------------------------------------------- benign results

_WORDS = (
    "the request returned a list of items for the selected project and the build finished after the cache was "
    "warmed so deploy to staging when ready review comments were addressed the migration adds an index on "
    "created_at and the dashboard shows latency by region with error budget burn rates"
).split()
_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def _text(body: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": body}]}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _github_issues(rng: random.Random) -> dict[str, Any]:
    issues = []
    for _ in range(rng.randint(2, 8)):
        number = rng.randint(1, 40_000)
        user = rng.choice(_NAMES)
        issues.append(
            {
                "id": rng.randint(10**9, 3 * 10**9),
                "node_id": "I_kwDO" + base64.b64encode(rng.randbytes(12)).decode().rstrip("="),
                "number": number,
                "title": _sentence(rng, 6),
                "user": {
                    "login": user,
                    "id": rng.randint(10**5, 10**8),
                    "avatar_url": f"https://avatars.githubusercontent.com/u/{rng.randint(10**5, 10**8)}?v=4",
                },
                "labels": [{"name": rng.choice(["bug", "enhancement", "good first issue"]), "color": _hex(rng, 6)}],
                "state": rng.choice(["open", "closed"]),
                "created_at": f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T0{rng.randint(0, 9)}:12:44Z",
                "body": f"{_sentence(rng)}\n\n![screenshot](https://github.com/user-attachments/assets/{_uuid(rng)})\n\n"
                f"[![CI](https://github.com/org/repo/actions/workflows/ci.yml/badge.svg?branch=main)](https://github.com/org/repo/actions)\n"
                f"Steps: {_sentence(rng)}",
                "url": f"https://api.github.com/repos/org/repo/issues/{number}",
                "reactions": {"total_count": rng.randint(0, 9), "+1": rng.randint(0, 5)},
            }
        )
    return {"content": [{"type": "text", "text": json.dumps(issues)}], "structuredContent": {"items": issues}}


def _app_log(rng: random.Random) -> dict[str, Any]:
    lines = []
    for _ in range(rng.randint(10, 80)):
        level = rng.choice(["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"])
        lines.append(
            f"2026-03-0{rng.randint(1, 9)}T1{rng.randint(0, 9)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}"
            f".{rng.randint(100, 999)}Z "
            f"{level} [{rng.choice(['api', 'worker', 'scheduler'])}] request_id={_uuid(rng)} trace_id={_hex(rng, 32)} "
            f"span_id={_hex(rng, 16)} user={rng.choice(_NAMES)} method={rng.choice(['GET', 'POST'])} "
            f"path=/v1/{rng.choice(['orders', 'items', 'users'])}/{rng.randint(1, 99999)} "
            f"status={rng.choice([200, 201, 404, 500])} "
            f"duration_ms={rng.random() * 400:.1f} token_count={rng.randint(10, 4000)}"
        )
    return _text("\n".join(lines))


def _nginx_log(rng: random.Random) -> dict[str, Any]:
    lines = []
    for _ in range(rng.randint(10, 60)):
        ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        lines.append(
            f'{ip} - - [05/Mar/2026:10:{rng.randint(10, 59)}:{rng.randint(10, 59)} +0000] "GET /assets/app.{_hex(rng, 8)}.js?v={_hex(rng, 10)} HTTP/1.1" '  # noqa: E501
            f'200 {rng.randint(200, 90000)} "https://shop.example.com/cart?session_step=2&ref=nav" "Mozilla/5.0 (X11; Linux x86_64)"'  # noqa: E501
        )
    return _text("\n".join(lines))


_PY = """import os
from dataclasses import dataclass

DB_PASSWORD = os.environ["DB_PASSWORD"]
API_KEY = os.environ.get("API_KEY", "")


@dataclass
class Settings:
    password: str = ""
    token: str | None = None
    secret_key_ref: str = "vault://kv/app#secret_key"

    def connect(self, password: str = DB_PASSWORD) -> "Connection":
        token = self.get_token()
        url = f"postgres://{{self.user}}:{{password}}@{{self.host}}/{{self.db}}"
        headers = {{"Authorization": f"Bearer {{token}}"}}
        return Connection(url, headers=headers, timeout={timeout})

    def get_token(self) -> str:
        return self.token or refresh(client_secret=self.client_secret)


def checksum(data: bytes) -> str:
    return "{digest}"  # sha256 of the fixture
"""

_TS = """export async function fetchItems(client: ApiClient, cursor?: string) {{
  const password = process.env.DB_PASSWORD ?? "";
  const res = await client.get(`/v1/items?limit={limit}&cursor=${{cursor ?? ""}}`, {{
    headers: {{ Authorization: `Bearer ${{await client.token()}}` }},
  }});
  const etag = "W/\\"{etag}\\"";
  return {{ items: res.data, next: res.nextCursor, etag }};
}}
"""


def _code(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        body = _PY.format(timeout=rng.randint(1, 60), digest=hashlib.sha256(rng.randbytes(16)).hexdigest())
    else:
        body = _TS.format(limit=rng.randint(10, 100), etag=_hex(rng, 40))
    return _text(body * rng.randint(1, 4))


def _git_diff(rng: random.Random) -> dict[str, Any]:
    files = []
    for _ in range(rng.randint(1, 5)):
        name = rng.choice(["src/app.py", "README.md", "config/settings.yaml", "web/src/api.ts", "deploy/values.yaml"])
        lines = "\n".join(
            f"{rng.choice(['+', '-', ' '])} {' '.join(rng.choice(_WORDS) for _ in range(rng.randint(2, 10)))}"
            for _ in range(rng.randint(3, 25))
        )
        files.append(
            f"diff --git a/{name} b/{name}\nindex {_hex(rng, 7)}..{_hex(rng, 7)} 100644\n--- a/{name}\n+++ b/{name}\n"
            f"@@ -{rng.randint(1, 300)},7 +{rng.randint(1, 300)},9 @@\n{lines}"
        )
    header = f"commit {_hex(rng, 40)}\nAuthor: {rng.choice(_NAMES).title()} <{rng.randint(10**5, 10**7)}+{rng.choice(_NAMES)}@users.noreply.github.com>\nDate:   Tue Mar 3 10:12:44 2026 +0100\n\n    {_sentence(rng, 8)}\n\n"  # noqa: E501
    return _text(header + "\n".join(files))


def _markdown(rng: random.Random) -> dict[str, Any]:
    parts = [
        f"# {_sentence(rng, 4)}",
        "[![PyPI](https://img.shields.io/pypi/v/demo?style=flat-square&logo=python&logoColor=white)](https://pypi.org/project/demo/) "  # noqa: E501
        "[![codecov](https://codecov.io/gh/org/demo/branch/main/graph/badge.svg?token="
        + _hex(rng, 10).upper()
        + ")](https://codecov.io/gh/org/demo)",
        _sentence(rng, 30),
        "## Install\n\n```bash\npip install demo\nexport DEMO_TOKEN=<your token>\n```",
        f"See [the docs](https://docs.example.com/guide?version={rng.randint(1, 9)}.{rng.randint(0, 9)}&lang=en#setup) "
        f"and the [API reference](https://docs.example.com/api/v2/items#list). {_sentence(rng, 20)}",
        "| Option | Default | Meaning |\n|---|---|---|\n| `timeout` | `30` | seconds |\n| `token` | none | the API token, read from `DEMO_TOKEN` |",  # noqa: E501
        f"![architecture](https://raw.githubusercontent.com/org/demo/{_hex(rng, 40)}/docs/arch.png)",
        _sentence(rng, 25),
    ]
    return _text("\n\n".join(parts * rng.randint(1, 3)))


def _kubernetes(rng: random.Random) -> dict[str, Any]:
    image = f"ghcr.io/org/api@sha256:{hashlib.sha256(rng.randbytes(8)).hexdigest()}"
    body = f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    checksum/config: {hashlib.sha256(rng.randbytes(8)).hexdigest()}
spec:
  replicas: {rng.randint(1, 6)}
  template:
    spec:
      imagePullSecrets:
        - name: ghcr-pull
      containers:
        - name: api
          image: {image}
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: api-db
                  key: password
            - name: API_TOKEN
              valueFrom:
                secretKeyRef: {{name: api-token, key: token}}
          resources:
            limits: {{cpu: "{rng.randint(1, 4)}", memory: {rng.randint(1, 8)}Gi}}
"""
    return _text(body)


def _lockfile(rng: random.Random) -> dict[str, Any]:
    packages = {}
    for _ in range(rng.randint(3, 20)):
        name = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
        version = f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}"
        packages[f"node_modules/{name}"] = {
            "version": version,
            "resolved": f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz",
            "integrity": "sha512-" + base64.b64encode(rng.randbytes(64)).decode(),
        }
    return _text(json.dumps({"name": "web", "lockfileVersion": 3, "packages": packages}, indent=2))


def _sql_rows(rng: random.Random) -> dict[str, Any]:
    rows = [
        {
            "id": _uuid(rng),
            "order_no": f"ORD-2026-{rng.randint(0, 999999):06d}",
            "amount_cents": rng.randint(100, 10**6),
            "currency": rng.choice(["EUR", "USD", "GBP"]),
            "status": rng.choice(["paid", "refunded", "pending"]),
            "sku": f"SKU-{rng.randint(1000, 9999)}-{rng.choice(string.ascii_uppercase)}",
            "created_at": f"2026-02-{rng.randint(10, 28)} 1{rng.randint(0, 9)}:{rng.randint(10, 59)}:00",
            "etag": _hex(rng, 32),
        }
        for _ in range(rng.randint(3, 40))
    ]
    return {
        "content": [{"type": "text", "text": json.dumps(rows)}],
        "structuredContent": {"rows": rows, "next_page_token": base64.urlsafe_b64encode(rng.randbytes(24)).decode()},
    }


def _web_page(rng: random.Random) -> dict[str, Any]:
    body = "\n".join(
        [
            f'- heading "{_sentence(rng, 5)}" [level=1]',
            f'- link "Sign in" [ref=e{rng.randint(1, 99)}]: /login?next=%2Fdashboard',
            f"- paragraph: {_sentence(rng, 40)}",
            '- textbox "Password" [ref=e12]',
            '- button "Forgot your password?"',
            f'- img "logo": https://cdn.example.com/static/logo.{_hex(rng, 8)}.svg',
            f"- paragraph: {_sentence(rng, 30)}",
        ]
    )
    return _text(body)


def _terraform(rng: random.Random) -> dict[str, Any]:
    body = f"""# aws_iam_access_key.ci will be created
  + resource "aws_iam_access_key" "ci" {{
      + create_date                    = (known after apply)
      + encrypted_secret               = (known after apply)
      + id                             = (known after apply)
      + secret                         = (sensitive value)
      + ses_smtp_password_v4           = (sensitive value)
      + user                           = "ci"
    }}
  # aws_s3_bucket.logs
  ~ resource "aws_s3_bucket" "logs" {{
        id     = "logs-{_hex(rng, 8)}"
      ~ tags   = {{ "rev" = "{_hex(rng, 7)}" -> "{_hex(rng, 7)}" }}
    }}
Plan: 1 to add, 1 to change, 0 to destroy.
"""
    return _text(body)


def _api_tokens_listing(rng: random.Random) -> dict[str, Any]:
    """A token *listing*: names, scopes and last-four digits, as admin APIs return, no token itself."""
    tokens = [
        {
            "id": rng.randint(1000, 99999),
            "name": f"{rng.choice(_NAMES)}-ci",
            "scopes": ["read_api", "read_repository"],
            "token_last_four": _hex(rng, 4),
            "expires_at": "2026-12-31",
            "token_type": "personal",
            "fingerprint": "SHA256:" + base64.b64encode(rng.randbytes(32)).decode().rstrip("="),
        }
        for _ in range(rng.randint(1, 6))
    ]
    return {
        "structuredContent": {"tokens": tokens, "page": 1, "nextCursor": base64.b64encode(rng.randbytes(18)).decode()}
    }


def _image(rng: random.Random) -> dict[str, Any]:
    return {
        "content": [{"type": "image", "mimeType": "image/png", "data": base64.b64encode(rng.randbytes(3000)).decode()}]
    }


_KINDS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "github_issues": _github_issues,
    "app_log": _app_log,
    "nginx_log": _nginx_log,
    "code": _code,
    "git_diff": _git_diff,
    "markdown": _markdown,
    "kubernetes": _kubernetes,
    "lockfile": _lockfile,
    "sql_rows": _sql_rows,
    "web_page": _web_page,
    "terraform": _terraform,
    "api_tokens_listing": _api_tokens_listing,
    "image": _image,
}


def benign_results(count: int = 1300, seed: int = 6) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` realistic results (kind, MCP result), the same ones for the same seed."""
    rng = random.Random(seed)
    kinds = list(_KINDS)
    for index in range(count):
        kind = kinds[index % len(kinds)]
        yield kind, _KINDS[kind](rng)
