"""Skills (`io.modelcontextprotocol/skills`, SEP-2640) through the gateway.

What a skill entry must be to be served, and how its URIs are named to agents (docs/skills.md).

An upstream's `skill://<path>/SKILL.md` is offered as `skill://<server>/<path>/SKILL.md`: the
server becomes the first segment of the skill path's organizational prefix, which the extension
leaves to the server, so the skill's name (the last segment) is unchanged and two servers' skills
never collide. Grants name a skill by its upstream skill path: `<server>/skill:<path>`.

An entry is served only when it is well formed and within the extension's limits: `resources`
complete (an array listing `SKILL.md`) or "dynamic", at most 512 files and 16 MiB in all. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from libs.common.contracts.namespaced_uris import namespaced_uri, split_namespaced

__all__ = [
    "EXTENSION",
    "MAX_FILES",
    "MAX_SKILL_BYTES",
    "SCHEME",
    "SKILL_FILE",
    "entry_for_gateway",
    "skill_path",
    "skill_problem",
    "upstream_skill_uri",
]

MAX_FILES: Final = 512
MAX_SKILL_BYTES: Final = 16 * 1024 * 1024
"""The extension's per-skill limits: what every conforming host accepts."""
EXTENSION: Final = "io.modelcontextprotocol/skills"
SCHEME: Final = "skill://"
SKILL_FILE: Final = "SKILL.md"


def skill_path(uri: str) -> str | None:
    """The skill path of a `SKILL.md` URI (`skill://acme/refunds/SKILL.md` -> `acme/refunds`).

    Or None when `uri` names no `SKILL.md` under `skill://`."""
    suffix = "/" + SKILL_FILE
    if not uri.startswith(SCHEME) or not uri.endswith(suffix) or len(uri) <= len(SCHEME) + len(suffix):
        return None
    return uri[len(SCHEME) : -len(suffix)]


def skill_problem(entry: Any) -> str | None:
    """Why an upstream's skill entry is not served (None: it is well formed and within the limits)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("uri"), str):
        return "an entry without a uri"
    if not isinstance(entry.get("frontmatter"), Mapping):
        return "an entry without frontmatter"
    files = entry.get("resources")
    if files == "dynamic":
        return None
    if not isinstance(files, list) or not all(isinstance(f, Mapping) and isinstance(f.get("uri"), str) for f in files):
        return "resources is neither a list of files nor 'dynamic'"
    if len(files) > MAX_FILES:
        return f"{len(files)} files, more than the {MAX_FILES} a skill may have"
    size = sum(f["size"] for f in files if isinstance(f.get("size"), int))
    if size > MAX_SKILL_BYTES:
        return f"{size} bytes, more than the {MAX_SKILL_BYTES} a skill may have"
    if not any(f["uri"] == entry["uri"] for f in files):
        return "resources does not list its SKILL.md"
    return None


def entry_for_gateway(server: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """An upstream's skill entry with its `skill://` URIs (its own and each file's) named for agents."""
    named = {**entry, "uri": namespaced_uri(server, entry["uri"], SCHEME)}
    files = entry.get("resources")
    if isinstance(files, list):
        named["resources"] = [{**f, "uri": namespaced_uri(server, f["uri"], SCHEME)} for f in files]
    return named


def upstream_skill_uri(uri: str) -> tuple[str, str]:
    """(server, the upstream's own URI) of a gateway `skill://<server>/...`; ValueError saying why not."""
    return split_namespaced(uri, SCHEME)
