"""tools/move_libs.py and tools/move_ingress.py, the moves of libs/common's and services/ingress's
flat modules into packages: every module they name is where they say, their rewrites are fixed
points, and no file in the tree still names an old module."""

import pytest

from tools import move_ingress
from tools.move_libs import COMMON, MOVES, OWN_FILES, ROOT, SPLITS, _files, rewrite

pytestmark = pytest.mark.unit


def test_every_moved_module_is_where_the_mapping_says():
    targets = [*MOVES.values(), *(new for split in SPLITS.values() for new in split.values())]
    for new in targets:
        path = COMMON / new.replace(".", "/")
        assert path.with_suffix(".py").exists() or (path / "__init__.py").exists(), new
    for old in MOVES:
        assert not (COMMON / f"{old}.py").exists(), f"libs/common/{old}.py is still at the top level"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "from libs.common import nats, settings",
            "from libs.common.bus import nats\nfrom libs.common import settings",
        ),
        ("from libs.common import analytics", "from libs.common.analytics import queries as analytics"),
        (
            "from libs.common.egress import EgressRules, EgressSection",
            "from libs.common.web.egress_rules import EgressRules\n"
            "from libs.common.contracts.egress import EgressSection",
        ),
        ("python -m libs.common.walls.confine", "python -m libs.common.runtime.walls.confine"),
        ("(../libs/common/permissions.py)", "(../libs/common/bus/permissions.py)"),
        ("`libs.common.analytics.ask`", "`libs.common.analytics.asking.ask`"),
        (  # split after the move: the moved name is rewritten too
            "from libs.common.contracts.config import ConfigError, load_config",
            "from libs.common.contracts.config import ConfigError\n"
            "from libs.common.settings.config_file import load_config",
        ),
        (
            "from libs.common.contracts.config_records import CONFIG_SOURCE, key_records",
            "from libs.common.contracts.config_records import CONFIG_SOURCE\n"
            "from libs.common.settings.config_file import key_records",
        ),
        ("`libs.common.contracts.config.parse_config`", "`libs.common.settings.config_file.parse_config`"),
        (
            "from libs.common.contracts.messages_routed import Grant, RoutedHead",
            "from libs.common.contracts.messages_policy import Grant\n"
            "from libs.common.contracts.messages_routed import RoutedHead",
        ),
        (
            "from services.ingress.task_router import TaskRouter",
            "from services.ingress.tasks.task_router import TaskRouter",
        ),
        ("from services.ingress import streams as s", "from services.ingress.sessions import streams as s"),
        (
            "from services.ingress import sessions, handlers",
            "from services.ingress.sessions import session_ids as sessions\nfrom services.ingress import handlers",
        ),
        (
            "from services.ingress.sessions import SessionIds",
            "from services.ingress.sessions.session_ids import SessionIds",
        ),
        ("from services.ingress.catalog import tool_lists", "from services.ingress.catalog import tool_lists"),
        ("`services.ingress.catalog.Catalog`", "`services.ingress.catalog.aggregated.Catalog`"),
        ("(services/ingress/request_path.py)", "(services/ingress/sending/request_path.py)"),
        ("services/ingress/sessions/", "services/ingress/sessions/"),
    ],
)
def test_an_old_name_is_rewritten_once(old, new):
    moved = move_ingress.rewrite if "services" in old else rewrite
    assert moved(old) == new
    assert moved(new) == new


@pytest.mark.parametrize(
    ("move", "own"),
    [("move_libs", OWN_FILES), ("move_ingress", move_ingress.OWN_FILES)],
)
def test_no_file_names_an_old_module(move, own):
    """A file merged after a move that still says `libs.common.messages` or
    `services.ingress.request_path` fails here: run `.venv/bin/python tools/<move>.py`."""
    moved = rewrite if move == "move_libs" else move_ingress.rewrite
    stale = [str(path) for path in _files(own) if moved(text := path.read_text()) != text]
    assert not stale, f"old module names in {stale}: run tools/{move}.py"


def test_the_files_a_move_reads_are_the_ones_git_would_commit():
    """What a test run installs under ignored folders (`.tools`' venvs) is no file of ours: a stale
    name there neither fails the rule nor gets rewritten by a move, and reading it cost half a minute."""
    probe = ROOT / ".tools" / "move-libs-probe" / "stale.py"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("from libs.common import nats\n")
    try:
        files = set(_files())
    finally:
        probe.unlink()
        probe.parent.rmdir()
    assert probe not in files
    assert ROOT / "tools" / "move_ingress.py" in files and ROOT / "README.md" in files
