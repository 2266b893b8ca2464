"""Benchmark of healing a split: three real nodes that each recorded 20,000 events apart.

Setup: node A inits a cluster, B and C join it (`sterimesh join` through A's
sync listener). Each node then records 20,000 events while alone: written
offline, straight into its store through `node.Node.async_record` (batches of
500 with asyncio.gather; the same path POST /api/events takes after its rules,
with group commit), which is about 4x faster than the HTTP API on this machine.
The mix is 3 notes to 1 `wash.loaded` (load number assigned by the node).

Heal: the three nodes start (`sterimesh run`, loopback, mDNS off) with static
peers to each other. Every peer address is a TCP relay run by the benchmark
(one per node, in front of its sync listener), which counts the bytes that pass
both ways (TLS records, WebSocket frames, sync messages: all of it). The relays
hold the connections they accept until all three nodes are ready and the
machine is idle (below a tenth of a core over half a second: a node compacts
what was recorded offline at start-up, in a process of its own); opening them
is the heal. Measured from then: the time until every node holds all 60,000
events, stored and in its documents (GET /api/status of the three at once, polled
every 25 ms; then the three feeds are checked byte-identical) and the bytes that
crossed the relays by then; the time until every node's views have folded them
too (`views_behind` 0: a node folds a peer's events once no catch-up is on its
way, or when anything reads its views); and the time and bytes until every node
shows both peers live (the last acks and manifests).

Floor, in the same run: three pycrdt Docs holding the same events (each node's
events document as it stood before the heal), exchanging state vectors and
`get_update(state_vector)` / `apply_update` pairwise, round after round, until
equal: one round, each Doc receiving the other two's 20,000 events. Its time
and bytes (state vectors + diffs), measured before the heal. Aim: the nodes
within 3x the floor in time and 1.25x in bytes. The reference rows (each event
re-encoded; each diff checked and folded, see measure_floor) run after the
heal: they leave millions of objects in this process, which runs the relays.

Run: python -m bench converge (or python -m bench.converge).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt

import crdt_model as cm
import sync
from bench._util import format_table, machine_info
from crdt_model._fold import Fold
from node import DataDir, Node
from node._auth import Principal
from tests.procs import NodeProcess, create_token, init_node_dir, run_cli

NODES = ("A", "B", "C")
EVENTS_PER_NODE = 20_000
BATCH = 500
AIM_TIME_RATIO = 3.0
AIM_BYTES_RATIO = 1.25
POLL_S = 0.025
"""How often the three nodes are asked, at once (a tenth of a second was a sixth of a heal)."""
CONVERGE_TIMEOUT_S = 150.0
SETTLE_TIMEOUT_S = 60.0
RELAY_CHUNK = 1 << 16
MAX_ROUNDS = 5
QUIET_WINDOW_S = 0.5
QUIET_SHARE = 0.1
"""Below this share of one core busy over QUIET_WINDOW_S, the machine counts as idle."""
QUIET_TIMEOUT_S = 8.0
"""Below the nodes' dial timeout (10 s), which the relays' held connections run down."""


# -- relays -----------------------------------------------------------------------


class Relay:
    """A TCP relay in front of one node's sync listener: counts bytes, holds until opened."""

    def __init__(self, name: str, target_port: int) -> None:
        self.name = name
        self.target_port = target_port
        self.to_node = 0
        self.from_node = 0
        self.connections = 0
        self.gate = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def total(self) -> int:
        """Bytes both ways so far."""
        return self.to_node + self.from_node

    async def start(self) -> int:
        """Listen on a free loopback port; returns it."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if self._tasks:  # the connections are cut: each handler ends on its own
            await asyncio.wait(self._tasks, timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            await self.gate.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(up_writer)
            self.connections += 1
            await asyncio.gather(
                self._pipe(reader, up_writer, to_node=True),
                self._pipe(up_reader, writer, to_node=False),
            )
        except OSError:
            writer.close()
        finally:
            self._writers.discard(writer)
            if up_writer is not None:
                self._writers.discard(up_writer)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, to_node: bool
    ) -> None:
        try:
            while data := await src.read(RELAY_CHUNK):
                if to_node:
                    self.to_node += len(data)
                else:
                    self.from_node += len(data)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()


# -- recording apart --------------------------------------------------------------


def _body(code: str, n: int) -> dict[str, Any]:
    if n % 4 == 3:
        return {
            "type": "wash.loaded",
            "machine": f"LAV-{code}{n % 3 + 1}",
            "program": "INSTRU 93°C 3MIN NORMAL",
            "sets": [f"JDIGGRBA#{code}{n % 1000:03d}", f"JORTHO#{code}{n % 997:03d}"],
        }
    return {"type": "note", "text": f"poste {code}, note {n}: retour prévu 14h", "ref": f"b-{n}"}


async def record_offline(data: DataDir, count: int) -> dict[str, Any]:
    """Record `count` events into a stopped node's store; its events documents as updates."""
    node = Node(data)
    await node.async_open()
    principal = Principal(name="bench", role="operator")
    try:
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            await asyncio.gather(
                *(
                    node.async_record(_body(node.code, n), principal)
                    for n in range(first, min(first + BATCH, count))
                )
            )
        elapsed = time.perf_counter() - started
        docs = {
            name: doc.get_update()
            for name, doc in node.docs.items()
            if name.startswith(cm.EVENTS_PREFIX)
        }
        return {"code": node.code, "events": node.index.count, "seconds": elapsed, "docs": docs}
    finally:
        await node.async_close()


# -- floor --------------------------------------------------------------------------


def measure_floor(holdings: list[dict[str, bytes]], mode: str = "bare") -> dict[str, Any]:
    """Pairwise state-vector exchange between in-process Docs until they are equal.

    `mode` "bare": pycrdt alone (the floor). "read": each diff applied while every new
    event's bytes are decoded and encoded again (the least a node that keeps only canonical,
    well-formed events can do, no rules). "checked": each diff also goes through what a node
    must do with it before it keeps it (sync's check of the update, every new event
    validated) and after (the fold). All in one process, with no storage, TLS or network:
    what the node's plumbing adds shows as the gap between these and the nodes.
    """
    names = sorted({name for held in holdings for name in held})
    docs: list[dict[str, pycrdt.Doc[Any]]] = []
    for held in holdings:
        per_name: dict[str, pycrdt.Doc[Any]] = {}
        for name in names:
            doc: pycrdt.Doc[Any] = pycrdt.Doc()
            if name in held:
                doc.apply_update(held[name])
            per_name[name] = doc
        docs.append(per_name)
    checker = sync.UpdateChecker()
    folds = [Fold() for _ in docs]
    sent = rounds = 0
    started = time.perf_counter()
    while True:
        states = [{name: d[name].get_state() for name in names} for d in docs]
        decoded = [{name: sync.parse_state_vector(sv) for name, sv in s.items()} for s in states]
        if all(x == decoded[0] for x in decoded):
            break
        if rounds == MAX_ROUNDS:
            raise RuntimeError(f"converge: the floor's Docs differ after {rounds} rounds")
        rounds += 1
        diffs: list[tuple[int, str, bytes]] = []
        for (i, _), (j, asker) in itertools.permutations(enumerate(states), 2):
            for name in names:
                sent += len(asker[name])  # j tells i its state vector
                diff = docs[i][name].get_update(asker[name])
                sent += len(diff)
                diffs.append((j, name, diff))
        for j, name, diff in diffs:
            if mode == "checked":
                _checked_apply(checker, folds[j], docs[j][name], name, diff)
            elif mode == "read":
                _read_apply(docs[j][name], diff)
            else:
                docs[j][name].apply_update(diff)
    elapsed = time.perf_counter() - started
    events = {len(cm.events_map(d[name])) for d in docs for name in names}
    return {"seconds": elapsed, "bytes": sent, "rounds": rounds, "events_per_doc": sorted(events)}


def _read_apply(doc: pycrdt.Doc[Any], diff: bytes) -> None:
    def read(event: Any) -> None:
        for change in event.keys.values():
            if change.get("action") == "add":
                value = change["newValue"]
                if cm.encode(cm.decode_map(value)) != value:
                    raise RuntimeError("converge: an event not in its canonical form")

    events = cm.events_map(doc)
    sub = events.observe(read)
    try:
        doc.apply_update(diff)
    finally:
        events.unobserve(sub)


def _checked_apply(
    checker: sync.UpdateChecker, fold: Fold, doc: pycrdt.Doc[Any], name: str, diff: bytes
) -> None:
    checked = checker.check_read(doc, name, diff)
    if checked is None:
        return
    change, entries = checked.change, checked.entries
    if entries is not None:  # as a node does: the fold reads the entries the check read
        doc.apply_update(change)
        fold.add_encoded([value for root, _key, value in entries if root == "events"])
        return
    added: list[bytes | bytearray] = []

    def collect(event: Any) -> None:  # else from pycrdt's change events
        for change_ in event.keys.values():
            if change_.get("action") == "add":
                added.append(change_["newValue"])

    events = cm.events_map(doc)
    sub = events.observe(collect)
    try:
        doc.apply_update(change)
    finally:
        events.unobserve(sub)
    fold.add_encoded(added)


def measure_small_checks(holdings: list[dict[str, bytes]], count: int = 20) -> dict[str, Any]:
    """Check one-event updates against a day of the first node's events, as live sync does.

    Median seconds per check, with a scratch copy of the document per check
    (`sync.check_update`) and as a node checks (`sync.UpdateChecker`: an update of new
    entries read from its bytes, compiled; else on a kept shadow); each passed change is
    applied to the document, as the node does, before the next check.
    """
    name = sorted(holdings[0])[0]
    others: pycrdt.Doc[Any] = pycrdt.Doc()
    others.apply_update(holdings[1][name])
    updates = []
    for _, event in list(cm.iter_events(others))[:count]:
        one: pycrdt.Doc[Any] = pycrdt.Doc()
        cm.add_event(one, event)
        updates.append(one.get_update())
    checker = sync.UpdateChecker()
    out: dict[str, Any] = {"events_in_doc": 0}
    for label, check in (("scratch", sync.check_update), ("checker", checker.check)):
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        doc.apply_update(holdings[0][name])
        out["events_in_doc"] = len(cm.events_map(doc))
        check(doc, name, updates[0])  # a shadow, when one is needed, is made here, once
        times = []
        for update in updates[1:]:
            started = time.perf_counter()
            change = check(doc, name, update)
            times.append(time.perf_counter() - started)
            assert change is not None
            doc.apply_update(change)
        out[label] = sorted(times)[len(times) // 2]
    return out


# -- nodes --------------------------------------------------------------------------


def _busy_seconds() -> float:
    """CPU seconds the machine spent busy since boot, all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def _quiet(window: float = QUIET_WINDOW_S, timeout: float = QUIET_TIMEOUT_S) -> bool:
    """Wait until the machine is nearly idle over `window` (nodes done starting: a
    compaction of what was recorded offline, in a process of its own, would otherwise run
    into the heal); False when it was not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _busy_seconds()
        await asyncio.sleep(window)
        if _busy_seconds() - before < QUIET_SHARE * window:
            return True
    return False


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _get_json(session: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        answer = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"GET {url} answered {resp.status}: {answer}")
        return answer


async def _feed(session: aiohttp.ClientSession, base_url: str, token: str) -> bytes:
    out = b""
    after: str | None = None
    while True:
        params = {"limit": "10000", **({"after": after} if after else {})}
        async with session.get(
            base_url + "/api/feed", params=params, headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET /api/feed answered {resp.status}: {body[:200]!r}")
            after = resp.headers.get("Sterimesh-Next-After")
        out += body
        if after is None:
            return out


async def _wait(what: str, timeout: float, probe: Any) -> float:
    """Poll the coroutine function `probe` until true; the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while True:
        if await probe():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"converge: {what} not within {timeout:g} s")
        await asyncio.sleep(POLL_S)


async def meet(datas: list[DataDir], token: str) -> None:
    """Run the nodes together, peers of each other, until each shows the others live."""
    nodes = [NodeProcess(data) for data in datas]
    try:
        for node in nodes:
            node.peers = [f"127.0.0.1:{o.sync_port}" for o in nodes if o is not node]
        await asyncio.gather(*(node.async_start(60) for node in nodes))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await _wait(
                "the nodes to meet", SETTLE_TIMEOUT_S, lambda: _all_live(session, nodes, token)
            )
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.close()


async def _all_live(session: aiohttp.ClientSession, nodes: list[NodeProcess], token: str) -> bool:
    for n in nodes:
        peers = (await _get_json(session, n.base_url + "/api/peers", token))["peers"]
        live = {p["node"] for p in peers if p["state"] == "live" and not p["behind"]}
        if len(live) != len(nodes) - 1:
            return False
    return True


async def measure(workdir: Path, per_node: int = EVENTS_PER_NODE) -> dict[str, Any]:
    """Build the cluster, record apart, heal through counting relays; and the floor."""
    datas = [init_node_dir(workdir / "a", "Poste A", "sale")]
    token = create_token(datas[0], "operator", "bench")
    with NodeProcess(datas[0]) as first:
        assert first.sync_address is not None
        for name, zone in (("b", "propre"), ("c", "sterile")):
            invite = run_cli("invite", "--data", str(datas[0].root)).stdout.strip()
            path = workdir / name
            run_cli(
                "join",
                "--data",
                str(path),
                "--name",
                f"Poste {name.upper()}",
                "--zone",
                zone,
                "--token",
                invite,
                "--peer",
                first.sync_address,
            )
            datas.append(DataDir(path))
        first.stop()
    await meet(datas, token)  # a cluster before its split: every node knows every member

    recorded = [await record_offline(data, per_node) for data in datas]
    total = sum(r["events"] for r in recorded)
    floor = measure_floor([r["docs"] for r in recorded])
    gc.collect()  # what recording left, now, not in a full collection that stalls the relays
    outcome = await heal(datas, token, total)
    # the other in-process rows after the heal: they leave millions of objects in this process
    read_floor = measure_floor([r["docs"] for r in recorded], mode="read")
    checked_floor = measure_floor([r["docs"] for r in recorded], mode="checked")
    small_checks = measure_small_checks([r["docs"] for r in recorded])
    seconds = outcome["seconds"]
    return {
        "events_per_node": per_node,
        "events_total": total,
        "events_before_heal": outcome.pop("before"),
        "recording": [
            {"node": r["code"], "events": r["events"], "rate": r["events"] / r["seconds"]}
            for r in recorded
        ],
        "floor": floor,
        "read_floor": read_floor,
        "checked_floor": checked_floor,
        "small_checks": small_checks,
        "nodes": outcome,
        "time_ratio": seconds / floor["seconds"],
        "bytes_ratio": outcome["bytes"] / floor["bytes"],
        "settled_time_ratio": outcome["settled_seconds"] / floor["seconds"],
        "settled_bytes_ratio": outcome["settled_bytes"] / floor["bytes"],
    }


async def heal(datas: list[DataDir], token: str, total: int) -> dict[str, Any]:
    """Start the nodes behind closed relays, open them: the heal's times and bytes."""
    nodes = [NodeProcess(data) for data in datas]
    relays = [Relay(code, node.sync_port or 0) for code, node in zip(NODES, nodes, strict=True)]
    try:
        for relay in relays:
            await relay.start()
        for i, node in enumerate(nodes):
            node.peers = [f"127.0.0.1:{r.port}" for j, r in enumerate(relays) if j != i]
        await asyncio.gather(*(node.async_start(60) for node in nodes))
        waited = time.monotonic()
        quiet = await _quiet()
        waited = time.monotonic() - waited
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def statuses() -> list[dict[str, Any]]:  # the three at once
                return list(
                    await asyncio.gather(
                        *(_get_json(session, n.base_url + "/api/status", token) for n in nodes)
                    )
                )

            async def counts() -> list[int]:
                return [status["events"] for status in await statuses()]

            before = await counts()
            cpu0 = [_cpu_seconds(n.pid) for n in nodes]
            healed = time.monotonic()
            for relay in relays:
                relay.gate.set()

            async def all_events() -> bool:
                return all(c == total for c in await counts())

            converged = await _wait(
                "every node holding every event", CONVERGE_TIMEOUT_S, all_events
            )
            bytes_converged = sum(r.total for r in relays)
            cpu = [_cpu_seconds(n.pid) - c for n, c in zip(nodes, cpu0, strict=True)]

            folded: float | None = None  # both watched at once: each when it first holds
            settled: float | None = None
            bytes_settled = 0

            async def views_and_peers() -> bool:
                nonlocal folded, settled, bytes_settled
                if folded is None and all(s["views_behind"] == 0 for s in await statuses()):
                    folded = time.monotonic()
                if settled is None and await _all_live(session, nodes, token):
                    settled = time.monotonic()
                    bytes_settled = sum(r.total for r in relays)
                return folded is not None and settled is not None

            await _wait(
                "every node's views current, every peer live", SETTLE_TIMEOUT_S, views_and_peers
            )
            if folded is None or settled is None:  # (_wait returned: both hold)
                raise RuntimeError("converge: views or peers not settled")
            feeds = [await _feed(session, n.base_url, token) for n in nodes]
        for node in nodes:
            node.stop()
    finally:
        for node in nodes:
            node.close()
        for relay in relays:
            await relay.close()
    identical = len(set(feeds)) == 1 and len(feeds[0].splitlines()) == total
    if not identical:
        raise RuntimeError(
            f"converge: feeds differ after convergence ({[len(f.splitlines()) for f in feeds]})"
        )
    seconds = converged - healed
    return {
        "before": before,
        "seconds": seconds,
        "bytes": bytes_converged,
        "settled_seconds": settled - healed,
        "settled_bytes": bytes_settled,
        "views_seconds": folded - healed,
        "connections": sum(r.connections for r in relays),
        "bytes_per_relay": {r.name: r.total for r in relays},
        "node_cpu": [c / seconds for c in cpu],
        "feeds_identical": identical,
        "quiet_before": quiet,
        "quiet_wait_s": waited,
    }


# -- run ------------------------------------------------------------------------------


def run(per_node: int = EVENTS_PER_NODE) -> dict[str, Any]:
    """Measure the floor and the three nodes; the ratios of one to the other."""
    workdir = Path(tempfile.mkdtemp(prefix="sterimesh-bench-converge-"))
    try:
        results = asyncio.run(measure(workdir, per_node))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["aim"] = {
        "time_ratio": AIM_TIME_RATIO,
        "bytes_ratio": AIM_BYTES_RATIO,
        "time_ok": results["time_ratio"] <= AIM_TIME_RATIO,
        "bytes_ok": results["bytes_ratio"] <= AIM_BYTES_RATIO,
    }
    results["machine"] = machine_info()
    return results


def render(results: dict[str, Any]) -> str:
    """The table: floor, then the nodes at convergence and once settled, with ratios."""
    floor, nodes = results["floor"], results["nodes"]
    headers = ["measure", "seconds", "x floor", "bytes", "x floor", "node cpu"]
    cpu = sum(nodes["node_cpu"])
    table = [
        [
            "floor: 3 pycrdt Docs, pairwise sv/diff",
            floor["seconds"],
            1.0,
            floor["bytes"],
            1.0,
            None,
        ],
        *(
            [
                label,
                results[key]["seconds"],
                results[key]["seconds"] / floor["seconds"],
                results[key]["bytes"],
                results[key]["bytes"] / floor["bytes"],
                None,
            ]
            for label, key in (
                ("in-process, each new event decoded and re-encoded", "read_floor"),
                ("in-process, each diff checked and folded", "checked_floor"),
            )
            if key in results
        ),
        [
            "3 nodes: heal -> all events everywhere",
            nodes["seconds"],
            results["time_ratio"],
            nodes["bytes"],
            results["bytes_ratio"],
            cpu,
        ],
        [
            "3 nodes: heal -> views current on every node",
            nodes["views_seconds"],
            nodes["views_seconds"] / floor["seconds"],
            None,
            None,
            None,
        ],
        [
            "3 nodes: heal -> every peer live",
            nodes["settled_seconds"],
            results["settled_time_ratio"],
            nodes["settled_bytes"],
            results["settled_bytes_ratio"],
            None,
        ],
    ]
    rates = ", ".join(f"{r['node']} {r['rate']:,.0f}/s" for r in results["recording"])
    lines = [format_table(headers, table)]
    lines.append(
        f"{results['events_per_node']:,} events per node recorded apart, offline through "
        f"Node.async_record ({rates}); {results['events_total']:,} in all"
    )
    lines.append(
        f"feeds byte-identical after convergence: {'yes' if nodes['feeds_identical'] else 'NO'}; "
        f"relayed connections: {nodes['connections']}; floor rounds: {floor['rounds']}; "
        f"machine idle before the heal: {'yes' if nodes.get('quiet_before', True) else 'NO'}"
        f" (waited {nodes.get('quiet_wait_s', 0.0):.1f} s)"
    )
    aim = results.get("aim")
    if aim is not None:
        lines.append(
            f"aim: time <= {aim['time_ratio']:g}x floor: {'ok' if aim['time_ok'] else 'MISSED'}; "
            f"bytes <= {aim['bytes_ratio']:g}x floor: {'ok' if aim['bytes_ok'] else 'MISSED'}"
        )
    small = results.get("small_checks")
    if small is not None:
        lines.append(
            f"one-event update checked against a day of {small['events_in_doc']:,} events "
            f"(median): scratch copy {small['scratch'] * 1000:.1f} ms, "
            f"as a node checks it {small['checker'] * 1000:.2f} ms"
        )
    lines.append("node cpu = CPU seconds of the three nodes per wall second until convergence")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark alone and print its table."""
    print(render(run()))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
