"""Discovery agents (tests/discovery/mdns_agent.py) running inside lab namespaces."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deploy.lab import Lab
from tests.lab.lab_helpers import REPO_ROOT, python_env

WAIT_S = 20.0  # bounded waits: registering takes ~1.5 s, seeing a record well under 1 s
STOP_S = 15.0
LIFETIME_S = 90.0  # an agent stops by itself even if its test forgot it

Event = dict[str, Any]


class Agent:
    """One agent process in a lab namespace; collects the JSON lines it prints."""

    def __init__(self, lab: Lab, node: str, args: Sequence[str], log_dir: Path) -> None:
        self.node = node
        self.stderr_path = log_dir / f"agent-{node}-{time.monotonic_ns()}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = lab.exec(
            node,
            [
                sys.executable,
                "-m",
                "tests.discovery.mdns_agent",
                *args,
                "--lifetime",
                str(LIFETIME_S),
            ],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=REPO_ROOT,
            env=python_env(),
        )
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"agent-{node}", daemon=True)
        self._reader.start()

    def wait_for(self, what: str, match: Callable[[Event], bool], timeout: float = WAIT_S) -> Event:
        """The first event that matches; fails with everything seen so far after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                    if event["event"] == "error":
                        raise AssertionError(f"agent {self.node} failed: {self.describe()}")
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"agent {self.node}: no {what} within {timeout:.0f} s; {self.describe()}"
                    )
                self._changed.wait(left)

    def started(self) -> Event:
        """Wait until the agent registered; its "started" event (with its service name)."""
        return self.wait_for("start", lambda e: e["event"] == "started")

    def peer(self, node_id: str) -> Event:
        """Wait until the agent proposed this node id."""
        return self.wait_for(
            f"peer {node_id}", lambda e: e["event"] == "peer" and e["node_id"] == node_id
        )

    def ignored(self, name_prefix: str) -> Event:
        """Wait until the agent ignored a service whose name starts with this."""
        return self.wait_for(
            f"ignored {name_prefix}",
            lambda e: e["event"] == "ignored" and e["name"].startswith(name_prefix),
        )

    def peers(self) -> list[Event]:
        """The peer events so far."""
        with self._changed:
            return [e for e in self.events if e["event"] == "peer"]

    def stop(self) -> None:
        """SIGTERM (graceful stop with goodbye), wait, then clean up; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=STOP_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def describe(self) -> str:
        """The events and the tail of stderr, for failure messages."""
        tail = self.stderr_path.read_text(errors="replace")[-1500:]
        return f"exit={self.proc.poll()} events={self.events} stderr=...{tail}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "noise", "line": line[:200]}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()
