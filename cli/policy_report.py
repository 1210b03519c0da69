"""What `bastion config check` says about a config file's Cedar policies (docs/policy.md).

How many it compiled and which, each at its line in the file, or the line of the file where the policy
that does not compile starts.

A YAML block scalar (`policies: |`) keeps the text's lines, so a line of the policies is a line of the
file; any other form (a JSON string, a quoted or folded scalar) is named by the line of the policies'
text alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

    from libs.common.cedar.cedar_policies import PolicyInfo

__all__ = ["PolicyText", "policy_problem", "policy_text", "print_policy_report"]


@dataclass(frozen=True, slots=True)
class PolicyText:
    text: str
    first_line: int | None
    """The file's line holding the text's first line (a `|` block scalar), else None."""

    def where(self, line: int | None) -> str:
        """`line` of the text as a reader finds it: the file's line when known."""
        if line is None:
            return "the policies"
        if self.first_line is None:
            return f"line {line} of the policies' text"
        return f"line {self.first_line + line - 1}"


def policy_text(file: Path) -> PolicyText | None:
    """The `policies` of the config file `file` with where its text starts.

    None when it has none (or the file does not read as YAML: the config's own check says why)."""
    try:
        root = yaml.compose(file.read_text(encoding="utf-8-sig"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "policies" and isinstance(value, yaml.ScalarNode):
            if value.tag != "tag:yaml.org,2002:str" and value.style is None:
                return None  # `policies: null`, a number: the config's own check says why
            # a literal block keeps every line: its text starts on the line after the `|`
            first = value.start_mark.line + 2 if value.style == "|" else None
            return PolicyText(value.value, first)
    return None


def policy_problem(file: Path) -> str | None:
    """Why the file's policies do not compile, naming the file's line where that policy starts.

    None when they compile or there are none."""
    from libs.common.cedar.cedar_policies import PolicyProblem, compile_policies

    found = policy_text(file)
    if found is None:
        return None
    try:
        compile_policies(found.text)
    except PolicyProblem as exc:
        return f"{file}: policies: the policy starting at {found.where(exc.line)} does not compile: {exc.detail}"
    return None


def print_policy_report(file: Path, policies: str | None, out: Console) -> None:
    """The policies `config check` compiled: how many, and each one's id, line and what it does."""
    from libs.common.cedar.cedar_policies import compile_policies

    if policies is None:
        out.print("[bold]policies[/]: none in this file (a running stack keeps the ones it has)")
        return
    compiled = compile_policies(policies)  # the config's validation compiled them already
    found = policy_text(file) or PolicyText(policies, None)
    infos = list(compiled.policies.values())
    if not infos:
        out.print(f"[bold]policies[/]: none in {escape(str(file))}'s policies block (grants alone decide)")
        return
    out.print(f"[bold]policies[/] ({len(infos)} Cedar, from {escape(str(file))}), all compile:")
    width = max(len(info.id) for info in infos)
    for info in infos:
        out.print(f"  {escape(info.id):<{width}}  {found.where(info.line)}: {escape(_what(info))}", soft_wrap=True)


def _what(info: PolicyInfo) -> str:
    if info.approval is not None:
        effect = f"approval by {info.approval}"
    elif info.confirm is not None:
        effect = "the user confirms"
    else:
        effect = "forbid"
    return effect + (", decided per call" if info.per_call else "") + (f" ({info.reason})" if info.reason else "")
