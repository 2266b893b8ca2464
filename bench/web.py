"""Benchmark of the web pages at hospital scale: each page's render time over real HTTP.

A node holds the hospital sample reference (400 set types, 2,500 instances, 60,000
instruments) and 7 days of 20,000 events each (140,000 events, from bench/fold.py's
generator, stored as replicated documents). A releaser is logged in through the login form;
each page is fetched 15 times over a real loopback socket. Anchor, same client, same server,
same run: GET /api/health (the cost of one aiohttp round trip). Aim: every page under 300 ms.
Run: python -m bench web.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from pycrdt import Doc

import crdt_model as cm
from bench._util import format_table, latency_summary
from bench.fold import PLANNED, _History
from node import DataDir, Node, init_node, make_app
from node._bundle import read_bundle
from node._sample import write_sample

DAYS = 7
REPEAT = 15
AIM_MS = 300.0
PASSWORD = "bench-password-1"
_CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


async def _fill(node: Node) -> tuple[str, str]:
    """Import the hospital reference and DAYS days of events; a set code and a load number."""
    with tempfile.TemporaryDirectory() as tmp:
        bundle = read_bundle(write_sample(Path(tmp) / "b", scale="hospital", start=PLANNED))
    await node.async_import(bundle)
    ref = cm.Reference(bundle.tables, export_id=bundle.export_id)
    history = _History(ref)
    first = PLANNED - timedelta(days=DAYS)
    some_set = some_load = ""
    for d in range(DAYS):
        events = history.day(first + timedelta(days=d))
        by_doc: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            name = cm.events_doc_name(cm.Timestamp.parse(event["hlc"]))
            by_doc.setdefault(name, []).append(event)
            if event["type"] == "steri.loaded":
                some_load, some_set = event["load"], event["sets"][0]
        for name, found in by_doc.items():
            doc: Doc[Any] = Doc()
            if name in node.docs:
                doc.apply_update(node.docs[name].get_update())
            state = doc.get_state()
            with doc.transaction():
                for event in found:
                    cm.add_event(doc, event)
            await node.async_store_remote(name, doc.get_update(state), "bench")
    return some_set, some_load


async def _measure(base: str, paths: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as session:
        page = await (await session.get(base + "/login")).text()
        match = _CSRF_RE.search(page)
        assert match is not None
        resp = await session.post(
            base + "/login",
            data={"csrf": match.group(1), "login": "rel", "password": PASSWORD, "next": "/"},
        )
        assert resp.status == 200, await resp.text()
        for path in ["/api/health", *paths]:
            times = []
            for _ in range(REPEAT):
                started = time.perf_counter()
                async with session.get(base + path) as answer:
                    await answer.read()
                    assert answer.status == 200, (path, answer.status)
                times.append(time.perf_counter() - started)
            out[path] = latency_summary(times)
    return out


async def _run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = DataDir(Path(tmp) / "node")
        init_node(data, name="Bench", zone="sterile")
        node = Node(data)
        await node.async_open()
        try:
            filled = time.perf_counter()
            set_code, load = await _fill(node)
            filled = time.perf_counter() - filled
            await node.async_add_user("rel", "releaser", PASSWORD, "bench")
            server = TestServer(make_app(node), host="127.0.0.1")
            await server.start_server()
            try:
                base = str(server.make_url("")).rstrip("/")
                day = (PLANNED - timedelta(days=1)).isoformat()
                paths = [
                    f"/station?zone=sterile&code={set_code.replace('#', '%23')}",
                    "/dashboard",
                    "/dashboard/body",
                    "/loads",
                    f"/loads/{load}",
                    f"/recall?lot={load}",
                    "/reference",
                    f"/reference/planning?date={day}",
                ]
                timings = await _measure(base, paths)
            finally:
                await server.close()
            events = node.index.count
        finally:
            await node.async_close()
    anchor = timings.pop("/api/health")
    return {"events": events, "fill_s": filled, "anchor": anchor, "pages": timings}


def run() -> dict[str, Any]:
    """Measure and return the results."""
    return asyncio.run(_run())


def render(results: dict[str, Any]) -> str:
    """The table: p50/p95 per page, ratio to the anchor, aim."""
    anchor = results["anchor"]
    rows = [
        ["anchor: GET /api/health", f"{anchor['p50_ms']:.2f}", f"{anchor['max_ms']:.2f}", "1", ""]
    ]
    for path, t in results["pages"].items():
        rows.append(
            [
                path[:48],
                f"{t['p50_ms']:.1f}",
                f"{t['max_ms']:.1f}",
                f"{t['p50_ms'] / anchor['p50_ms']:.0f}",
                "ok" if t["max_ms"] < AIM_MS else "MISSED",
            ]
        )
    table = format_table(["page", "p50 ms", "max ms", "x anchor", f"< {AIM_MS:.0f} ms"], rows)
    return f"{table}\n{results['events']:,} events, hospital reference; {REPEAT} requests a page"


def main() -> None:
    """Run and print."""
    print(render(run()))


if __name__ == "__main__":
    main()
