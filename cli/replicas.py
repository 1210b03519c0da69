"""`bastion up --ingress-replicas N`: N ingress processes on the gateway's one port (docs/reliability.md).

Every replica listens on the same address with SO_REUSEPORT, so agents keep the one MCP URL the banner
prints and the kernel spreads new connections among the replicas; one that dies (or is restarted)
takes only its own connections with it, the others go on accepting. They share the stack's session
secret (`cli.credentials.session_secret`) and the bus, so a session made on one is served by any.
Each replica is its own supervised child: `ingress`, `ingress-2`, ... with its own instance name (its
liveness, its hosted tasks, its audit journal's slot), log file and `/metrics` port. With
`stack.colocate` the first is the process ingress shares with the executor; the others are ingress
alone, reaching that executor over the bus (one executor: one copy of each stdio server).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from .colocated import COLOCATED_ENV
from .supervisor import ChildSpec

__all__ = ["MAX_INGRESS_REPLICAS", "ingress_names", "replicated"]

MAX_INGRESS_REPLICAS: Final = 32
"""More replicas than cores only compete for them; this bounds a typo (`--ingress-replicas 200`)."""
_SHARED: Final = {"BASTION_REUSE_PORT": "true"}


def ingress_names(count: int) -> list[str]:
    """The children's names: `ingress` (the first keeps the name a single replica has), `ingress-2`, ..."""
    return ["ingress", *(f"ingress-{n}" for n in range(2, count + 1))]


def replicated(
    specs: list[ChildSpec], count: int, metrics_ports: Mapping[str, int], alone: ChildSpec
) -> list[ChildSpec]:
    """`specs` with `count` ingress children sharing its port; the same list for one.

    The first is the stack's own ingress child (with `stack.colocate`, the process it shares with the
    executor, whose calls keep their in-memory lane); the others are `alone`, ingress as its own process,
    whose calls reach that executor over the bus, as every ingress replica's can."""
    if count <= 1:
        return specs
    at = next(i for i, spec in enumerate(specs) if spec.name == "ingress")
    first = specs[at]
    assert first.env is not None and alone.env is not None and alone.log_path is not None
    if COLOCATED_ENV in first.env:  # its ingress reads its own variables from there
        own = json.loads(first.env[COLOCATED_ENV])
        own["ingress"] = {**own["ingress"], **_SHARED}
        copies = [replace(first, env={**first.env, COLOCATED_ENV: json.dumps(own)})]
    else:
        copies = [replace(first, env={**first.env, **_SHARED})]
    for name in ingress_names(count)[1:]:
        env = {**alone.env, **_SHARED, "BASTION_INSTANCE": name}
        if name in metrics_ports:
            env["BASTION_METRICS_PORT"] = str(metrics_ports[name])
        copies.append(replace(alone, name=name, env=env, log_path=alone.log_path.with_name(f"{name}.log")))
    return [*specs[:at], *copies, *specs[at + 1 :]]
