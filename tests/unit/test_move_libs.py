"""tools/move_libs.py, the move of libs/common's flat modules into packages: every module it names is
where it says, its rewrite is a fixed point, and no file in the tree still names an old module."""

import pytest

from tools.move_libs import COMMON, MOVES, SPLITS, _files, rewrite

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
    ],
)
def test_an_old_name_is_rewritten_once(old, new):
    assert rewrite(old) == new
    assert rewrite(new) == new


def test_no_file_names_an_old_module():
    """A file merged after the move that still says `libs.common.messages` fails here: run
    `.venv/bin/python tools/move_libs.py`."""
    stale = [str(path) for path in _files() if rewrite(text := path.read_text()) != text]
    assert not stale, f"old libs.common module names in {stale}: run tools/move_libs.py"
