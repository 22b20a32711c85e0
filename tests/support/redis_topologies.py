"""Redis as organisations run it, for tests: a 3-node Redis Cluster, and a primary with a replica
watched by Sentinel. Real redis-server processes on free ports, each in a temporary directory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.servers import free_port


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (apt-get install -y redis-server)")
    return found


def _until(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Processes:
    """redis-server processes started here, and only those, stopped together."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, *args: str) -> None:
        workdir = self.dir / str(port)
        workdir.mkdir(exist_ok=True)
        base = [_binary("redis-server"), *args, "--port", str(port), "--bind", "127.0.0.1"]
        self.procs[port] = subprocess.Popen(
            [*base, "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _until(f"redis on {port}", lambda: bool(redis.Redis(port=port, socket_timeout=1).ping()))

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free and valid too."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class RedisClusterNodes(_Processes):
    """Three primaries (`--cluster-enabled yes`) sharing the 16,384 slots; no replicas."""

    def __init__(self) -> None:
        super().__init__("seatbot-cluster-")
        self.ports = [_cluster_port() for _ in range(3)]

    @property
    def url(self) -> str:
        """Any node will do: the cluster client learns the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            conf = str(self.dir / f"nodes-{port}.conf")
            self.spawn(port, "--cluster-enabled", "yes", "--cluster-config-file", conf)
        # What `redis-cli --cluster create` does, without its one-second polls: a third of the
        # slots each, distinct config epochs, then every node meets the first.
        for i, port in enumerate(self.ports):
            node = redis.Redis(port=port, socket_timeout=5)
            node.cluster("ADDSLOTSRANGE", i * 5462, min(16383, i * 5462 + 5461))
            node.cluster("SET-CONFIG-EPOCH", i + 1)
            if i:
                node.cluster("MEET", "127.0.0.1", self.ports[0])

        def ready() -> bool:
            for port in self.ports:
                info = redis.Redis(port=port, socket_timeout=1).cluster("info")
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != 3:
                    return False
            return True

        _until("the cluster to agree", ready)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0])


class SentinelGroup(_Processes):
    """A primary, one replica and three Sentinels (quorum 2) watching them as `SERVICE`.

    Sentinel's timings are cut to fractions of a second (down after 300 ms) so a failover takes
    about a second; `wait_failover` waits until every Sentinel names the replica as the primary."""

    SERVICE = "seatbot"

    def __init__(self) -> None:
        super().__init__("seatbot-sentinel-")
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinels)

    def start(self) -> None:
        self.spawn(self.primary, "--repl-diskless-sync-delay", "0")  # the replica syncs at once
        self.spawn(
            self.replica, "--replicaof", "127.0.0.1", str(self.primary), "--repl-diskless-sync-delay", "0"
        )
        _until("the replica to sync", lambda: self.role(self.replica) == "up")
        for port in self.sentinels:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 300\n"
                f"sentinel failover-timeout {self.SERVICE} 3000\n"
            )
            self.spawn(port, str(conf), "--sentinel")

        def watching() -> bool:  # every Sentinel knows the replica and the two other Sentinels
            for port in self.sentinels:
                client = redis.Redis(port=port, socket_timeout=1)
                others = client.sentinel_sentinels(self.SERVICE)
                if not isinstance(others, list) or len(others) != 2:
                    return False
                if not client.sentinel_slaves(self.SERVICE):
                    return False
            return True

        _until("the Sentinels to find each other", watching, timeout=30)

    def role(self, port: int) -> str:
        """'master', or the replica's link state ('up' once in sync)."""
        info = redis.Redis(port=port, socket_timeout=1).info("replication")
        return str(info["role"]) if info["role"] == "master" else str(info.get("master_link_status"))

    def named_primary(self) -> set[int]:
        """The primary's port according to each Sentinel."""
        found = set()
        for port in self.sentinels:
            address = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(self.SERVICE)
            assert isinstance(address, tuple | list)
            found.add(int(address[1]))
        return found

    def kill_primary(self) -> None:
        """SIGKILL: no goodbye to the replica or the clients, as a crashed host."""
        self.kill(self.primary)

    def wait_failover(self, timeout: float = 20.0) -> None:
        """Until the Sentinels agree that the replica is the primary and it accepts writes."""
        _until(
            "the failover",
            lambda: self.named_primary() == {self.replica} and self.role(self.replica) == "master",
            timeout,
        )
