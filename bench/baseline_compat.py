"""Imported first by every Python process of a baseline build (`baseline_env.py` copies it beside the
baseline's interpreter): it adapts the packages installed today to the calls an older commit makes of them,
so that commit's services start under this checkout's `.venv`. Each adapter acts only where the installed
package lacks what the old code asks for."""

from __future__ import annotations

import inspect
from typing import Any


def _tenacity_multiplier() -> None:
    """`wait_exponential_jitter(multiplier=...)`, as commits that required tenacity >= 9.2 call it; the test
    extra now holds tenacity below 9.2 (google-genai), where the same argument is named `initial`."""
    import tenacity

    original = tenacity.wait_exponential_jitter
    if "multiplier" in inspect.signature(original.__init__).parameters:
        return

    class wait_exponential_jitter(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, multiplier: float | None = None, **kwargs: Any) -> None:
            if multiplier is not None:
                kwargs.setdefault("initial", multiplier)
            super().__init__(*args, **kwargs)

    tenacity.wait_exponential_jitter = wait_exponential_jitter  # type: ignore[misc]
    tenacity.wait.wait_exponential_jitter = wait_exponential_jitter  # type: ignore[misc]


_tenacity_multiplier()
