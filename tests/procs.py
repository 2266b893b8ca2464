"""Real node processes for end-to-end tests and benchmarks: start, wait, signal, stop.

Nothing here depends on pytest, so benchmarks can use it too. Every process is
started by us and ended by its own pid; callers use `NodeProcess` as a context
manager (or call `close()` in a `finally`) so no node outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from node import DataDir

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 60.0
READY_LINE = "listening on "
PAGE_LIMIT = 1000

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NodeProcessError(RuntimeError):
    """A node process did not start, answer or stop as expected."""


def sterimesh_command() -> list[str]:
    """The `sterimesh` command: the venv's entry point beside sys.executable.

    Falls back to running the CLI module with this interpreter when the project
    is not installed into the venv (a bare `.venv` made without `make`).
    """
    entry = Path(sys.executable).parent / "sterimesh"
    if entry.exists():
        return [str(entry)]
    return [sys.executable, "-c", "from node._cli import main; main()"]


@functools.cache
def run_has_option(option: str) -> bool:
    """True when `sterimesh run` takes `--OPTION` in this source tree (e.g. "sync-listen")."""
    from node._cli import run  # the same tree the node processes run

    return any(option.replace("-", "_") == param.name for param in run.params)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: str, stdin: str | None = None, check: bool = True, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run `sterimesh ARGS...`; raises NodeProcessError (with stderr) on a non-zero exit."""
    result = subprocess.run(
        [*sterimesh_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=REPO_ROOT,
        check=False,
    )
    if check and result.returncode != 0:
        raise NodeProcessError(
            f"sterimesh {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def init_node_dir(path: Path, name: str = "Poste test", zone: str = "sale") -> DataDir:
    """`sterimesh init --new-cluster` into `path`; returns its DataDir."""
    run_cli("init", "--data", str(path), "--name", name, "--zone", zone, "--new-cluster")
    return DataDir(path)


def create_token(data: DataDir | Path, role: str = "operator", name: str | None = None) -> str:
    """`sterimesh token create`: a new API token (works with the node running or not)."""
    root = data.root if isinstance(data, DataDir) else data
    result = run_cli(
        "token", "create", "--data", str(root), "--name", name or f"test-{role}", "--role", role
    )
    token = result.stdout.strip()
    if not token or "\n" in token:
        raise NodeProcessError(f"token create printed {result.stdout[:200]!r}")
    return token


def node_status(data: DataDir | Path) -> dict[str, Any]:
    """`sterimesh status --json` (opens the store offline when no node serves it)."""
    root = data.root if isinstance(data, DataDir) else data
    answer: dict[str, Any] = json.loads(run_cli("status", "--data", str(root), "--json").stdout)
    return answer


def get_health(base_url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET /api/health; None when nothing answers (yet)."""
    try:
        with _NO_PROXY.open(base_url + "/api/health", timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except (OSError, urllib.error.URLError, ValueError):
        return None


async def fetch_all_events(
    base_url: str, token: str, *, session: aiohttp.ClientSession | None = None
) -> list[dict[str, Any]]:
    """Every event the node holds, paging GET /api/events in (hlc, id) order."""
    own = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    events: list[dict[str, Any]] = []
    after: str | None = None
    try:
        while True:
            params = {"limit": str(PAGE_LIMIT)}
            if after is not None:
                params["after"] = after
            async with client.get(
                base_url + "/api/events",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                page = await resp.json()
                if resp.status != 200:
                    raise NodeProcessError(f"GET /api/events answered {resp.status}: {page}")
            events.extend(page["events"])
            after = page["next"]
            if after is None:
                return events
    finally:
        if own:
            await client.close()


class NodeProcess:
    """One `sterimesh run` process on a data directory and a loopback port.

    stdout and stderr go to files beside the data directory (appended across
    restarts), so a chatty node never blocks on a full pipe and a failure can
    show the log's tail.
    """

    def __init__(
        self,
        data: DataDir | Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        sync_port: int | None = None,
        extra_args: Sequence[str] = (),
        peers: Sequence[str] = (),
        mdns: bool = False,
    ) -> None:
        self.data = data if isinstance(data, DataDir) else DataDir(data)
        self.host = host
        self.port = port if port is not None else free_port(host)
        # peers' listener: on loopback and a free port, never the default 0.0.0.0:8701
        self.sync_port: int | None = None
        if run_has_option("sync-listen"):
            self.sync_port = sync_port if sync_port is not None else free_port(host)
        self.extra_args = list(extra_args)
        self.peers = list(peers)
        self.mdns = mdns
        """mDNS stays off unless asked: tests send nothing beyond loopback and their namespaces."""
        self.stdout_path = self.data.root.parent / f"{self.data.root.name}.stdout.log"
        self.stderr_path = self.data.root.parent / f"{self.data.root.name}.stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout_from = 0
        self._stderr_from = 0

    @property
    def base_url(self) -> str:
        """http://HOST:PORT of the node's API."""
        return f"http://{self.host}:{self.port}"

    @property
    def sync_address(self) -> str | None:
        """HOST:PORT of the node's sync listener (None when the CLI has none)."""
        return None if self.sync_port is None else f"{self.host}:{self.sync_port}"

    @property
    def pid(self) -> int:
        """The running process's id."""
        if self.proc is None:
            raise NodeProcessError("the node process was not started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while running."""
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        """True while the process we started is alive."""
        return self.proc is not None and self.proc.poll() is None

    # -- start ------------------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT_S) -> NodeProcess:
        """Start the node and return once it printed its ready line and /api/health answers."""
        if self.running():
            raise NodeProcessError(f"the node is running already (pid {self.pid})")
        self.data.root.parent.mkdir(parents=True, exist_ok=True)
        self._stdout_from = self.stdout_path.stat().st_size if self.stdout_path.exists() else 0
        self._stderr_from = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
        args = [
            *sterimesh_command(),
            "run",
            "--data",
            str(self.data.root),
            "--listen",
            f"{self.host}:{self.port}",
            *([] if self.sync_address is None else ["--sync-listen", self.sync_address]),
            *([] if self.mdns else ["--no-mdns"]),
            *(arg for peer in self.peers for arg in ("--peer", peer)),
            *self.extra_args,
        ]
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=_env(), cwd=REPO_ROOT
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    async def async_start(self, timeout: float = READY_TIMEOUT_S) -> NodeProcess:
        """start() without blocking the event loop."""
        return await asyncio.to_thread(self.start, timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        printed = False
        while time.monotonic() < deadline:
            code = self.returncode
            if code is not None:
                raise NodeProcessError(
                    f"the node exited with code {code} before it was ready\n{self.stderr_tail()}"
                )
            # the ready line is printed after the signal handlers are installed
            printed = printed or READY_LINE in self._read_from(self.stdout_path, self._stdout_from)
            if printed:
                health = get_health(self.base_url)
                if health is not None and health.get("ok") is True:
                    return
            time.sleep(0.05)
        raise NodeProcessError(
            f"the node on {self.base_url} was not ready after {timeout:g} s "
            f"(ready line seen: {printed})\n{self.stderr_tail()}"
        )

    @staticmethod
    def _read_from(path: Path, offset: int) -> str:
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines the current (or last) process wrote to stderr."""
        text = self._read_from(self.stderr_path, self._stderr_from)
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- node stderr ({self.stderr_path}) ---\n{tail}\n--- end ---"

    # -- stop -------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send a signal to the process we started (no-op once it has exited)."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit; returns its exit code."""
        if self.proc is None:
            raise NodeProcessError("the node process was not started")
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise NodeProcessError(
                f"the node (pid {self.proc.pid}) did not exit within {timeout:g} s\n"
                f"{self.stderr_tail()}"
            ) from None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send `sig` (SIGKILL by default) and wait for the exit; returns the exit code.

        The processes the node started (its compaction worker) end with it, as systemd's
        KillMode=control-group ends them (a killed node cannot end them itself)."""
        children = _children(self.proc.pid) if self.proc is not None else []
        self.send_signal(sig)
        code = self.wait(timeout)
        _end(children)
        return code

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait for a graceful exit; SIGKILL and raise if it hangs."""
        self.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except NodeProcessError:
            self.close()
            raise

    def close(self) -> None:
        """Make sure the process is gone (SIGKILL if it still runs), with the processes it
        started. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            children = _children(self.proc.pid)
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
            _end(children)

    def __enter__(self) -> NodeProcess:
        if not self.running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _children(pid: int) -> list[int]:
    """The processes `pid` started (and theirs), read from /proc; [] where there is none."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = [child for child, of in parents.items() if of == parent]
        found.extend(kids)
        todo.extend(kids)
    return found


def _end(pids: list[int]) -> None:
    """SIGKILL processes a test's node started, left behind when the node was killed."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
