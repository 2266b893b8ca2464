"""An isolated network of N nodes in Linux network namespaces, and its command line.

Layout, all of it inside network namespaces, so no interface, address or route
of the host is touched:

    PREFIX-switch   the "switch": bridge br0 (and brg1, brg2... while partitioned),
                    one port p-a, p-b... per node; no address at all
    PREFIX-a        node a: lo, eth0 = 10.231.0.11/24 (veth to port p-a)
    PREFIX-b        node b: lo, eth0 = 10.231.0.12/24 (veth to port p-b)
    ...

A partition moves the switch ports of each group onto a bridge of its own:
frames (unicast, broadcast, ARP, multicast such as mDNS) cannot cross between
groups at all, each group stays one broadcast domain, and the nodes' own
interfaces never see a link change, like a cut between two switches.

Needs root and iproute2 (`ip`); the standard library only, so it also runs
with the system's python3 as `deploy/lab/lab.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

DEFAULT_PREFIX = "sterimesh"
DEFAULT_SUBNET = "10.231.0.0/24"
FIRST_HOST = 11  # node a is .11, b .12, ...
MAX_NODES = 100
SWITCH = "switch"
BRIDGE = "br0"
NODE_IF = "eth0"
CMD_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
PROBE_PORT = 9  # discard: a refused connection proves the round trip as well as an accepted one
PROBE_TIMEOUT_S = 1.5
MCAST_GROUP = "239.255.73.77"  # administratively scoped; not mDNS, so running nodes never see it
MCAST_PORT = 47377
NETNS_DIR = Path("/run/netns")

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_NODE_RE = re.compile(r"^[a-z]{1,2}$")
_GROUP_BRIDGE_RE = re.compile(r"^brg\d+$")

# Run inside the source namespace: exit 0 when DST answers (accept or refuse), 1 otherwise.
_TCP_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except ConnectionRefusedError:
    sys.exit(0)
except OSError:
    sys.exit(1)
"""

# Join GROUP on IFADDR, say "ready", exit 0 on receiving TOKEN, 1 after SECONDS.
_MCAST_LISTEN = """
import select, socket, sys, time
group, port, ifaddr, token, seconds = sys.argv[1:6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((group, int(port)))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton(group) + socket.inet_aton(ifaddr))
print("ready", flush=True)
deadline = time.monotonic() + float(seconds)
while (left := deadline - time.monotonic()) > 0:
    if select.select([s], [], [], left)[0] and s.recv(256) == token.encode():
        sys.exit(0)
sys.exit(1)
"""

# Send TOKEN to GROUP from IFADDR a few times (TTL 1: it never leaves the segment).
_MCAST_SEND = """
import socket, sys, time
group, port, ifaddr, token = sys.argv[1:5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for _ in range(5):
    s.sendto(token.encode(), (group, int(port)))
    time.sleep(0.1)
"""


class LabError(Exception):
    """The lab could not be built, changed or removed; the message says why."""


class Lab:
    """N network namespaces PREFIX-a, PREFIX-b... on one bridge; a context manager.

    `with Lab("t1", 3) as lab:` builds it and always removes it on exit.
    """

    def __init__(
        self, name_prefix: str = DEFAULT_PREFIX, n: int = 3, subnet: str = DEFAULT_SUBNET
    ) -> None:
        if not _PREFIX_RE.match(name_prefix):
            raise LabError(
                f"lab prefix {name_prefix[:40]!r}: 1 to 16 lower-case letters and digits, "
                "starting with a letter"
            )
        try:
            network = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise LabError(f"subnet {subnet[:40]!r}: {exc}") from None
        if not network.is_private or network.is_loopback:
            raise LabError(f"subnet {subnet}: use a private test range, e.g. {DEFAULT_SUBNET}")
        if not 1 <= n <= MAX_NODES:
            raise LabError(f"a lab has 1 to {MAX_NODES} nodes, not {n}")
        if FIRST_HOST + n >= network.num_addresses - 1:
            raise LabError(f"subnet {subnet} is too small for {n} nodes")
        self.prefix = name_prefix
        self.n = n
        self.network = network
        self.nodes: tuple[str, ...] = tuple(_node_name(i) for i in range(n))
        self.switch_ns = f"{name_prefix}-{SWITCH}"
        self._procs: list[subprocess.Popen[Any]] = []

    # -- building and removing ------------------------------------------------

    def up(self) -> None:
        """Build the lab; anything left with this prefix by an earlier run is removed first."""
        _require_root()
        self.down()
        try:
            _ip_batch(
                None,
                [f"netns add {self.switch_ns}", *(f"netns add {self.ns(x)}" for x in self.nodes)],
            )
            switch = [
                f"link add {BRIDGE} type bridge mcast_snooping 0",
                f"link set {BRIDGE} up",
            ]
            for node in self.nodes:
                switch += [
                    f"link add {_port(node)} type veth peer name {NODE_IF} netns {self.ns(node)}",
                    f"link set {_port(node)} master {BRIDGE}",
                    f"link set {_port(node)} up",
                ]
            _ip_batch(self.switch_ns, switch)
            for node in self.nodes:
                _ip_batch(
                    self.ns(node),
                    [
                        "link set lo up",
                        f"addr add {self.addr(node)}/{self.network.prefixlen} dev {NODE_IF}",
                        f"link set {NODE_IF} up",
                        # Programs that do not pick a multicast interface (no default
                        # route here, on purpose) still reach the segment.
                        f"route add 224.0.0.0/4 dev {NODE_IF}",
                    ],
                )
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Remove every namespace, veth and bridge of this prefix and end the processes in them.

        Idempotent; also removes what a crashed or killed earlier run left behind.
        """
        self._stop_own_processes()
        names = self.leftovers(self.prefix)
        if not names:
            return
        _require_root()
        pids: set[int] = set()
        for name in names:
            pids.update(_netns_pids(name))
        _end_pids(pids)
        if self.switch_ns in names:
            # Cut every veth first: a namespace kept alive by a process we could not
            # end would otherwise stay wired to the others.
            for link in _links(self.switch_ns):
                if link["ifname"] != "lo":
                    _ip(["-n", self.switch_ns, "link", "del", link["ifname"]], check=False)
        for name in sorted(names, key=lambda x: x == self.switch_ns):
            result = _ip(["netns", "del", name], check=False)
            if result.returncode != 0 and (NETNS_DIR / name).exists():
                raise LabError(f"could not delete namespace {name}: {result.stderr.strip()}")

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- partitions -----------------------------------------------------------

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Cut all links between the groups, keep each group connected.

        Nodes named in no group form one more group together, so
        `partition([["a"]])` cuts a off from all the others.
        """
        seen: set[str] = set()
        resolved: list[list[str]] = []
        for group in groups:
            members = [self._node(x) for x in group]
            if not members:
                raise LabError("a partition group is empty")
            for node in members:
                if node in seen:
                    raise LabError(f"node {node} is in two groups")
                seen.add(node)
            resolved.append(members)
        rest = [x for x in self.nodes if x not in seen]
        if rest:
            resolved.append(rest)
        self._require_up()
        self._rewire(resolved)

    def heal(self) -> None:
        """Join every node to one segment again (undo any partition)."""
        self._require_up()
        self._rewire([list(self.nodes)])

    def _rewire(self, groups: list[list[str]]) -> None:
        """Put group 0 on br0 and each other group on a new bridge, in one `ip` batch.

        The order never joins, even for a moment, two nodes that are apart both
        before and after: ports leave br0 for new, empty bridges first, then the
        ports of group 0 come back to br0, then the old group bridges (empty by
        then) are deleted.
        """
        links = _links(self.switch_ns)
        master = {x["ifname"]: x.get("master") for x in links}
        old = [x["ifname"] for x in links if _GROUP_BRIDGE_RE.match(x["ifname"])]
        number = max((int(x[3:]) for x in old), default=0)
        leave: list[str] = []
        for members in groups[1:]:
            number += 1
            bridge = f"brg{number}"
            leave += [f"link add {bridge} type bridge mcast_snooping 0", f"link set {bridge} up"]
            leave += [f"link set {_port(node)} master {bridge}" for node in members]
        join = [
            f"link set {_port(node)} master {BRIDGE}"
            for node in groups[0]
            if master.get(_port(node)) != BRIDGE
        ]
        commands = leave + join + [f"link del {x}" for x in old]
        if commands:
            _ip_batch(self.switch_ns, commands)

    def groups(self) -> list[list[str]]:
        """The nodes that share a segment now, as read from the switch; one group when healed."""
        self._require_up()
        by_bridge: dict[str, list[str]] = {}
        links = {x["ifname"]: x for x in _links(self.switch_ns)}
        for node in self.nodes:
            link = links.get(_port(node))
            bridge = str(link.get("master", f"(unplugged {node})")) if link else f"(missing {node})"
            by_bridge.setdefault(bridge, []).append(node)
        return sorted(by_bridge.values(), key=lambda g: self.nodes.index(g[0]))

    # -- processes and probes -------------------------------------------------

    def exec(self, ns: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ARGV inside node NS ("a" or "PREFIX-a"); down() ends it if it still runs."""
        name = self.ns(ns)
        if not (NETNS_DIR / name).exists():
            raise LabError(f"namespace {name} does not exist: build the lab first (up)")
        proc: subprocess.Popen[Any] = subprocess.Popen(  # noqa: S603
            [_ip_path(), "netns", "exec", name, *argv], **popen_kwargs
        )
        self._procs.append(proc)
        return proc

    def run(
        self, ns: str, argv: Sequence[str], timeout: float = CMD_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run ARGV inside node NS to its end; its output is captured as text."""
        proc = self.exec(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self._procs.remove(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def addr(self, ns: str) -> str:
        """The IPv4 address of node NS on the lab segment, e.g. "10.231.0.11"."""
        index = self.nodes.index(self._node(ns))
        return str(self.network.network_address + FIRST_HOST + index)

    def ns(self, node: str) -> str:
        """The namespace name of a node: "a" -> "PREFIX-a" (a full name is returned as is)."""
        return f"{self.prefix}-{self._node(node)}"

    def reachable(self, src: str, dst: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
        """Whether a TCP packet from SRC gets an answer from DST's lab address."""
        return self.reachability([(src, dst)], timeout)[(self._node(src), self._node(dst))]

    def reachability(
        self, pairs: Iterable[tuple[str, str]] | None = None, timeout: float = PROBE_TIMEOUT_S
    ) -> dict[tuple[str, str], bool]:
        """TCP reachability of each (src, dst) pair (default: all ordered pairs), probed at once."""
        wanted = [
            (self._node(s), self._node(d))
            for s, d in (
                pairs
                if pairs is not None
                else [(s, d) for s in self.nodes for d in self.nodes if s != d]
            )
        ]
        probes = {
            pair: self.exec(
                pair[0],
                [
                    sys.executable,
                    "-c",
                    _TCP_PROBE,
                    self.addr(pair[1]),
                    str(PROBE_PORT),
                    str(timeout),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pair in wanted
        }
        return {
            pair: self._wait_probe(proc, timeout + CMD_TIMEOUT_S) == 0
            for pair, proc in probes.items()
        }

    def multicast_reach(self, src: str, timeout: float = 2.0) -> set[str]:
        """The nodes that receive a multicast datagram (TTL 1) sent by SRC on the segment."""
        source = self._node(src)
        token = secrets.token_hex(8)
        listeners: dict[str, subprocess.Popen[Any]] = {}
        try:
            for node in self.nodes:
                if node == source:
                    continue
                proc = self.exec(
                    node,
                    [
                        sys.executable,
                        "-c",
                        _MCAST_LISTEN,
                        MCAST_GROUP,
                        str(MCAST_PORT),
                        self.addr(node),
                        token,
                        str(timeout),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                listeners[node] = proc
                if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                    raise LabError(f"multicast listener in {self.ns(node)} did not start")
            sender = self.run(
                source,
                [
                    sys.executable,
                    "-c",
                    _MCAST_SEND,
                    MCAST_GROUP,
                    str(MCAST_PORT),
                    self.addr(source),
                    token,
                ],
            )
            if sender.returncode != 0:
                raise LabError(
                    f"multicast sender in {self.ns(source)} failed: {sender.stderr.strip()[-300:]}"
                )
            return {
                node
                for node, proc in listeners.items()
                if self._wait_probe(proc, timeout + CMD_TIMEOUT_S) == 0
            }
        finally:
            for proc in listeners.values():
                self._wait_probe(proc, 0.0)
                if proc.stdout is not None:
                    proc.stdout.close()

    # -- reading the system ---------------------------------------------------

    def is_up(self) -> bool:
        """Whether the switch and every node namespace exist."""
        return all((NETNS_DIR / x).exists() for x in [self.switch_ns, *map(self.ns, self.nodes)])

    @staticmethod
    def leftovers(prefix: str) -> list[str]:
        """The namespaces that belong to a lab with this prefix, running or left by a crash."""
        pattern = re.compile(rf"^{re.escape(prefix)}-({SWITCH}|[a-z]{{1,2}})$")
        return [x for x in _netns_list() if pattern.match(x)]

    @classmethod
    def attach(cls, prefix: str = DEFAULT_PREFIX) -> Lab:
        """The lab with this prefix that is up now (built by another process, e.g. the CLI)."""
        names = cls.leftovers(prefix)
        nodes = sorted(
            (x.split("-", 1)[1] for x in names if not x.endswith(f"-{SWITCH}")), key=_node_index
        )
        if f"{prefix}-{SWITCH}" not in names or not nodes:
            raise LabError(f"no lab {prefix!r} is up (build one with: up N)")
        if nodes != [_node_name(i) for i in range(len(nodes))]:
            raise LabError(f"lab {prefix!r} is incomplete ({', '.join(nodes)}): run down, then up")
        cls(prefix, 1)  # validates the prefix before it goes into a command
        info = _ip_json(["-n", f"{prefix}-a", "addr", "show", "dev", NODE_IF])
        inet = [a for x in info for a in x.get("addr_info", []) if a.get("family") == "inet"]
        if not inet:
            raise LabError(f"namespace {prefix}-a has no IPv4 address on {NODE_IF}")
        subnet = ipaddress.IPv4Interface(f"{inet[0]['local']}/{inet[0]['prefixlen']}").network
        return cls(prefix, len(nodes), str(subnet))

    def _node(self, name: str) -> str:
        node = name.removeprefix(f"{self.prefix}-")
        if node not in self.nodes:
            raise LabError(
                f"no node {name[:40]!r} in lab {self.prefix!r} (nodes: {', '.join(self.nodes)})"
            )
        return node

    def _require_up(self) -> None:
        _require_root()
        if not self.is_up():
            raise LabError(f"lab {self.prefix!r} is not up (build it with: up {self.n})")

    def _stop_own_processes(self) -> None:
        running = [p for p in self._procs if p.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def _wait_probe(self, proc: subprocess.Popen[Any], timeout: float) -> int:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -1
        if proc in self._procs:
            self._procs.remove(proc)
        return code


# -- command line ---------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The lab's command line; returns the exit code (1: lab error, 2: usage)."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.lab",
        description="An isolated network of sterimesh nodes in Linux network namespaces (needs root).",
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"namespace name prefix (default {DEFAULT_PREFIX})"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser(
        "up", help="build a lab of N nodes (removes an old one of this prefix first)"
    )
    p_up.add_argument("n", type=int)
    p_up.add_argument(
        "--subnet", default=DEFAULT_SUBNET, help=f"private test range (default {DEFAULT_SUBNET})"
    )
    sub.add_parser("down", help="remove the lab and end the processes running in it")
    p_part = sub.add_parser("partition", help="split the network, e.g.: partition a,b c,d,e")
    p_part.add_argument("groups", nargs="+", metavar="GROUP", help="comma-separated node letters")
    sub.add_parser("heal", help="join every node to one network again")
    p_status = sub.add_parser("status", help="nodes, addresses, groups")
    p_status.add_argument(
        "--probe", action="store_true", help="also test unicast and multicast between nodes"
    )
    p_status.add_argument("--json", action="store_true", help="print JSON")
    p_exec = sub.add_parser("exec", help="run a command inside a node: exec a -- sterimesh run ...")
    p_exec.add_argument("node")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        return _run_command(args)
    except LabError as exc:
        sys.stderr.write(f"lab: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "up":
        lab = Lab(args.prefix, args.n, args.subnet)
        lab.up()
        _print_status(lab, probe=False, as_json=False)
    elif args.command == "down":
        Lab(args.prefix, 1).down()
        _out(f"lab {args.prefix!r} removed")
    elif args.command == "partition":
        lab = Lab.attach(args.prefix)
        lab.partition([[x for x in g.split(",") if x] for g in args.groups])
        _print_status(lab, probe=False, as_json=False)
    elif args.command == "heal":
        lab = Lab.attach(args.prefix)
        lab.heal()
        _print_status(lab, probe=False, as_json=False)
    elif args.command == "status":
        _print_status(Lab.attach(args.prefix), probe=args.probe, as_json=args.json)
    elif args.command == "exec":
        lab = Lab.attach(args.prefix)
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            raise LabError("exec needs a command: exec NODE -- COMMAND [ARGS...]")
        name = lab.ns(args.node)
        sys.stdout.flush()
        os.execv(_ip_path(), [_ip_path(), "netns", "exec", name, *cmd])  # noqa: S606
    return 0


def _print_status(lab: Lab, *, probe: bool, as_json: bool) -> None:
    groups = lab.groups()
    report: dict[str, Any] = {
        "prefix": lab.prefix,
        "switch": lab.switch_ns,
        "subnet": str(lab.network),
        "nodes": [
            {"node": x, "namespace": lab.ns(x), "address": lab.addr(x), "interface": NODE_IF}
            for x in lab.nodes
        ],
        "groups": groups,
    }
    if probe:
        report["unicast"] = {f"{s}->{d}": ok for (s, d), ok in lab.reachability().items()}
        report["multicast"] = {x: sorted(lab.multicast_reach(x)) for x in lab.nodes}
    if as_json:
        _out(json.dumps(report, indent=2))
        return
    _out(f"lab {lab.prefix!r}: {lab.n} nodes on {lab.network}, switch namespace {lab.switch_ns}")
    for node in report["nodes"]:
        _out(f"  {node['node']:>2}  {node['namespace']:<24} {node['address']}  ({NODE_IF})")
    shape = " | ".join(",".join(g) for g in groups)
    _out(
        f"segments: {shape}"
        + ("  (healed: one network)" if len(groups) == 1 else "  (partitioned)")
    )
    if probe:
        _out("unicast (TCP) reachability, row = from, column = to:")
        _out("      " + " ".join(f"{x:>3}" for x in lab.nodes))
        for s in lab.nodes:
            cells = [
                "  -" if s == d else ("yes" if report["unicast"][f"{s}->{d}"] else " no")
                for d in lab.nodes
            ]
            _out(f"  {s:>2}  " + " ".join(f"{c:>3}" for c in cells))
        for node, heard in report["multicast"].items():
            _out(f"multicast from {node} heard by: {', '.join(heard) or 'nobody'}")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


# -- helpers --------------------------------------------------------------------


def _node_name(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ... (spreadsheet columns)."""
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(ord("a") + rem) + name
    return name


def _node_index(name: str) -> int:
    index = 0
    for char in name:
        index = index * 26 + (ord(char) - ord("a") + 1)
    return index - 1


def _port(node: str) -> str:
    return f"p-{node}"


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces): run it with sudo")


def _ip_path() -> str:
    path = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise LabError("`ip` was not found: install iproute2 (apt-get install iproute2)")
    return path


def _ip(
    args: Sequence[str], *, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(  # noqa: S603
            [_ip_path(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CMD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"ip {' '.join(args)} did not finish in {CMD_TIMEOUT_S:.0f} s") from None
    if check and result.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return result


def _ip_batch(ns: str | None, commands: Sequence[str]) -> None:
    """Several `ip` commands in one process, inside namespace NS (None: the host's)."""
    _ip([*(["-n", ns] if ns else []), "-batch", "-"], stdin="\n".join(commands) + "\n")


def _ip_json(args: Sequence[str]) -> list[dict[str, Any]]:
    out = _ip(["-j", *args]).stdout.strip()
    if not out:
        return []
    try:
        data = json.loads(out)
    except ValueError:
        raise LabError(f"ip -j {' '.join(args)} printed something else than JSON") from None
    return [x for x in data if isinstance(x, dict)] if isinstance(data, list) else []


def _links(ns: str) -> list[dict[str, Any]]:
    return _ip_json(["-n", ns, "link", "show"])


def _netns_list() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(x.name for x in NETNS_DIR.iterdir())


def _netns_pids(name: str) -> set[int]:
    result = _ip(["netns", "pids", name], check=False)
    return {int(x) for x in result.stdout.split() if x.isdigit()}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie has left its namespace already; its parent reaps it.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _end_pids(pids: set[int]) -> None:
    """SIGTERM, a grace period, then SIGKILL: the processes still inside a lab being removed."""
    pids = {p for p in pids if p != os.getpid()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while (pids := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            return


if __name__ == "__main__":
    sys.exit(main())
