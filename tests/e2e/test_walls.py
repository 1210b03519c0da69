"""The second wall, as an attacker inside a service meets it: `bastion up` with every service its own
process, each confined by the OS at start (docs/security.md).

Each running service shows the kernel's marks of its box (`NoNewPrivs`, a seccomp filter, no
capabilities) and says in its log what Landlock enforces. Then, per service, a process configured
exactly as `bastion up` configures that service and confined by the same call
(`tests/support/wall_probe.py`) tries what a compromised service would: the owner's token in
`stack.json`, another service's NKey seed, the secrets key, another process's environment, a `.pth`
file in the virtualenv, a file in the source tree or the data dir. Every attempt is refused; what
the service's own job needs still works.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from cli.credentials import make_credentials
from cli.layout import SERVICES, resolve_endpoints, service_specs
from libs.common.runtime.walls.confine import abi_version
from libs.common.settings.config_file import parse_config
from tests.support.polling import poll_until_blocking
from tests.support.processes import assert_none_left, descendants, output, stop_up, up_with_example

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(abi_version() == 0, reason="this kernel has no Landlock: the services run unconfined (logged)"),
]

ROOT = Path(__file__).resolve().parents[2]
REFUSED = {"EACCES", "EPERM"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("walls")
    marker = uuid.uuid4().hex
    proc, port, data_dir = up_with_example(tmp_path, marker, {"colocate": False})
    yield proc, port, data_dir, tmp_path
    stop_up(proc, tmp_path)
    assert_none_left(marker)


def _service_pids(supervisor: int) -> dict[str, int]:
    """Each running service's pid: the `python -m services.<name>` children of `bastion up`."""
    found: dict[str, int] = {}
    for pid, cmdline in descendants(supervisor).items():
        argv = cmdline.split()
        module = argv[argv.index("-m") + 1] if "-m" in argv else ""
        if module.startswith("services.") and module.count(".") == 1:  # not codemode's workers
            found[module.removeprefix("services.")] = pid
    return found


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_every_service_runs_confined(stack):
    proc, _, data_dir, _ = stack
    pids = _service_pids(proc.pid)
    assert set(pids) == set(SERVICES), pids
    for service, pid in pids.items():
        log = data_dir / "logs" / f"{service}.log"
        confined = f"{service} confined by the OS: Landlock ABI {abi_version()}, seccomp"
        poll_until_blocking(lambda log=log, line=confined: line in log.read_text(), f"{service} to confine itself")
        assert "started before confinement" not in log.read_text(), service  # every thread is inside
        status = _status(pid)
        assert status["NoNewPrivs"].strip() == "1", service
        assert status["Seccomp"].strip() == "2", service  # a filter is installed
        if os.geteuid() == 0:
            assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, (service, status["CapEff"])


def test_nats_and_valkey_run_confined_too(stack):
    proc, _, _, _ = stack
    servers = {pid: cmd for pid, cmd in descendants(proc.pid).items() if "nats-server" in cmd or "valkey" in cmd}
    assert len(servers) == 2, servers
    for pid in servers:
        status = _status(pid)
        assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", servers[pid]


def _specs(data_dir: Path, tmp_path: Path) -> dict[str, dict[str, str]]:
    """Each service's environment as `bastion up` builds it for this stack."""
    config = parse_config(yaml.safe_load((tmp_path / "bastion.yaml").read_text()))
    stackfile = json.loads((data_dir / "stack.json").read_text())
    environ = dict(os.environ)
    ep = resolve_endpoints(config, None, stackfile.get("port", 0) or 1, data_dir, environ, 1)
    creds = make_credentials(data_dir, environ, new_nkeys=False)
    return {spec.name: spec.env for spec in service_specs(config, ep, "unused", environ, creds)}


def _probe(service: str, env: dict[str, str], plan: dict[str, object]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.wall_probe", json.dumps({"service": service, **plan})],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("service", SERVICES)
def test_a_compromised_service_reaches_nothing_but_its_own(stack, service):
    proc, _, data_dir, tmp_path = stack
    env = _specs(data_dir, tmp_path)[service]
    others = {name: pid for name, pid in _service_pids(proc.pid).items() if name != service}
    foreign_seed = next(f"{data_dir}/credentials/{name}.nk" for name in SERVICES if name != service)
    venv = site.getsitepackages()[0]
    plan = {
        "read": [
            f"{data_dir}/stack.json",
            foreign_seed,
            f"{data_dir}/credentials/secrets.key",
            f"{data_dir}/credentials/checkpoint.key",
            f"{data_dir}/logs/{service}.log",
            str(Path.home() / ".bash_history"),
            "/etc/shadow",
        ],
        "write": [
            f"{data_dir}/planted",
            f"{data_dir}/journal/planted",
            *(f"{data_dir}/journal/{other}/planted" for other in ("ingress", "admin", "codemode") if other != service),
            f"{venv}/bastion-planted.pth",
            str(ROOT / "libs" / "common" / "planted.py"),
            str(ROOT / "planted.txt"),
            "/etc/planted",
        ],
        "environ": [proc.pid, *others.values()],
        "signal": [proc.pid, *others.values()],
    }
    results = _probe(service, env, plan)
    assert results.pop("landlock_abi") == abi_version()
    for attempt, result in results.items():
        path = attempt.split(" ", 1)[1]
        exists = not path.isdigit() and Path(path).exists() and not attempt.startswith("write")
        expected = REFUSED if exists or not attempt.startswith(("read", "write")) else REFUSED | {"ENOENT"}
        assert result in expected, (service, attempt, result, output(tmp_path)[-1000:])
    for path in plan["write"]:
        assert not Path(str(path)).exists(), path


def test_a_query_past_the_allow_list_still_reads_and_writes_nothing(stack):
    """The second wall behind the analytics allow-list: were a query ever to pass it, the engine runs
    inside the audit service's box, where the files it could name are out of reach."""
    _, _, data_dir, tmp_path = stack
    env = _specs(data_dir, tmp_path)["audit"]
    queries = [
        f"SELECT * FROM file('{data_dir}/stack.json', 'RawBLOB')",
        f"SELECT * FROM file('{data_dir}/credentials/ingress.nk', 'RawBLOB')",
        f"SELECT 1 INTO OUTFILE '{data_dir}/planted.csv'",
        f"SELECT 1 INTO OUTFILE '{site.getsitepackages()[0]}/planted.pth'",
        "SELECT 1 AS own_work",
    ]
    results = _probe("audit", env, {"sql": queries})
    assert results.pop(f"sql {queries[-1]}") == "ok", results  # the engine itself works in the box
    for query in queries[:-1]:
        assert results[f"sql {query}"].startswith("refused"), results
        assert "Permission denied" in results[f"sql {query}"] or "Cannot open" in results[f"sql {query}"], results
    assert not (data_dir / "planted.csv").exists()


@pytest.mark.parametrize("service", SERVICES)
def test_what_its_job_needs_still_works(stack, service):
    _, _, data_dir, tmp_path = stack
    env = _specs(data_dir, tmp_path)[service]
    own = {"read": [env["BASTION_NATS_NKEY_SEED_FILE"]] if env.get("BASTION_NATS_NKEY_SEED_FILE") else []}
    journal = env.get("BASTION_AUDIT_JOURNAL_DIR")
    if journal:
        own["write"] = [f"{journal}/{service}/probe"]  # its own slot of the journal
    results = _probe(service, env, own)
    assert all(results[f"read {path}"] == "ok" for path in own["read"]), results
    for path in own.get("write", []):
        assert results[f"write {path}"] == "ok", results
        Path(path).unlink()
