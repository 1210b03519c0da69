"""The `gate` upstream (`gate_server.py`): a stdio server whose calls wait for their gate, a file, to open."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

GATE_SERVER = Path(__file__).with_name("gate_server.py")


def gate_upstream(gates: Path) -> dict[str, Any]:
    """The `gate` server's config, its gates in `gates` (made if missing): the one folder its sandbox may write."""
    gates.mkdir(parents=True, exist_ok=True)
    return {
        "command": sys.executable,
        "args": [str(GATE_SERVER)],
        "env": {"GATE_DIR": str(gates)},
        "sandbox": {"write": [str(gates)]},
    }
