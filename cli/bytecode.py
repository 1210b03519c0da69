"""The bytecode of the code the stack's services run, written before they start.

Python writes a module's bytecode beside its source on first import, but a service's box may not
write there, and PYTHONDONTWRITEBYTECODE (set in many containers) forbids it everywhere: without this,
every service start compiled its ~270 modules again (~0.1-0.15 s of CPU a service; docs/benchmarks.md,
"Starting costs"). pip compiles what it installs; an editable install's tree is left to those imports.
Modules already current cost a look at their files (~0.05 s in all); a folder this process may not
write, or a file that does not compile, is left as it is (its import says why).
"""

from __future__ import annotations

import compileall
import importlib.util

__all__ = ["PACKAGES", "compile_packages"]

PACKAGES = ("services", "libs", "cli")
"""The project's top-level packages: everything a service imports of ours."""


def compile_packages() -> None:
    """Write the bytecode of every module of `PACKAGES` that has none, or an outdated one."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            compileall.compile_dir(folder, quiet=2)


if __name__ == "__main__":  # `./run test` and `./run bench`: their services start outside `bastion up`
    compile_packages()
