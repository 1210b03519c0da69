"""Fixtures of the unit tests that several modules share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from services.codemode.embedding import Embedder


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """Code Mode's embedding model, loaded once per module (imported here only by the modules that ask)."""
    from services.codemode import embedding

    loaded = embedding.load()
    if isinstance(loaded, str):
        pytest.fail(f"the embedding model is a declared dependency and must load: {loaded}")
    return loaded
