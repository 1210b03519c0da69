"""The aggregated catalog: un-namespaced servers, name collisions, resource routing by URI and template."""

from __future__ import annotations

import pytest

from libs.common.contracts.messages import CatalogTool, ServerCatalog
from services.ingress.catalog.aggregated import Catalog, gateway_names
from services.ingress.sessions.session_ids import SessionCodec

pytestmark = pytest.mark.unit


def test_plain_servers_keep_their_names_unless_contested():
    pairs = [("a", "search"), ("b", "search"), ("b", "fetch"), ("c", "fetch"), ("c", "only_c")]
    names = gateway_names(pairs, plain={"a", "b"})
    # "search" is offered by two plain servers: both fall back to namespacing, whoever connected first
    assert names["a__search"] == ("a", "search") and names["b__search"] == ("b", "search")
    assert names["fetch"] == ("b", "fetch")  # c is namespaced, so b's plain name is uncontested
    assert names["c__fetch"] == ("c", "fetch") and names["c__only_c"] == ("c", "only_c")
    assert len(names) == len(pairs)


def test_a_namespaced_name_wins_over_a_plain_one_of_the_same_spelling():
    names = gateway_names([("x", "y__z"), ("y", "z")], plain={"x"})
    assert names["y__z"] == ("y", "z") and ("x", "y__z") in names.values()
    assert len(set(names)) == 2


def test_invalid_plain_names_are_namespaced():
    names = gateway_names([("p", "has space")], plain={"p"})
    assert list(names.values()) == [("p", "has space")] and "has space" not in names


def _catalog(server: str, **fields) -> bytes:
    return ServerCatalog(server=server, status="ready", **fields).model_dump_json().encode()


def test_resources_route_by_exact_uri_then_by_template():
    catalog = Catalog()
    catalog.put(
        "docs",
        _catalog(
            "docs",
            resources=[{"uri": "file:///readme", "name": "readme"}],
            resource_templates=[{"uriTemplate": "file:///notes/{id}", "name": "note"}],
            capabilities={"resources": {"subscribe": True}},
        ),
    )
    catalog.put(
        "web",
        _catalog(
            "web",
            resource_templates=[{"uriTemplate": "https://{+rest}", "name": "page"}],
            tools=[CatalogTool(tool="get", definition={"name": "get", "inputSchema": {}})],
        ),
    )
    assert catalog.resource_owner("file:///readme").server == "docs"
    assert catalog.resource_owner("file:///notes/7").server == "docs"
    assert catalog.resource_owner("file:///notes/7/deeper") is None  # a simple expression is one segment
    assert catalog.resource_owner("https://example.com/a/b?c=d").server == "web"
    assert catalog.resource_owner("ftp://nowhere") is None
    assert catalog.template_owner("file:///notes/{id}").server == "docs"
    assert catalog.capabilities == {"resources": {"subscribe": True}}
    assert [entry.target for entry in catalog.templates.entries] == [
        "resource:file:///notes/{id}",
        "resource:https://{+rest}",
    ]


def test_prompts_are_namespaced_like_tools():
    catalog = Catalog()
    catalog.put("docs", _catalog("docs", prompts=[{"name": "review"}]))
    catalog.put("plain", _catalog("plain", namespace=False, prompts=[{"name": "summarize"}]))
    assert set(catalog.prompt_by_name) == {"docs__review", "summarize"}
    assert catalog.prompt_by_name["summarize"].target == "prompt:summarize"


@pytest.mark.parametrize("subject", ["_INBOX.abc.1", "_INBOX.x" * 20])
def test_reply_ids_round_trip_only_for_their_key(subject):
    codec = SessionCodec("secret")
    reply_id = codec.reply_id(subject, "key-a")
    assert codec.reply_subject(reply_id, "key-a") == subject
    assert codec.reply_subject(reply_id, "key-b") is None  # another key cannot answer for it
    assert codec.reply_subject(reply_id[:-2] + "zz", "key-a") is None
    assert SessionCodec("other").reply_subject(reply_id, "key-a") is None
    assert codec.reply_subject(7, "key-a") is None


def test_a_heartbeat_of_an_entry_rebuilds_nothing_but_a_new_listing_does():
    catalog = Catalog()
    get = CatalogTool(tool="get", definition={"name": "get", "inputSchema": {}})
    first = ServerCatalog(server="web", status="ready", tools=[get], publisher="a-1", updated_at=100.0)
    assert catalog.put("web", first.model_dump_json().encode())
    revision = catalog.revision
    beat = first.model_copy(update={"publisher": "b-2", "updated_at": 110.0})
    assert not catalog.put("web", beat.model_dump_json().encode())
    assert catalog.revision == revision
    status = catalog.server_status("web")
    assert status is not None and (status.publisher, status.updated_at) == ("b-2", 110.0)  # kept, for its age
    put = CatalogTool(tool="put", definition={"name": "put", "inputSchema": {}})
    assert catalog.put("web", beat.model_copy(update={"tools": [get, put]}).model_dump_json().encode())
    assert catalog.revision > revision and {e.tool for e in catalog.entries} == {"get", "put"}
    down = beat.model_copy(update={"status": "unavailable", "tools": []})
    assert catalog.put("web", down.model_dump_json().encode()) and catalog.entries == []


def _down(server: str, **fields) -> bytes:
    return ServerCatalog(server=server, status="unavailable", health="down", **fields).model_dump_json().encode()


def test_a_name_is_owned_by_the_unavailable_server_its_prefix_names_else_by_the_plain_ones():
    catalog = Catalog()
    catalog.put("gh", _catalog("gh", tools=[CatalogTool(tool="search", definition={"name": "search"})]))
    catalog.put("jira", _down("jira", error="command not found: jira-mcp"))
    catalog.put("my.files", _down("my.files", error="refused"))
    catalog.put("local", _down("local", error="exited", namespace=False))
    assert set(catalog.down) == {"jira", "my.files", "local"}
    assert catalog.down_owners("jira__create_issue") == [("jira", "create_issue")]
    assert catalog.down_owners("my_files__read") == [("my.files", "read")]  # the server's slug prefixes its tools
    # no prefix matches: only a server that keeps its tools' own names could offer it
    assert catalog.down_owners("jira__") == [("local", "jira__")]
    assert catalog.down_owners("read_file") == [("local", "read_file")]
    catalog.put("local", _catalog("local", namespace=False))  # back: nothing is down there any more
    assert catalog.down_owners("read_file") == [] and "local" not in catalog.down


def test_healthz_names_the_servers_listed_whole_so_a_configured_one_in_neither_list_is_still_starting():
    from services.ingress.sending.down_servers import health_body

    catalog = Catalog()
    prompt = {"name": "summarize", "description": "summarize the notes"}
    catalog.put("notes", _catalog("notes", prompts=[prompt]))
    catalog.put("jira", _down("jira", error="command not found: jira-mcp"))
    body = health_body(True, catalog)
    assert (body["status"], body["ready"], body["unavailable"]) == ("degraded", ["notes"], ["jira"])
    assert [entry.name for entry in catalog.prompts.entries] == ["notes__summarize"]  # listed with its "ready"
    catalog.put("notes", _down("notes", error="exited"))
    assert health_body(True, catalog)["ready"] == []
