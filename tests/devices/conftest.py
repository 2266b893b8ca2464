"""Guards for the devices tests: no thread or file descriptor may outlive its test."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    threads = set(threading.enumerate())
    fds = _open_fds()
    yield
    deadline = time.monotonic() + 2.0
    while True:
        extra = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
        leaked = _open_fds() - fds
        if (not extra and not leaked) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not extra, f"threads left running: {extra}"
    # Descriptors opened by lazily imported libraries stay open; only sockets and ptys count.
    kinds = {fd: _kind(fd) for fd in leaked}
    bad = {fd: k for fd, k in kinds.items() if k.startswith(("socket:", "/dev/pts", "/dev/ptmx"))}
    assert not bad, f"descriptors left open: {bad}"


def _kind(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"
