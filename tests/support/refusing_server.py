"""The echo example server over stdio, except while the file named by $REFUSE_WHILE exists: then it
exits at once, before any MCP handshake (an upstream one executor replica cannot reach)."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

ECHO = Path(__file__).resolve().parents[2] / "examples" / "servers" / "echo_server.py"

if __name__ == "__main__":
    marker = os.environ.get("REFUSE_WHILE", "")
    if marker and Path(marker).exists():
        print(f"refusing: {marker} exists", file=sys.stderr)
        sys.exit(1)
    sys.path.insert(0, str(ECHO.parent))
    runpy.run_path(str(ECHO), run_name="__main__")
