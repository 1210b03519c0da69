"""What compiling Bastion's hot path to C with mypyc buys, beside this checkout, in one `./run bench` run.

    .venv/bin/python bench/mypyc_core.py                # co-located, 3 rounds
    .venv/bin/python bench/mypyc_core.py --separate --rounds 5
    .venv/bin/python bench/mypyc_core.py --keep /tmp/compiled   # keep the compiled tree

mypyc (it ships in the mypy wheel the gates install) compiles type-annotated Python to a C extension
per module; black and mypy ship that way. It is what "a compiled core" costs least to get: the same
code, no rewrite. This script exports HEAD's tree (`baseline_env.export_tree`), adapts the few
constructs mypyc refuses or compiles wrongly (`adapt`, each edit failing loudly once its text is gone),
compiles `MODULES` (`MYPYC_OPT_LEVEL=3`; needs gcc and Python's headers), and runs `./run bench` with
the compiled tree as a variant (`--variant PYTHONPATH=… BENCH_PYTHON=…`), so both builds serve the
same upstream, interleaved, round by round.

`MODULES` are the ones that execute the most bytecodes per `tools/call` (`hop_profile.py --bytecodes`),
but for those that stay interpreted, each for a reason mypyc gives: `mcp_edge` (interpreted steps
subclass its compiled `Step` and set its attributes as class attributes, which a compiled getter does
not see), `http_limits` (subclassed by ingress's protocol), `http1_connection` (an async generator),
`in_place` (sets an attribute on a function), `messages_outcome` (pydantic models). A script, not a
test: it needs a C compiler and minutes to build, and its numbers are noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_env import CLI_PATH, PYTHON, ROOT, export_tree, interpreter

MODULES = (
    "services/executor/guardrails/walk.py",
    "services/executor/guardrails/engine.py",
    "services/executor/guardrails/decode.py",
    "libs/common/bus/timetable.py",
    "libs/common/bus/relay.py",
    "libs/common/bus/local_lane.py",
    "libs/common/bus/acknowledger.py",
    "libs/common/audit/audit_chain.py",
    "libs/common/audit/audit_content.py",
    "libs/common/audit/audit_fields.py",
    "libs/common/audit/audit_journal.py",
    "libs/common/audit/audit_publisher.py",
    "libs/common/contracts/carried.py",
    "libs/common/contracts/results.py",
    "libs/common/contracts/json_codec.py",
    "libs/common/runtime/loop_metrics.py",
    "libs/common/runtime/semconv.py",
    "services/executor/call_path/runner.py",
    "services/executor/call_path/ahead.py",
    "services/executor/call_path/attempt.py",
    "services/executor/call_path/behind.py",
    "services/executor/call_path/state.py",
    "services/executor/service.py",
    "services/executor/admission.py",
    "services/executor/replies.py",
    "services/executor/interceptors/guardrails.py",
    "services/executor/interceptors/chain.py",
    "services/executor/interceptors/pinning.py",
    "services/executor/upstreams/mcp/lean_session.py",
    "services/executor/upstreams/mcp/http1_headers.py",
    "services/executor/upstreams/mcp/http1.py",
    "services/ingress/handlers.py",
    "services/ingress/field_limits.py",
    "services/ingress/audit_events.py",
    "services/ingress/sending/request_path.py",
    "services/ingress/sending/routed_sender.py",
    "services/ingress/web/response_writes.py",
    "services/ingress/web/request_cycle.py",
    "services/ingress/auth/keys.py",
    "services/ingress/tasks/task_router.py",
)

NOT_NATIVE = {
    "libs/common/contracts/carried.py": ("Carried",),  # a `bytes` subclass
    "libs/common/audit/audit_journal.py": ("JournalBusyError",),  # a `RuntimeError` subclass
    "services/ingress/web/request_cycle.py": ("RequestCycle",),  # subclasses uvicorn's cycle
}
"""Classes compiled as plain Python classes (mypyc compiles no subclass of a built-in or an interpreted class)."""

SEALED = {"services/ingress/web/response_writes.py": ("HeadWithBody",)}
"""Classes left without `allow_interpreted_subclasses` (mypyc allows no `__getattr__` with it)."""

EDITS = (
    # setuptools, which mypyc builds with, reads the project's licence only in the older table form
    ("pyproject.toml", 'license = "Apache-2.0"', 'license = {text = "Apache-2.0"}'),
    # mypy narrows an attribute across an `await` as if nothing else could set it; compiled code then
    # checks the narrowed type and fails at run time: each re-read goes through a call mypy cannot narrow
    (
        "libs/common/bus/relay.py",
        "if pending.reply is not None or pending.error is not None:  # answered",
        "if pending.answered:",
    ),
    ("services/executor/call_path/runner.py", "while call.outcome is None:", "while _outcome_of(call) is None:"),
    (
        "services/executor/call_path/runner.py",
        "                            if call.outcome is not None:\n                                break\n"
        "                        outcome = call.outcome",
        "                            if _outcome_of(call) is not None:\n                                break\n"
        "                        outcome = _outcome_of(call)",
    ),
    (
        "services/executor/call_path/runner.py",
        "class CallPath:",
        "def _outcome_of(call: Call) -> CallOutcome | None:\n    return call.outcome\n\n\nclass CallPath:",
    ),
    # a compiled class body cannot name its own attributes: the set is written twice, and the text
    # matched holds both lines, so a change of the set stops the build instead of compiling a stale copy
    (
        "services/executor/call_path/behind.py",
        '    _NAMING = frozenset({"tools/call", "resources/read", "skills/get"})\n'
        "    methods: ClassVar[frozenset[str]] = _NAMING",
        '    _NAMING = frozenset({"tools/call", "resources/read", "skills/get"})\n'
        '    methods: ClassVar[frozenset[str]] = frozenset({"tools/call", "resources/read", "skills/get"})',
    ),
)
"""(file, text, replacement): each text must occur exactly once."""

_CLASS = re.compile(r"^((?:@.*\n)*)class (\w+)", re.MULTILINE)
_IMPORT = "from mypy_extensions import mypyc_attr\n"


def adapt(path: str, source: str) -> str:
    """`source` of the file at `path` (relative to the tree) as mypyc will compile it."""
    for where, text, replacement in EDITS:
        if where == path:
            if source.count(text) != 1:
                raise SystemExit(f"{path}: the text to adapt is gone or repeated: {text!r}")
            source = source.replace(text, replacement)
    if path not in MODULES:
        return source

    def decorated(match: re.Match[str]) -> str:
        name = match[2]
        if name in NOT_NATIVE.get(path, ()):
            marker = "@mypyc_attr(native_class=False)\n"
        elif name in SEALED.get(path, ()):
            marker = ""
        else:  # interpreted modules subclass many of them (steps, interceptors, errors)
            marker = "@mypyc_attr(allow_interpreted_subclasses=True)\n"
        return f"{marker}{match[1]}class {name}"

    source = _CLASS.sub(decorated, source)
    return source.replace("from __future__ import annotations\n", f"from __future__ import annotations\n\n{_IMPORT}", 1)


def compiled_tree(into: Path) -> Path:
    """HEAD's tree under `into`, adapted, with `MODULES` compiled in place."""
    tree = export_tree("HEAD", into)
    for path in {*MODULES, *(where for where, _, _ in EDITS)}:
        file = tree / path
        file.write_text(adapt(path, file.read_text()))
    env = {**os.environ, "MYPYC_OPT_LEVEL": "3"}
    print(f"compiling {len(MODULES)} modules with mypyc (minutes)...", flush=True)
    built = subprocess.run([sys.executable, "-m", "mypyc", *MODULES], cwd=tree, env=env, capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"mypyc failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}")
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--separate", action="store_true", help="the separate layout too")
    parser.add_argument("--keep", type=Path, help="copy the compiled tree there")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = compiled_tree(Path(tmp) / "compiled")
        python = interpreter(tree, Path(tmp) / "env")
        if args.keep:
            shutil.copytree(tree, args.keep, dirs_exist_ok=True)
        variant = f"PYTHONPATH={tree} {CLI_PATH}={tree} {PYTHON}={python}"
        layouts = [] if args.separate else ["--no-separate"]
        bench = [str(ROOT / "run"), "bench", "--upstream", "http", "--era", "modern", "--colocated", *layouts]
        # this checkout's build imports this checkout's code (`gateway_stack._CLI`), whatever PYTHONPATH says
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([*bench, "--rounds", str(args.rounds), "--variant", variant], check=True, cwd=ROOT, env=env)


if __name__ == "__main__":
    main()
