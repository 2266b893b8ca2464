"""Sync tests: every task a test starts must be finished when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    me = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in leftover:
        task.cancel()
    assert not leftover, f"tasks left running: {leftover}"
