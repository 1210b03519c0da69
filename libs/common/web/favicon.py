"""Bastion's icon, served at `/favicon.ico` by the services that serve pages (admin, ingress).

A browser asks for it on every page, and a 404 there is noise in its console and in the access log.

Drawn here (a 16x16 tower on a blue square) and encoded once as a PNG inside an ICO container, so no
binary file is shipped and nothing loads from elsewhere.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

__all__ = ["FAVICON", "FAVICON_TYPE"]

FAVICON_TYPE: Final = "image/x-icon"

_SIZE = 16
_BLUE = (11, 92, 173, 255)
_WHITE = (255, 255, 255, 255)
_CLEAR = (0, 0, 0, 0)
_TOWER = (
    "................",
    ".##############.",
    ".##############.",
    ".####.#..#.####.",
    ".####......####.",
    ".#####....#####.",
    ".#####....#####.",
    ".#####....#####.",
    ".#####....#####.",
    ".#####....#####.",
    ".#####....#####.",
    ".####......####.",
    ".####......####.",
    ".##############.",
    ".##############.",
    "................",
)
"""`#` blue, `.` inside the square white (the tower), `.` on the border clear."""


def _pixel(row: int, column: int) -> tuple[int, int, int, int]:
    if row in (0, _SIZE - 1) or column in (0, _SIZE - 1):
        return _CLEAR
    return _BLUE if _TOWER[row][column] == "#" else _WHITE


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png() -> bytes:
    rows = b"".join(b"\x00" + b"".join(bytes(_pixel(row, column)) for column in range(_SIZE)) for row in range(_SIZE))
    header = struct.pack(">IIBBBBB", _SIZE, _SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _ico(png: bytes) -> bytes:
    directory = struct.pack("<HHH", 0, 1, 1)  # reserved, type icon, one image
    entry = struct.pack("<BBBBHHII", _SIZE, _SIZE, 0, 0, 1, 32, len(png), 6 + 16)
    return directory + entry + png


FAVICON: Final = _ico(_png())
