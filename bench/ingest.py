"""Benchmark of durable ingest: POST /api/events to a real node process on loopback.

Each answer 201 means the event was committed with fsync (group commit by the
store's writer thread). Measured at 1, 4 and 16 concurrent clients (one aiohttp
session, keep-alive connections), 2,000 events per level after a warm-up: events
per second and per-request latency (p50, p99). The mix is 3 notes to 1
`wash.loaded` (load number assigned by the node).

Anchor, measured in the same run in a temporary directory on the same filesystem:
raw LMDB durable single-put rate (python `lmdb`, sync=True, one put of a
300-byte value per write transaction), and the p50/p99 of one such put.
Aim: at 16 clients, at least the anchor rate (ratio >= 1) with p99 under 10 ms.

The client runs on the same machine as the node (2 cores here): the CPU time of
both is reported beside the rates. Run: python -m bench ingest (or python -m bench.ingest).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import lmdb

from bench._util import format_table, latency_summary, machine_info
from tests.procs import NodeProcess, create_token, init_node_dir

LEVELS = (1, 4, 16)
EVENTS_PER_LEVEL = 2000
WARMUP_PER_CLIENT = 20
ANCHOR_PUTS = 2000
ANCHOR_VALUE_BYTES = 300
AIM_CLIENTS = 16
AIM_P99_MS = 10.0

_COMMITS_RE = re.compile(r"^sterimesh_store_commits\s+([0-9.e+]+)$", re.MULTILINE)


# -- anchor ---------------------------------------------------------------------


def measure_anchor(
    path: Path, puts: int = ANCHOR_PUTS, value_bytes: int = ANCHOR_VALUE_BYTES
) -> dict[str, Any]:
    """Raw LMDB: one durable put per write transaction, opened like the node's store."""
    env = lmdb.open(
        str(path),
        map_size=1 << 30,
        max_dbs=4,
        subdir=True,
        sync=True,
        metasync=True,
        writemap=False,
    )
    try:
        log = env.open_db(b"log")
        value = os.urandom(value_bytes)
        latencies: list[float] = []
        started = time.perf_counter()
        for i in range(puts):
            t0 = time.perf_counter()
            with env.begin(write=True, db=log) as txn:
                txn.put(b"doc\x00" + struct.pack(">Q", i), value)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    finally:
        env.close()
    return {"puts": puts, "seconds": elapsed, "rate": puts / elapsed, **latency_summary(latencies)}


# -- node -----------------------------------------------------------------------


def _body(n: int) -> dict[str, Any]:
    if n % 4 == 3:
        return {
            "type": "wash.loaded",
            "machine": f"LAV-{n % 3 + 1}",
            "program": "INSTRU 93°C 3MIN NORMAL",
            "sets": [f"JDIGGRBA#{n % 1000:03d}", f"JORTHO#{n % 997:03d}"],
        }
    return {"type": "note", "text": f"bench note {n}: retour prévu 14h", "ref": f"bench-{n}"}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _commits(session: aiohttp.ClientSession, base_url: str, headers: dict[str, str]) -> float:
    async with session.get(base_url + "/metrics", headers=headers) as resp:
        text = await resp.text()
    match = _COMMITS_RE.search(text)
    return float(match.group(1)) if match else float("nan")


async def _post_many(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    *,
    clients: int,
    count: int,
    serial: itertools.count[int],
) -> list[float]:
    latencies: list[float] = []
    left = itertools.count()

    async def client() -> None:
        while next(left) < count:
            body = _body(next(serial))
            t0 = time.perf_counter()
            async with session.post(url, json=body, headers=headers) as resp:
                answer = await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"POST /api/events answered {resp.status}: {answer[:200]!r}")
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def measure_node(
    workdir: Path, levels: tuple[int, ...] = LEVELS, count: int = EVENTS_PER_LEVEL
) -> list[dict[str, Any]]:
    """Durable POST throughput and latency per concurrency level, against one node process."""
    data = init_node_dir(workdir / "node", name="Poste bench", zone="sale")
    token = create_token(data, "operator", "bench")
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[dict[str, Any]] = []
    serial = itertools.count()
    with NodeProcess(data) as node:
        url = node.base_url + "/api/events"
        connector = aiohttp.TCPConnector(limit=max(levels) * 2)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for clients in levels:
                warmup = clients * WARMUP_PER_CLIENT
                await _post_many(
                    session, url, headers, clients=clients, count=warmup, serial=serial
                )
                commits0 = await _commits(session, node.base_url, headers)
                node_cpu0, client_cpu0 = _cpu_seconds(node.pid), time.process_time()
                started = time.perf_counter()
                latencies = await _post_many(
                    session, url, headers, clients=clients, count=count, serial=serial
                )
                elapsed = time.perf_counter() - started
                node_cpu = _cpu_seconds(node.pid) - node_cpu0
                client_cpu = time.process_time() - client_cpu0
                commits = await _commits(session, node.base_url, headers) - commits0
                rows.append(
                    {
                        "clients": clients,
                        "events": count,
                        "seconds": elapsed,
                        "rate": count / elapsed,
                        **latency_summary(latencies),
                        # the two /metrics scrapes add a commit or none; close enough
                        "events_per_commit": count / commits if commits > 0 else float("nan"),
                        "node_cpu": node_cpu / elapsed,
                        "client_cpu": client_cpu / elapsed,
                    }
                )
        node.stop()
    return rows


# -- run ------------------------------------------------------------------------


def run(levels: tuple[int, ...] = LEVELS, count: int = EVENTS_PER_LEVEL) -> dict[str, Any]:
    """Measure the anchor (before and after) and the node at each level."""
    workdir = Path(tempfile.mkdtemp(prefix="sterimesh-bench-ingest-"))
    try:
        before = measure_anchor(workdir / "anchor-1")
        rows = asyncio.run(measure_node(workdir, levels, count))
        after = measure_anchor(workdir / "anchor-2")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    anchor_rate = (before["rate"] + after["rate"]) / 2
    for row in rows:
        row["ratio"] = row["rate"] / anchor_rate
    top = next((r for r in rows if r["clients"] == AIM_CLIENTS), None)
    aim = None
    if top is not None:
        aim = {
            "clients": AIM_CLIENTS,
            "rate_ok": top["ratio"] >= 1.0,
            "p99_ok": top["p99_ms"] < AIM_P99_MS,
        }
    return {
        "anchor": {
            "name": "raw LMDB durable single put",
            "rate": anchor_rate,
            "runs": [before, after],
        },
        "rows": rows,
        "aim": aim,
        "machine": machine_info(),
        "workdir_filesystem_of": tempfile.gettempdir(),
    }


def render(results: dict[str, Any]) -> str:
    """The table: anchor runs, then each level with its ratio to the anchor rate."""
    headers = [
        "measure",
        "events/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ev/commit",
        "node cpu",
        "client cpu",
    ]
    table: list[list[Any]] = []
    anchor = results["anchor"]
    for i, run_ in enumerate(anchor["runs"], 1):
        table.append(
            [
                f"anchor: LMDB sync put, run {i}",
                run_["rate"],
                None,
                run_["p50_ms"],
                run_["p99_ms"],
                run_["max_ms"],
                1.0,
                None,
                None,
            ]
        )
    for row in results["rows"]:
        table.append(
            [
                f"POST /api/events, {row['clients']} client{'s' if row['clients'] > 1 else ''}",
                row["rate"],
                row["ratio"],
                row["p50_ms"],
                row["p99_ms"],
                row["max_ms"],
                row["events_per_commit"],
                row["node_cpu"],
                row["client_cpu"],
            ]
        )
    lines = [format_table(headers, table)]
    lines.append(f"ratio = events/s / anchor mean rate ({anchor['rate']:,.0f}/s)")
    aim = results.get("aim")
    if aim is not None:
        lines.append(
            f"aim at {aim['clients']} clients: rate >= anchor: {'ok' if aim['rate_ok'] else 'MISSED'}; "
            f"p99 < {AIM_P99_MS:g} ms: {'ok' if aim['p99_ok'] else 'MISSED'}"
        )
    lines.append("cpu = CPU seconds per wall second (1.0 = one core busy)")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark alone and print its table."""
    print(render(run()))


if __name__ == "__main__":
    main()
