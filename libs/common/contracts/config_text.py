"""Configuration text parsed into plain values, before any model sees it.

YAML or JSON with a key written twice refused (not "the last one wins"), parser errors that never echo
the source line (it may hold a secret), and, for a document sent over the network, a bound on what its
aliases expand to. `libs.common.contracts.config` validates what these return."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from libs.common.contracts.repeats import first_repeat

__all__ = ["MAX_UNTRUSTED_VALUES", "ConfigError", "parse_text", "parse_untrusted_text"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending field."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key written twice in one mapping instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, Any]] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may legitimately be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = (type(key).__name__, key) in seen
            except TypeError:
                continue  # unhashable key: SafeLoader reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add((type(key).__name__, key))
        return super().construct_mapping(node, deep=deep)


def _unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads hook: a key written twice in one object is an error, not "the last one wins"."""
    if (twice := first_repeat(key for key, _ in pairs)) is not None:
        raise ValueError(f"duplicate key {twice!r}")
    return dict(pairs)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint and position, without the echoed source line (it may hold a secret)."""
    if isinstance(exc, yaml.reader.ReaderError):  # a control character, or bytes that are not text
        return f"character #x{exc.character:04x} is not allowed (position {exc.position})"
    if not isinstance(exc, yaml.MarkedYAMLError):  # pragma: no cover - the parsers always mark
        return type(exc).__name__
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    context = f" ({exc.context})" if exc.context else ""
    return f"{exc.problem}{context}{where}"


def parse_text(text: str, path: Path) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text, object_pairs_hook=_unique_json_object)
        except ValueError as exc:  # JSONDecodeError, or a duplicate key
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # a scalar that looks like a date but is not one: 2024-02-30
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


MAX_UNTRUSTED_VALUES = 100_000
"""Values (mappings, lists, scalars) a document sent over the network may expand to, aliases counted
as often as they are used: a YAML bomb (a few lines of nested aliases) expands to billions."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], source: str) -> int:
    """How many values `node` stands for once its aliases are expanded, each node counted once (`sizes`)."""
    known = sizes.get(id(node))
    if known is not None:
        if known < 0:
            raise ConfigError(f"{source}: a YAML alias refers to a value that contains it")
        return known
    sizes[id(node)] = -1  # being counted: meeting it again below is a cycle
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, source)
        if total > MAX_UNTRUSTED_VALUES:
            raise ConfigError(f"{source}: the document expands to more than {MAX_UNTRUSTED_VALUES} values")
    sizes[id(node)] = total
    return total


def parse_untrusted_text(text: str, source: str) -> Any:
    """A YAML (or JSON) document from someone else, e.g. sent to the admin API.

    Parsed as a config file is, refusing documents whose aliases expand past `MAX_UNTRUSTED_VALUES` or
    that nest too deep for the parser. `ConfigError` on any problem; the message never echoes the text."""
    loader = None
    try:
        loader = _UniqueKeyLoader(text)  # refuses a control character at once
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # a scalar that looks like a date but is not one: 2024-02-30
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the document nests too deep") from None
    finally:
        if loader is not None:
            loader.dispose()
