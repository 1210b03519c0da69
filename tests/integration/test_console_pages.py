"""The console's page and files as a real admin service serves them: self-contained (every script,
style and module import answers from the service itself; nothing names another origin), a content
security policy that lets only its own files and its one inline import map run, nothing outside its
own files answering under `/console`, and its API routes closed without a credential."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from services.admin.console.routes import _static

pytestmark = pytest.mark.integration

_IMPORT = re.compile(r"""\b(?:import|from)\s*["']([^"'\s]+)["']""")  # a specifier has no space: not prose


async def test_the_page_and_every_file_it_loads_come_from_the_admin_service(admin_pages: httpx.AsyncClient) -> None:
    page = await admin_pages.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    linked = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    imports = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.S)
    assert imports is not None
    mapped = list(re.findall(r'"(/console/[^"]+)"', imports.group(1)))
    assert linked and all(url.startswith("/console/") for url in linked + mapped), linked + mapped
    seen: set[str] = set()
    todo = linked + mapped
    while todo:  # follow every module's imports: the whole graph answers from here
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        answer = await admin_pages.get(url)
        assert answer.status_code == 200, url
        if url.endswith(".js"):
            assert answer.headers["content-type"].startswith("text/javascript"), url
            base = url.rsplit("/", 1)[0]
            for target in _IMPORT.findall(answer.text):
                if target.startswith("./"):
                    todo.append(f"{base}/{target[2:]}")
                elif target.startswith("../"):
                    todo.append(f"{base.rsplit('/', 1)[0]}/{target[3:]}")
                else:
                    assert target in ("preact", "preact/hooks", "htm"), (url, target)  # the import map's names
    assert {"/console/app.js", "/console/vendor/preact.module.js", "/console/views/playground.js"} <= seen


async def test_only_its_own_files_and_its_import_map_may_run(admin_pages: httpx.AsyncClient) -> None:
    page = await admin_pages.get("/console")
    policy = page.headers["content-security-policy"]
    imports = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.S)
    assert imports is not None
    digest = base64.b64encode(hashlib.sha256(imports.group(1).encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert len(re.findall(r"<script", page.text)) == 2  # the import map and app.js, nothing inline besides


def test_no_file_names_another_origin() -> None:
    allowed = ("http://www.w3.org/", "http://www.apache.org/licenses/")  # XML namespaces, a license text
    examples = ("http://localhost:11434/v1", "https://mcp.example.com/mcp")  # placeholders in forms
    for name, (body, _) in _static().items():
        for url in re.findall(rb"https?://[^\s\"')]+", body):
            text = url.decode()
            assert text.startswith(allowed) or text in examples, (name, text)


async def test_nothing_else_answers_under_console(admin_pages: httpx.AsyncClient) -> None:
    for path in ("/console/nope.js", "/console/../app.py", "/console/%2e%2e/routes.py", "/console/index.html"):
        answer = await admin_pages.get(path)
        assert answer.status_code == 404, path
        assert b"import" not in answer.content


async def test_the_console_routes_need_a_credential(admin_pages: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/admin/v1/console/catalog"),
        ("POST", "/admin/v1/console/servers/test"),
        ("POST", "/admin/v1/console/playground/tools"),
        ("POST", "/admin/v1/console/playground/call"),
    ):
        answer = await admin_pages.request(method, path, json={})
        assert answer.status_code == 401, (path, answer.text)
