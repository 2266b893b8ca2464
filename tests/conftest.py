"""Suite-wide guards: no thread started by a test may outlive it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.daemon and t.name.startswith("store-")
    ]
    for t in leaked:
        t.join(timeout=5)
    assert not [t for t in leaked if t.is_alive()], f"threads left running: {leaked}"
