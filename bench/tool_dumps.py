"""Which real `tools/list` dumps a benchmark reads: a folder's every `*.json`, or a list of them.

`--schemas` of the benchmarks takes either a folder (every dump in it) or a `.txt` file beside
the dumps naming one file stem a line (`#` starts a comment). tests/data/tool-schemas holds 68
servers; `code-mode-set.txt` there names the 16 the Code Mode figures of docs/benchmarks.md were
measured on, so those stay reproducible as the folder grows.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CODE_MODE_SET", "DUMPS", "dump_files"]

DUMPS = Path(__file__).resolve().parents[1] / "tests" / "data" / "tool-schemas"
CODE_MODE_SET = DUMPS / "code-mode-set.txt"


def dump_files(schemas: Path) -> list[Path]:
    """The dump files `schemas` stands for, sorted by name; a named dump that is missing fails loudly."""
    if schemas.is_dir():
        return sorted(schemas.glob("*.json"))
    stems = [line.split("#", 1)[0].strip() for line in schemas.read_text().splitlines()]
    files = sorted(schemas.parent / f"{stem}.json" for stem in stems if stem)
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise SystemExit(f"{schemas} names dumps that are not there: {', '.join(missing)}")
    return files
