"""Logging setup shared by the services: one line per record, secrets scrubbed."""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["setup_logging"]

_SECRET = re.compile(r"(bk_[A-Za-z0-9_-]{8})[A-Za-z0-9_-]+|(Bearer\s+)[^\s\"',]+", re.IGNORECASE)


class _Scrub(logging.Filter):
    """Belt and braces: whatever a library logs, a bearer token or a Bastion key never gets out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _SECRET.sub(lambda m: (m.group(1) + "…") if m.group(1) else (m.group(2) + "[redacted]"), message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Scrub())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpx2", "httpcore", "mcp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
