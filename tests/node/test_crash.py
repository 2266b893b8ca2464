"""Nothing acknowledged is lost: a real node process killed at random moments, many times.

Each round starts the node, lets 8 concurrent clients post events as fast as
they can, and SIGKILLs the process after a random delay. The next start must
give back every event that was answered 201, with the id, clock and load
number it was answered with, and never two events with one id or one load
number. The seed is printed (and named in every failure): rerun a failing
sequence with STERIMESH_CRASH_SEED=N.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node import DataDir
from tests.procs import (
    NodeProcess,
    create_token,
    fetch_all_events,
    get_health,
    init_node_dir,
    node_status,
)

pytestmark = pytest.mark.slow

ROUNDS = 12
WRITERS = 8
KILL_AFTER_S = (0.05, 0.6)
MACHINES = {"wash.loaded": ["LAV-1", "LAV-2"], "steri.loaded": ["AUTO-1", "AUTO-2"]}


@dataclass(frozen=True)
class Ack:
    """What the node answered 201 to, and what it answered."""

    id: str
    hlc: str
    type: str
    load: str | None
    body: dict[str, Any]


@dataclass
class Round:
    """What the writers of one round saw."""

    acked: list[Ack] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sent: int = 0


def _submission(rng: random.Random, writer: int, n: int) -> dict[str, Any]:
    kind = rng.choice(["note", "note", "wash.loaded", "steri.loaded"])
    if kind == "note":
        return {"type": "note", "text": f"writer {writer} note {n}", "ref": f"w{writer}-{n}"}
    sets = [f"SET{n:03d}#{writer}" for n in rng.sample(range(1000), rng.randint(1, 3))]
    return {"type": kind, "machine": rng.choice(MACHINES[kind]), "program": "P1", "sets": sets}


async def _writer(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    writer: int,
    rng: random.Random,
    stop: asyncio.Event,
    seen: Round,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    while not stop.is_set():
        body = _submission(rng, writer, n)
        n += 1
        seen.sent += 1
        try:
            async with session.post(url, json=body, headers=headers) as resp:
                status = resp.status
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            if not stop.is_set():
                seen.failures.append(f"writer {writer}: {err!r} before the kill")
            return
        if status != 201:
            seen.failures.append(f"writer {writer}: {status} {answer} for {body}")
            return
        seen.acked.append(
            Ack(
                id=answer["id"],
                hlc=answer["hlc"],
                type=body["type"],
                load=answer.get("load"),
                body=body,
            )
        )


async def _write_until_killed(
    proc: NodeProcess, token: str, rng: random.Random, kill_after: float
) -> Round:
    seen = Round()
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=WRITERS * 2)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        writers = [
            asyncio.create_task(
                _writer(
                    session,
                    proc.base_url + "/api/events",
                    token,
                    w,
                    random.Random(rng.random()),
                    stop,
                    seen,
                )
            )
            for w in range(WRITERS)
        ]
        await asyncio.sleep(kill_after)
        stop.set()  # before the kill: every error after this point is the kill's
        code = await asyncio.to_thread(proc.kill, signal.SIGKILL)
        await asyncio.gather(*writers)
    assert code == -signal.SIGKILL, f"the node exited by itself ({code})\n{proc.stderr_tail()}"
    return seen


def _check_store(
    events: list[dict[str, Any]],
    acked: dict[str, Ack],
    before: set[str],
    context: str,
) -> None:
    ids = [e["id"] for e in events]
    held = set(ids)
    assert len(ids) == len(held), f"{context}: duplicate event ids"
    assert ids == sorted(ids), f"{context}: events are not in (hlc, id) order"
    lost = sorted(set(acked) - held)
    assert not lost, f"{context}: {len(lost)} acknowledged events lost, e.g. {lost[:5]}"
    vanished = sorted(before - held)
    assert not vanished, f"{context}: events present before are gone: {vanished[:5]}"
    by_id = {e["id"]: e for e in events}
    for ack in acked.values():
        event = by_id[ack.id]
        assert event["hlc"] == ack.hlc, f"{context}: {ack.id} has another hlc: {event}"
        assert event["type"] == ack.type, f"{context}: {ack.id} has another type: {event}"
        assert event.get("load") == ack.load, f"{context}: {ack.id} has another load: {event}"
        for key, value in ack.body.items():
            assert event.get(key) == value, f"{context}: {ack.id} field {key}: {event}"
    loads = [e["load"] for e in events if e["type"].endswith(".loaded")]
    dup_loads = sorted({x for x in loads if loads.count(x) > 1})
    assert not dup_loads, f"{context}: load numbers given twice: {dup_loads[:5]}"
    assert all(e["load"] is not None for e in events if e["type"].endswith(".loaded"))


@pytest.fixture
def node_dir(tmp_path: Path) -> tuple[DataDir, str]:
    data = init_node_dir(tmp_path / "node", name="Poste crash", zone="sale")
    return data, create_token(data, "operator", "crash-writer")


@pytest.fixture
def node_proc(node_dir: tuple[DataDir, str]) -> Iterator[NodeProcess]:
    proc = NodeProcess(node_dir[0])
    try:
        yield proc
    finally:
        proc.close()


async def test_acknowledged_events_survive_sigkill(
    node_dir: tuple[DataDir, str], node_proc: NodeProcess
) -> None:
    data, token = node_dir
    seed = int(os.environ.get("STERIMESH_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"crash test seed: {seed} (rerun with STERIMESH_CRASH_SEED={seed})")
    rng = random.Random(seed)
    acked: dict[str, Ack] = {}
    held: set[str] = set()
    sent = 0
    for round_no in range(ROUNDS + 1):
        context = f"seed {seed}, restart {round_no}"
        await node_proc.async_start()
        health = get_health(node_proc.base_url)
        assert health is not None, f"{context}: no health answer"
        assert health["ok"] is True, f"{context}: {health}"
        events = await fetch_all_events(node_proc.base_url, token)
        _check_store(events, acked, held, context)
        held = {e["id"] for e in events}
        if round_no == ROUNDS:
            break
        seen = await _write_until_killed(node_proc, token, rng, rng.uniform(*KILL_AFTER_S))
        assert not seen.failures, f"{context}: {seen.failures[:5]}\n{node_proc.stderr_tail()}"
        ids = [a.id for a in seen.acked]
        assert len(ids) == len(set(ids)), f"{context}: one id answered twice"
        clash = set(ids) & set(acked)
        assert not clash, f"{context}: ids of acknowledged events given again: {sorted(clash)[:5]}"
        acked.update((a.id, a) for a in seen.acked)
        sent += seen.sent
    exit_code = await asyncio.to_thread(node_proc.stop)
    assert exit_code == 0, f"seed {seed}: graceful stop exited {exit_code}"
    status = await asyncio.to_thread(node_status, data)  # the store opens offline too
    assert status["events"] == len(held), f"seed {seed}: {status['events']} != {len(held)}"
    loaded = sum(1 for a in acked.values() if a.load is not None)
    print(f"{len(acked)} acknowledged ({loaded} loads) of {sent} sent; {len(held)} held")
    assert acked, f"seed {seed}: no event was acknowledged in {ROUNDS} rounds: nothing was tested"
    assert loaded, f"seed {seed}: no load was acknowledged: load numbers were not tested"


async def test_sigterm_stops_gracefully(
    node_dir: tuple[DataDir, str], node_proc: NodeProcess
) -> None:
    data, token = node_dir
    await node_proc.async_start()
    assert data.socket.exists()
    rng = random.Random(7)
    acked: dict[str, Ack] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        for n in range(40):
            body = _submission(rng, 0, n)
            async with session.post(
                node_proc.base_url + "/api/events", json=body, headers=headers
            ) as resp:
                answer = await resp.json()
                assert resp.status == 201, answer
            acked[answer["id"]] = Ack(
                answer["id"], answer["hlc"], body["type"], answer.get("load"), body
            )
    # SIGTERM while clients keep writing: whatever was answered 201 must be kept
    seen = Round()
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        writers = [
            asyncio.create_task(
                _writer(
                    session,
                    node_proc.base_url + "/api/events",
                    token,
                    w,
                    random.Random(w),
                    stop,
                    seen,
                )
            )
            for w in range(4)
        ]
        await asyncio.sleep(0.2)
        stop.set()
        code = await asyncio.to_thread(node_proc.kill, signal.SIGTERM)
        await asyncio.gather(*writers)
    assert code == 0, f"SIGTERM exit code {code}\n{node_proc.stderr_tail()}"
    assert not seen.failures, seen.failures[:5]
    assert not data.socket.exists(), "the control socket was left behind"
    assert "stopping node" in node_proc.stderr_tail()
    acked.update((a.id, a) for a in seen.acked)
    await node_proc.async_start()
    events = await fetch_all_events(node_proc.base_url, token)
    _check_store(events, acked, set(), "after SIGTERM")
    assert len(events) >= len(acked)
    assert await asyncio.to_thread(node_proc.stop) == 0
