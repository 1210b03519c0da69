"""The gateway's own skills (docs/skills.md).

Agent Skills an owner puts in a folder (`BASTION_SKILLS_DIR`), one directory each with its `SKILL.md`,
served to every agent beside the upstreams' skills, as `skill://_gateway/<name>/<file>`, granted as
`_gateway/skill:<name>`.

Read once, when ingress starts, into memory. A skill is served only whole and within bounds: its
name valid and equal to its directory's, frontmatter with `name` and `description`, every file
regular (a link is refused, so nothing outside the folder is served) and at most
`BASTION_SKILL_FILE_MAX_BYTES`, at most `MAX_FILES` files and `MAX_SKILL_BYTES` in all. Anything else
is left out, named in the log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from libs.common.contracts.skills import MAX_FILES, MAX_SKILL_BYTES, SCHEME, SKILL_FILE

__all__ = ["GATEWAY", "OwnSkills", "load_skills"]

log = logging.getLogger(__name__)

GATEWAY: Final = "_gateway"
"""The server part of the gateway's own skills' URIs and grants: no configured server can be named so."""
_NAME: Final = re.compile(r"\A[a-z0-9](?:[a-z0-9]|-(?!-)){0,63}(?<!-)\Z")
"""The Agent Skills naming rule: lowercase letters, digits and single hyphens, at most 64."""
_MAX_SKILLS: Final = 256


@dataclass(frozen=True, slots=True)
class OwnSkills:
    entries: list[dict[str, Any]] = field(default_factory=list)
    """`skills/list` entries, URIs as agents see them."""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """URI -> (the file's bytes, its MIME type)."""

    def read(self, uri: str) -> dict[str, Any] | None:
        """The `resources/read` result of one file, or None when no skill holds it."""
        held = self.files.get(uri)
        if held is None:
            return None
        data, mime = held
        try:
            return {"contents": [{"uri": uri, "mimeType": mime, "text": data.decode("utf-8")}]}
        except UnicodeDecodeError:
            return {"contents": [{"uri": uri, "mimeType": mime, "blob": base64.b64encode(data).decode()}]}


def load_skills(folder: Path | None, max_file_bytes: int) -> OwnSkills:
    """Every servable skill under `folder` (None: the gateway serves none of its own)."""
    skills = OwnSkills()
    if folder is None:
        return skills
    for directory in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())[:_MAX_SKILLS]:
        try:
            entry, files = _skill(directory, max_file_bytes)
        except ValueError as exc:
            log.warning("skills: %s is not served: %s", directory.name, exc)
            continue
        skills.entries.append(entry)
        skills.files.update(files)
    log.info("skills: %d of the gateway's own served from %s", len(skills.entries), folder)
    return skills


def _skill(directory: Path, max_file_bytes: int) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    name = directory.name
    if not _NAME.match(name):
        raise ValueError("its name is not a valid skill name (lowercase letters, digits, single hyphens)")
    paths = sorted(p for p in directory.rglob("*") if not p.is_dir() or p.is_symlink())
    if len(paths) > MAX_FILES:
        raise ValueError(f"more than {MAX_FILES} files")
    files: dict[str, tuple[bytes, str]] = {}
    manifest, total = [], 0
    for path in paths:
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"{path.relative_to(directory)} is not a regular file")
        size = path.stat().st_size
        total += size
        if size > max_file_bytes or total > MAX_SKILL_BYTES:
            raise ValueError(
                f"{path.relative_to(directory)} makes it too large ({max_file_bytes} bytes a file at most)"
            )
        data = path.read_bytes()
        uri = f"{SCHEME}{GATEWAY}/{name}/{path.relative_to(directory).as_posix()}"
        mime = "text/markdown" if path.suffix == ".md" else mimetypes.guess_type(path.name)[0] or "text/plain"
        files[uri] = (data, mime)
        manifest.append({"uri": uri, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)})
    root = f"{SCHEME}{GATEWAY}/{name}/{SKILL_FILE}"
    if root not in files:
        raise ValueError(f"no {SKILL_FILE}")
    frontmatter = _frontmatter(files[root][0])
    if frontmatter.get("name") != name:
        raise ValueError(f"its {SKILL_FILE} names it {frontmatter.get('name')!r}, not its directory's name")
    return {"uri": root, "frontmatter": frontmatter, "resources": manifest}, files


def _frontmatter(data: bytes) -> dict[str, Any]:
    text = data.decode("utf-8", "replace")
    head, sep, rest = text.partition("\n")
    body, end, _ = rest.partition("\n---")
    if head.strip() != "---" or not sep or not end:
        raise ValueError(f"its {SKILL_FILE} does not begin with YAML frontmatter between '---' lines")
    try:
        parsed = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise ValueError(f"its frontmatter is not YAML ({exc.__class__.__name__})") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("description"), str):
        raise ValueError("its frontmatter lacks a name and a description")
    return parsed
