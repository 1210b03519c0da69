import hashlib

import pytest

from libs.common.contracts.messages import CatalogTool, KeyRecord, ServerCatalog
from services.ingress.auth.keys import AuthFailure, KeyDirectory
from services.ingress.catalog.aggregated import Catalog

pytestmark = pytest.mark.unit

SECRET = "bk_unit_test_secret_value"
KID = hashlib.sha256(SECRET.encode()).hexdigest()


def _key(**kw):
    return KeyRecord(id=KID, name="dev", **kw).model_dump_json().encode()


def test_authentication_outcomes():
    keys = KeyDirectory()
    keys.put(KID, _key(grants=["*"]), 3)
    assert keys.authenticate(f"Bearer {SECRET}").key_name == "dev"
    assert keys.authenticate(f"bearer   {SECRET}").key_id == KID
    assert keys.revision(KID) == 3
    for header, error in [
        (None, "missing_key"),
        ("Basic abc", "malformed_authorization"),
        ("Bearer ", "malformed_authorization"),
        ("Bearer nope", "invalid_key"),
    ]:
        failure = keys.authenticate(header)
        assert isinstance(failure, AuthFailure) and failure.error == error
        assert SECRET not in failure.message
    keys.put(KID, _key(revoked=True), 4)
    assert keys.authenticate(f"Bearer {SECRET}").error == "revoked_key"
    keys.delete(KID)
    assert keys.authenticate(f"Bearer {SECRET}").error == "invalid_key"


def test_malformed_records_are_ignored_not_fatal():
    keys = KeyDirectory()
    keys.put(KID, b"{not json")
    assert keys.authenticate(f"Bearer {SECRET}").error == "invalid_key"


def _catalog(server, *tools, status="ready"):
    tools_ = [CatalogTool(tool=t, definition={"name": t, "inputSchema": {"type": "object"}}) for t in tools]
    return ServerCatalog(server=server, status=status, tools=tools_).model_dump_json().encode()


def test_catalog_namespaces_and_maps_back():
    catalog = Catalog()
    catalog.put("echo", _catalog("echo", "echo", "add"))
    catalog.put("notes", _catalog("notes", "echo", "weird.name"))
    names = {e.name: (e.server, e.tool) for e in catalog.entries}
    assert names["echo__echo"] == ("echo", "echo")
    assert names["notes__echo"] == ("notes", "echo")
    hashed = next(n for n, pair in names.items() if pair == ("notes", "weird.name"))
    assert hashed.startswith("notes__weird_name_")
    assert catalog.by_name[hashed].definition["name"] == hashed
    revision = catalog.revision
    catalog.put("notes", _catalog("notes", "echo", status="unavailable"))
    assert "notes__echo" not in catalog.by_name and catalog.revision > revision
    catalog.delete("echo")
    assert catalog.entries == []
