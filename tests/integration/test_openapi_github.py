"""A real published document: GitHub's REST API description (`@octokit/openapi` from npm, OpenAPI 3.0.3,
about 1,200 operations) imports without a refusal, every tool schema is valid JSON Schema 2020-12, and the
gateway lists its tools through `/mcp` (its catalog is several megabytes). Import and listing times are
measured by `bench/openapi_import.py`, not here."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import pytest

from libs.common.contracts.naming import VALID_NAME
from libs.common.contracts.openapi_config import OpenApiSection
from services.executor.upstreams.openapi.api import load_api
from tests.support.gateway import ADMIN_KEY, running_gateway
from tests.support.node_tools import ensure_package

pytestmark = pytest.mark.integration

PACKAGE, VERSION = "@octokit/openapi", "23.0.2"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def _check_schema(schema: dict) -> None:
    """Valid against the 2020-12 meta-schema, checked by the Rust implementation: the Python one
    (`Draft202012Validator.check_schema`) takes some 15 CPU-seconds for GitHub's 2,000 schemas."""
    assert schema.get("$schema", DRAFT_2020_12) == DRAFT_2020_12
    jsonschema_rs.meta.validate({**schema, "$schema": DRAFT_2020_12})


@pytest.fixture(scope="module")
def github() -> Iterator[Path]:
    # `./run test` provides Node and npm (it installs Node 22 on first use): no skip, a clear failure
    assert shutil.which("npm"), "npm is not on PATH: GitHub's OpenAPI document comes from @octokit/openapi"
    yield ensure_package("octokit-openapi", PACKAGE, VERSION) / "generated" / "api.github.com.json"


def test_githubs_document_imports_whole_with_valid_schemas(github):
    api = load_api(OpenApiSection(document=str(github)))
    assert api.version == "3.0.3" and api.base_url == "https://api.github.com"
    assert api.refused == [] and api.operations == len(api.tools) > 1000
    names = [t["name"] for t in api.tools]
    assert len(set(names)) == len(names) and all(VALID_NAME.match(n) for n in names)
    for tool in api.tools:
        _check_schema(tool["inputSchema"])
        if "outputSchema" in tool:
            _check_schema(tool["outputSchema"])
    issues = next(t for t in api.tools if t["name"] == "issues_create")
    assert {"owner", "repo", "title"} <= set(issues["inputSchema"]["required"])
    assert issues["annotations"]["readOnlyHint"] is False


async def test_the_gateway_lists_githubs_tools(github, nats_url, redis_url, tmp_path):
    server = {"openapi": {"document": str(github), "base_url": "http://127.0.0.1:9"}}  # listed, never called
    config = {"mcpServers": {"github": server}, "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["github/*"]}]}
    async with running_gateway(nats_url, redis_url, tmp_path, config) as gateway:
        async with gateway.client(ADMIN_KEY) as client:
            tools = (await client.list_tools()).tools
    names = {t.name for t in tools}
    assert len(names) > 1000 and "github__repos_get" in names and "github__issues_create" in names
    assert all(len(n) <= 64 for n in names)
