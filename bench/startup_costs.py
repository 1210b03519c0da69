"""What every service start and every upstream connection pay: opening the audit store (the ClickHouse
engine, chdb) and building an HTTP client's TLS context, before and after the 2026-11-27 work, and a
service's imports with and without the project's bytecode (2026-11-29). docs/benchmarks.md, "Starting costs".

    PYTHONPATH=$PWD .venv/bin/python bench/startup_costs.py [--rounds 7]

Store: each open runs in a fresh process (the embedded engine holds one store per process), on a new
store ("fresh") and again on that same store ("existing"), two ways: every migration run as before
(`ALTER ... IF NOT EXISTS` for each of the 36, then the rollups) and as `ClickHouseStore.open` does
now (only what the table lacks). CPU is the process's own (user + system) around the open alone.
TLS: CPU per `httpx2.AsyncClient()` built with its own default context, and with the shared one.
Imports: each service's module imported in a fresh process (CPU of the whole process, the interpreter's
start included) from a copy of `services`, `libs` and `cli` with no bytecode, as a service found it
under PYTHONDONTWRITEBYTECODE or in its box, and from the same copy after `compileall` (what
`cli/bytecode.py` runs before `bastion up` starts them); the installed packages' bytecode is there both times.
This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_OPEN = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from services.audit import rollups
from services.audit.schema import DDL, MIGRATIONS
from services.audit.store import ClickHouseStore
import clickhouse_connect

def cpu():
    t = os.times()
    return t.user + t.system

url = "chdb://" + {path!r}
began, wall = cpu(), time.monotonic()
if {every!r}:
    client = clickhouse_connect.get_client(dsn=url)
    for statement in (*DDL, *(m[2] for m in MIGRATIONS), *rollups.DDL):
        client.command(statement)
    client.close()
else:
    store = ClickHouseStore(url)
    store.open()
    store.close()
print(json.dumps({{"cpu": cpu() - began, "wall": time.monotonic() - wall}}))
"""


def _open_once(root: Path, path: Path, every: bool) -> dict[str, float]:
    code = _OPEN.format(root=str(root), path=str(path), every=every)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def store_opens(root: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    for every in (True, False):
        way = "every migration (before)" if every else "only what is missing (now)"
        for case in ("fresh", "existing"):
            results[f"{way}, {case}"] = {"cpu": [], "wall": []}
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "store"
                for case in ("fresh", "existing"):
                    one = _open_once(root, path, every)
                    for what in ("cpu", "wall"):
                        results[f"{way}, {case}"][what].append(one[what])
    return results


def tls_clients(count: int = 100) -> dict[str, float]:
    import httpx2

    from libs.common.web.guarded_http import shared_tls

    def cpu() -> float:
        times = os.times()
        return times.user + times.system

    costs = {}
    for name, make in (
        ("own default context", lambda: httpx2.AsyncClient()),
        ("shared context", lambda: httpx2.AsyncClient(verify=shared_tls())),
    ):
        began = cpu()
        for _ in range(count):
            make()
        costs[name] = 1000 * (cpu() - began) / count
    return costs


_IMPORT = (
    "import os, sys; sys.path.insert(0, os.getcwd()); import services.{name}.service; "
    "t = os.times(); print(t.user + t.system)"
)


def service_imports(root: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per service: CPU seconds of a process importing it, "source" (no bytecode) and "bytecode"."""
    from cli.bytecode import PACKAGES
    from cli.layout import SERVICES

    results: dict[str, dict[str, list[float]]] = {name: {"source": [], "bytecode": []} for name in SERVICES}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory() as folder:
        for part in PACKAGES:
            shutil.copytree(root / part, Path(folder, part), ignore=shutil.ignore_patterns("__pycache__"))
        for way in ("source", "bytecode"):
            if way == "bytecode":
                subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], cwd=folder, check=True)
            for _ in range(rounds):
                for name in SERVICES:
                    code = _IMPORT.format(name=name)
                    done = subprocess.run(
                        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, check=True
                    )
                    results[name][way].append(float(done.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    print(f"audit store open, median of {args.rounds} (each in a fresh process):")
    print(f"  {'':44} {'CPU s':>7} {'wall s':>7}")
    for name, series in store_opens(root, args.rounds).items():
        print(f"  {name:44} {statistics.median(series['cpu']):7.3f} {statistics.median(series['wall']):7.3f}")
    print("httpx2.AsyncClient() built, CPU per client:")
    for name, ms in tls_clients().items():
        print(f"  {name:44} {ms:7.1f} ms")
    print(f"a service's imports, CPU s of the process, median of {args.rounds}:")
    print(f"  {'':12} {'no bytecode':>12} {'bytecode':>9}")
    imports = service_imports(root, args.rounds)
    for name, series in imports.items():
        print(f"  {name:12} {statistics.median(series['source']):12.3f} {statistics.median(series['bytecode']):9.3f}")
    total = {way: sum(statistics.median(series[way]) for series in imports.values()) for way in ("source", "bytecode")}
    print(f"  {'all':12} {total['source']:12.3f} {total['bytecode']:9.3f}")


if __name__ == "__main__":
    main()
