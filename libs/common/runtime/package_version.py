"""Bastion's own version, read once from its installed metadata.

Read before a service's OS box closes (`libs.common.runtime.walls.boxes.confine_service` asks for it): in a
checkout the metadata may sit beside the data dir (`bastion_gateway.egg-info` in the checkout root),
a folder the box refuses, and `importlib.metadata` then answers `None`, not an error.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Final

__all__ = ["DISTRIBUTION", "UNKNOWN", "bastion_version"]

DISTRIBUTION: Final = "bastion-gateway"
UNKNOWN: Final = "0+unknown"
"""A source tree that was never installed: still a version string (FastAPI's OpenAPI needs one)."""


@functools.cache
def bastion_version() -> str:
    """The installed `bastion-gateway` version, the first time it is asked for; the same answer after."""
    try:
        found = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN
    return found if isinstance(found, str) and found else UNKNOWN
