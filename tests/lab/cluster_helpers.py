"""Real sterimesh nodes inside lab namespaces: build a cluster, start, kill, talk to them.

How the test reaches a node that runs in its own network namespace
------------------------------------------------------------------
Each node serves its REST API on 127.0.0.1:8700 *inside its namespace*, so the
test process (in the host's namespace) cannot open a TCP connection to it, and
the lab's addresses exist only inside the lab. Two ways in, both used:

- Every request of the test goes through the node's control socket,
  DATA/node.sock: the same aiohttp application and handlers as the TCP API
  (`make_app(control=True)`), as the local principal. A Unix socket bound to a
  path belongs to the file system, not to a network namespace, so the test
  reaches every node directly: no process per request, nothing crosses the lab
  network, and a node being killed or partitioned never hangs the test's client.
- Once, at the end, the TCP API is checked too: `tcp_feed_digest` runs a short
  stdlib client inside the node's namespace (`ip netns exec`) that pages
  GET /api/feed on 127.0.0.1:8700 with an operator token (Bearer) and prints
  the digest, which must equal the one read through the control socket.

Peers reach each other on the lab addresses (--sync-listen LAB_ADDR:8701) and
find each other by mDNS on eth0 (`mdns_interfaces = ["eth0"]` in node.toml).

Every process is started with `lab.exec`, so `Lab.down()` (the context
manager's exit) ends whatever is still running, also when a test fails.
`ip netns exec` execs the command, so the Popen's pid is the node's own pid:
SIGKILL reaches the node, not a wrapper.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from deploy.lab import Lab
from node import DataDir
from tests.lab.lab_helpers import REPO_ROOT, python_env
from tests.procs import create_token, run_cli, sterimesh_command

T = TypeVar("T")

API_PORT = 8700
SYNC_PORT = 8701
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
READY_LINE = "listening on "
FEED_PAGE = 10_000
ZONES = ("sale", "propre", "sterile", "office", "sale")

# Run inside a node's namespace: page GET /api/feed over TCP, print {"sha256", "lines"}.
_TCP_FEED_CLIENT = """
import hashlib, json, sys, urllib.parse, urllib.request
base, token = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
digest, lines, after = hashlib.sha256(), 0, None
while True:
    query = {"limit": "10000", **({"after": after} if after else {})}
    request = urllib.request.Request(
        base + "/api/feed?" + urllib.parse.urlencode(query),
        headers={"Authorization": "Bearer " + token},
    )
    with opener.open(request, timeout=30) as resp:
        body = resp.read()
        after = resp.headers.get("Sterimesh-Next-After")
    digest.update(body)
    lines += body.count(b"\\n")
    if after is None:
        break
print(json.dumps({"sha256": digest.hexdigest(), "lines": lines}))
"""


class ClusterError(AssertionError):
    """A node or the cluster did not do what the test waits for; the message says what."""


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, step: float = 0.5) -> T:
    """Poll `probe` until it returns something other than None or False; ClusterError after `timeout`.

    `probe` may raise ClusterError to explain the state it saw; the last
    explanation ends up in the failure message.
    """
    deadline = time.monotonic() + timeout
    last = "nothing seen yet"
    while True:
        try:
            result = probe()
        except ClusterError as err:
            result, last = None, str(err)
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise ClusterError(f"{what}: not within {timeout:g} s; last seen: {last}")
        time.sleep(step)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (the node's control socket)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("node", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class LabNode:
    """One `sterimesh run` process inside a lab namespace, its data directory and logs."""

    def __init__(self, lab: Lab, node: str, data: DataDir) -> None:
        self.lab = lab
        self.node = node
        self.data = data
        self.address = lab.addr(node)
        self.stdout_path = data.root.parent / f"{data.root.name}.stdout.log"
        self.stderr_path = data.root.parent / f"{data.root.name}.stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout_from = 0
        self._stderr_from = 0
        if len(str(data.socket)) > 100:
            raise ClusterError(f"control socket path too long for AF_UNIX: {data.socket}")

    @property
    def sync_address(self) -> str:
        """Where peers reach this node: LAB_ADDR:8701."""
        return f"{self.address}:{SYNC_PORT}"

    def running(self) -> bool:
        """True while the process we started is alive."""
        return self.proc is not None and self.proc.poll() is None

    # -- process ----------------------------------------------------------------------

    def launch(self, log_level: str = "INFO") -> None:
        """Start `sterimesh run` in the namespace (mDNS on, no static peer); do not wait."""
        if self.running():
            raise ClusterError(f"node {self.node} runs already")
        self._stdout_from = _size(self.stdout_path)
        self._stderr_from = _size(self.stderr_path)
        argv = [
            *sterimesh_command(),
            "--log-level",
            log_level,
            "run",
            "--data",
            str(self.data.root),
            "--listen",
            f"127.0.0.1:{API_PORT}",
            "--sync-listen",
            self.sync_address,
        ]
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = self.lab.exec(
                self.node,
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=python_env(),
                cwd=REPO_ROOT,
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait for the ready line and an answer of /api/health on the control socket."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise ClusterError(f"node {self.node} exited with code {self.proc.returncode}")
            out = _read_from(self.stdout_path, self._stdout_from)
            if READY_LINE not in out:
                raise ClusterError("no ready line yet")
            status, _, body = self.request("GET", "/api/health")
            return status == 200 and json.loads(body).get("ok") is True

        try:
            wait_until(f"node {self.node} ready", ready, timeout, step=0.1)
        except ClusterError as err:
            raise ClusterError(f"{err}\n{self.stderr_tail()}") from None

    def start(self, timeout: float = READY_TIMEOUT_S, log_level: str = "INFO") -> LabNode:
        """launch() and wait_ready()."""
        self.launch(log_level)
        self.wait_ready(timeout)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Send `sig` (SIGKILL: a power cut) to our process and wait for its exit."""
        if self.proc is None:
            raise ClusterError(f"node {self.node} was never started")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
            raise ClusterError(
                f"node {self.node} ignored signal {sig}\n{self.stderr_tail()}"
            ) from None

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit."""
        return self.kill(signal.SIGTERM)

    def stderr_text(self) -> str:
        """What the current (or last) process wrote to stderr so far."""
        return _read_from(self.stderr_path, self._stderr_from)

    def stderr_tail(self, lines: int = 30) -> str:
        """The end of what the current (or last) process wrote to stderr."""
        text = _read_from(self.stderr_path, self._stderr_from)
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- node {self.node} stderr ({self.stderr_path}) ---\n{tail}\n--- end ---"

    # -- API over the control socket -------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT_S
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request to the node's API on its control socket."""
        conn = _UnixHTTPConnection(self.data.socket, timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        except OSError as err:
            raise ClusterError(f"node {self.node}: {method} {path} failed: {err!r}") from None
        finally:
            conn.close()

    def post_event(self, body: dict[str, Any]) -> str:
        """POST /api/events; the id of the event, which the node answered 201 (durable)."""
        status, _, raw = self.request("POST", "/api/events", body)
        if status != 201:
            raise ClusterError(
                f"node {self.node}: POST /api/events answered {status}: {raw[:300]!r}"
            )
        event_id: str = json.loads(raw)["id"]
        return event_id

    def peers(self) -> list[dict[str, Any]]:
        """GET /api/peers."""
        status, _, raw = self.request("GET", "/api/peers")
        if status != 200:
            raise ClusterError(f"node {self.node}: GET /api/peers answered {status}: {raw[:300]!r}")
        peers: list[dict[str, Any]] = json.loads(raw)["peers"]
        return peers

    def live_peers(self) -> set[str]:
        """Codes of the peers in state live."""
        return {str(p.get("node")) for p in self.peers() if p.get("state") == "live"}

    def feed(self) -> bytes:
        """The whole feed (GET /api/feed, paged)."""
        out = b""
        after: str | None = None
        while True:
            path = f"/api/feed?limit={FEED_PAGE}" + (f"&after={after}" if after else "")
            status, headers, raw = self.request("GET", path)
            if status != 200:
                raise ClusterError(
                    f"node {self.node}: GET /api/feed answered {status}: {raw[:300]!r}"
                )
            out += raw
            after = headers.get("Sterimesh-Next-After")
            if after is None:
                return out

    def status(self) -> dict[str, Any]:
        """GET /api/status."""
        status, _, raw = self.request("GET", "/api/status")
        if status != 200:
            raise ClusterError(f"node {self.node}: GET /api/status answered {status}")
        answer: dict[str, Any] = json.loads(raw)
        return answer


def feed_ids(feed: bytes) -> set[str]:
    """The event ids of a feed (one JSON object a line)."""
    return {json.loads(line)["id"] for line in feed.splitlines() if line.strip()}


def run_in(
    lab: Lab, node: str, argv: Sequence[str], timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run ARGV inside NODE's namespace to its end (project on PYTHONPATH); raises on failure."""
    proc = lab.exec(
        node,
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=python_env(),
        cwd=REPO_ROOT,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise ClusterError(
            f"{' '.join(argv[:3])}... in {node} did not end in {timeout:g} s"
        ) from None
    if proc.returncode != 0:
        raise ClusterError(
            f"{' '.join(argv)} in {node} exited {proc.returncode}: {err.strip()[-800:]}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tcp_feed_digest(lab: Lab, node: str, token: str) -> dict[str, Any]:
    """{"sha256", "lines"} of GET /api/feed over TCP inside NODE's namespace, with a Bearer token."""
    result = run_in(
        lab, node, [sys.executable, "-c", _TCP_FEED_CLIENT, f"http://127.0.0.1:{API_PORT}", token]
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def enable_mdns_on_eth0(data: DataDir) -> None:
    """Bind the node's mDNS to the lab segment only (node.toml `mdns_interfaces`)."""
    with data.config.open("a", encoding="utf-8") as fh:
        fh.write('mdns_interfaces = ["eth0"]\n')


def start_first(lab: Lab, base: Path) -> tuple[LabNode, str]:
    """Init a new cluster on the lab's first node and start it; (node, operator token).

    The token is made before anyone joins, so every node knows it from its first start.
    """
    first = lab.nodes[0]
    data = DataDir(base / first)
    run_cli(
        "init", "--data", str(data.root), "--name", "Poste A", "--zone", ZONES[0], "--new-cluster"
    )
    enable_mdns_on_eth0(data)
    token = create_token(data, "operator", "lab-station")
    return LabNode(lab, first, data).start(), token


def join_node(lab: Lab, inviter: LabNode, ns: str, data: DataDir, zone: str = "office") -> LabNode:
    """`sterimesh invite` on the inviter, `sterimesh join` inside namespace NS through its sync address."""
    invite = run_cli("invite", "--data", str(inviter.data.root)).stdout.strip()
    run_in(
        lab,
        ns,
        [
            *sterimesh_command(),
            "join",
            "--data",
            str(data.root),
            "--name",
            f"Poste {data.root.name.upper()}",
            "--zone",
            zone,
            "--token",
            invite,
            "--peer",
            inviter.sync_address,
        ],
    )
    enable_mdns_on_eth0(data)
    return LabNode(lab, ns, data)


def build_cluster(lab: Lab, base: Path) -> tuple[list[LabNode], str]:
    """The first node inits a cluster and runs; every other node joins through its sync address.

    Returns the nodes (only the first one running) and an operator token.
    """
    first, token = start_first(lab, base)
    nodes = [first]
    for i, name in enumerate(lab.nodes[1:], 1):
        nodes.append(join_node(lab, first, name, DataDir(base / name), ZONES[i % len(ZONES)]))
    return nodes, token


def describe_peers(nodes: Sequence[LabNode]) -> str:
    """One line per node: the state of each of its peers (for failure messages)."""
    lines = []
    for node in nodes:
        if not node.running():
            lines.append(f"{node.node}: not running")
            continue
        try:
            peers = node.peers()
        except ClusterError as err:
            lines.append(f"{node.node}: {err}")
            continue
        shown = ", ".join(
            f"{p.get('node') or p.get('address')}={p.get('state')}"
            + (f" ({p['error']})" if p.get("error") and p.get("state") != "live" else "")
            for p in peers
        )
        lines.append(f"{node.node}: {shown or 'no peer'}")
    return "\n".join(lines)


def _size(path: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        return path.stat().st_size
    return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
