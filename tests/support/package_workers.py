"""Under `--dist loadfile`, the files of a test package run in one xdist worker, not a worker each.

A package's package-scoped fixtures (`tests/integration/console/conftest.py`: a stack with a
1,200-tool server and a browser) start once in each worker that runs one of its files; spread over
three workers, one stack would start three times. So a test file in a folder with an `__init__.py`
is scheduled with the rest of its folder, as one unit of work; every other file stays its own unit.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest

__all__ = ["pytest_xdist_make_scheduler"]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The scheduler of `--dist loadfile` grouping a package's files; xdist's own for any other mode."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # only where xdist runs the tests

    root = config.rootpath

    @cache
    def unit(path: str) -> str:
        folder = Path(path).parent
        return folder.as_posix() if (root / folder / "__init__.py").is_file() and folder != Path("tests") else path

    class PackageAsOneFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid.split("::", 1)[0])

    return PackageAsOneFile(config, log)
