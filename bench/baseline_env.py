"""A baseline build to run beside this checkout (`--baseline REF`): REF's packages exported to a temporary
folder, and an interpreter of its own that imports them before anything installed.

The interpreter is a virtual environment over this checkout's `.venv`: its site-packages holds one `.pth`
that puts REF's tree on the path, adds `.venv`'s packages behind it, and imports `baseline_compat` (the
adapters an older commit needs to start under today's packages). PYTHONPATH alone is not enough: the
processes Bastion starts isolated (`python -I`, e.g. the Code Mode sandbox's workers) ignore it, and would
import this checkout's code through its editable install, which the baseline's walls do not let them read.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

__all__ = ["CLI_PATH", "PYTHON", "export_baseline"]

ROOT = Path(__file__).resolve().parent.parent
CLI_PATH = "BENCH_CLI_PATH"
"""Not for the services: where `bastion up` itself is imported from (`gateway_stack._CLI`)."""
PYTHON = "BENCH_PYTHON"
"""Not for the services: the interpreter that runs `bastion up` (and so every service it starts)."""
COMPAT = Path(__file__).resolve().parent / "baseline_compat.py"


def export_tree(ref: str, into: Path) -> Path:
    """`ref`'s packages exported under `into`, as a folder to put first on a Python path: the tree
    itself (import names are folder paths), or, for a ref from before that, one link per package
    (its pyproject's package-dir)."""
    tree = into / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    packages = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-dir")
    if not packages:
        return tree
    links = into / "path"
    links.mkdir()
    for package, folder in packages.items():
        if (tree / folder).is_dir():
            (links / package).symlink_to(tree / folder)
    return links


def interpreter(services: Path, into: Path) -> Path:
    """A virtual environment under `into` whose every process imports `services` first, then this
    checkout's installed packages (see the module's doc); its python."""
    venv = into / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [path for path in site.getsitepackages() if Path(path).is_dir()] or [sysconfig.get_path("purelib")]
    shutil.copy(COMPAT, Path(purelib) / "baseline_compat.py")
    lines = [str(services), *(f"import site; site.addsitedir({path!r})" for path in ours), "import baseline_compat"]
    (Path(purelib) / "bastion_baseline.pth").write_text("\n".join(lines) + "\n")
    return python


def export_baseline(spec: str, into: Path) -> dict[str, str]:
    """The environment that runs a baseline: `REF` (its services and its own `bastion up`), or
    `REF@CLI_REF` (REF's services under CLI_REF's `bastion up`, e.g. an old main, whose `bastion up`
    serves no NATS monitoring, under a later one that does and still writes what it reads)."""
    ref, _, cli_ref = spec.partition("@")
    services = export_tree(ref, into / "services")
    cli = export_tree(cli_ref, into / "cli") if cli_ref else services
    python = interpreter(services, into)
    return {"PYTHONPATH": str(services), CLI_PATH: str(cli), PYTHON: str(python)}
