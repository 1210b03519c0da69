"""Code Mode stubs over the 16 real tool schemas in tests/data (search: test_codemode_search.py)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from services.codemode.stubs import list_files, render_docs, render_file, signature, type_of
from services.codemode.toolset import Toolset, identifier

pytestmark = pytest.mark.unit


def _tools(folder: Path) -> list[tuple[str, dict]]:
    return [
        (path.stem, tool) for path in sorted(folder.glob("*.json")) for tool in json.loads(path.read_text())["tools"]
    ]


@pytest.fixture(scope="module")
def real_tools(tool_schemas_dir: Path) -> list[tuple[str, dict]]:
    return _tools(tool_schemas_dir)


@pytest.fixture(scope="module")
def toolset(real_tools) -> Toolset:
    return Toolset(real_tools)


def test_every_real_tool_appears_in_its_stub_file(real_tools, toolset):
    assert len(toolset) == len(real_tools) == 516
    for module, specs in toolset.modules.items():
        tree = ast.parse(render_file(toolset, module))
        defined = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
        assert defined == [spec.function for spec in specs]
    listed = {(spec.server, spec.tool) for spec in toolset.by_name.values()}
    assert listed == {(server, tool["name"]) for server, tool in real_tools}


def test_required_parameters_come_before_optional_ones_and_defaults_are_literals(toolset):
    for module in toolset.modules:
        for node in ast.parse(render_file(toolset, module)).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            spec = toolset.by_name[f"{module}.{node.name}"]
            required = set(spec.schema.get("required") or [])
            names = [spec.params.get(arg.arg, arg.arg) for arg in node.args.args]
            first_optional = len(node.args.args) - len(node.args.defaults)
            assert all(name in required for name in names[:first_optional]), spec.qualified
            assert not any(name in required for name in names[first_optional:]), spec.qualified
            for default in node.args.defaults:
                ast.literal_eval(default) if not isinstance(default, ast.Constant) else None


def test_stubs_are_stable_whatever_the_input_order(real_tools, toolset):
    again = Toolset(list(reversed(real_tools)))
    for module in toolset.modules:
        assert render_file(again, module) == render_file(toolset, module)
    assert list_files(again) == list_files(toolset)


def test_list_files_has_one_line_per_server_in_the_contract_shape(toolset):
    lines = list_files(toolset).splitlines()
    assert len(lines) == 16
    assert lines[4].startswith("servers/github_legacy.py  26 tools — server github-legacy: ")


def test_types_read_like_python():
    assert type_of({"type": "string", "enum": ["open", "closed"]}) == 'Literal["open", "closed"]'
    assert type_of({"type": "array", "items": {"type": "integer"}}) == "list[int]"
    assert type_of({"type": ["number", "null"]}) == "float | None"
    nested = {"type": "object", "properties": {"b": {"type": "boolean"}, "a": {"type": "string"}}, "required": ["a"]}
    assert type_of(nested) == '{"a": str, "b?": bool}'
    assert type_of({"type": "object", "additionalProperties": {"type": "string"}}) == "dict[str, str]"
    ref = {"$defs": {"P": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/P"}}
    assert type_of(ref) == "list[int]"


def test_awkward_names_become_identifiers_that_map_back():
    toolset = Toolset(
        [
            ("my-server", {"name": "get-item", "inputSchema": {"properties": {"from": {}, "per-page": {}}}}),
            ("my_server", {"name": "class", "description": 'Ends with a quote "x"', "inputSchema": {}}),
        ]
    )
    assert sorted(toolset.by_name) == ["my_server.get_item", "my_server_2.class_"]
    spec = toolset.by_name["my_server.get_item"]
    assert signature(spec) == "(from_: Any = None, per_page: Any = None)"
    assert spec.upstream_arguments({"from_": 1, "per_page": 2}) == {"from": 1, "per-page": 2}
    ast.parse(render_file(toolset, "my_server_2"))
    assert identifier("3d") == "_3d"


def test_docs_carry_the_full_description_and_every_parameter(toolset):
    spec = toolset.by_name["github_legacy.create_pull_request_review"]
    docs = render_docs(spec)
    assert docs.startswith("github_legacy.create_pull_request_review(owner: str, repo: str, pull_number: float")
    for name in spec.schema["properties"]:
        assert f"- {name}: " in docs
    assert '"enum": ["APPROVE", "REQUEST_CHANGES", "COMMENT"]' in docs


def test_closest_names_for_a_typo(toolset):
    assert toolset.closest("github_legacy.create_isue")[0] == "github_legacy.create_issue"
    assert "github_legacy.create_issue" in toolset.closest("github.create_issue")
