"""`sterimesh feed`: the reconciliation feed as JSON lines, or as one CSV file per event type.

The bytes are those of GET /api/feed: with the node stopped the store is opened read-only;
with the node running the command asks it over its control socket, page by page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import aiohttp
import click

import crdt_model as cm

from ._layout import (
    CONTROL_URL,
    DataDir,
    DataDirError,
    NodeRunningError,
    control_session,
    not_answering,
)
from ._node import Node, NodeError
from ._store import StoreError

PAGE = 10000
"""Events asked of a running node per request (the API's largest page)."""
PROGRESS_EVERY = 10000
"""A progress line on stderr every this many events."""
CSV_CHUNK = 1000
"""Events of one type kept in memory before they are written out as CSV rows."""


class _Sink:
    """Where the feed goes; counts events and tells progress on stderr."""

    def __init__(self) -> None:
        self.count = 0

    def add_event(self, event: Mapping[str, Any]) -> None:
        """One event, as the store holds it."""
        raise NotImplementedError

    def add_page(self, page: bytes) -> None:
        """Feed lines as GET /api/feed gives them."""
        for line in page.splitlines():
            self.add_event(json.loads(line))

    def _counted(self, n: int) -> None:
        before = self.count
        self.count += n
        if self.count // PROGRESS_EVERY > before // PROGRESS_EVERY:
            click.echo(f"feed: {self.count // PROGRESS_EVERY * PROGRESS_EVERY} events...", err=True)

    def commit(self) -> None:
        """Put the finished output in place."""

    def abort(self) -> None:
        """Drop unfinished output."""


@contextlib.contextmanager
def ended_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (a service stopped, a terminal closed) end the work as Ctrl+C does:
    by an exception, so that unfinished files (which hold patient codes) are removed."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signals = (signal.SIGTERM, signal.SIGHUP)
    before = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


class _Jsonl(_Sink):
    """JSON lines to a stream, or to a file put in place only once complete."""

    def __init__(self, out: Path | None) -> None:
        super().__init__()
        self.out = out
        self._tmp: Path | None = None
        if out is None:
            self.stream: IO[bytes] = click.open_file("-", "wb")
        else:
            fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
            self._tmp = Path(name)
            self.stream = os.fdopen(fd, "wb")

    def add_event(self, event: Mapping[str, Any]) -> None:
        self.stream.write(cm.feed_line(event))
        self._counted(1)

    def add_page(self, page: bytes) -> None:
        self.stream.write(page)
        self._counted(page.count(b"\n"))

    def commit(self) -> None:
        self.stream.flush()
        if self._tmp is not None and self.out is not None:
            os.fsync(self.stream.fileno())
            self.stream.close()
            os.replace(self._tmp, self.out)
            self._tmp = None

    def abort(self) -> None:
        if self._tmp is not None:
            self.stream.close()
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


class _Csv(_Sink):
    """One `<event type>.csv` per type present, UTF-8 with BOM, rows in feed order."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self._pending: dict[str, list[Mapping[str, Any]]] = {}
        self._files: dict[str, tuple[Path, IO[str]]] = {}

    def add_event(self, event: Mapping[str, Any]) -> None:
        kind = str(event["type"])
        if kind not in cm.EVENT_TYPES:
            raise click.ClickException(f"event {event.get('id')} has an unknown type {kind[:40]}")
        pending = self._pending.setdefault(kind, [])
        pending.append(event)
        if len(pending) >= CSV_CHUNK:
            self._flush(kind)
        self._counted(1)

    def _flush(self, kind: str) -> None:
        events = self._pending.pop(kind, [])
        text = cm.feed_csv(events, kind)
        opened = self._files.get(kind)
        if opened is None:
            fd, name = tempfile.mkstemp(prefix=f".{kind}.", suffix=".tmp", dir=self.folder)
            # closed in commit() or abort()
            stream = open(fd, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115
            opened = self._files[kind] = (Path(name), stream)
        else:
            text = text[len(cm.feed_csv((), kind)) :]  # the header once per file
        opened[1].write(text)

    def commit(self) -> None:
        for kind in list(self._pending):
            self._flush(kind)
        for kind, (tmp, stream) in sorted(self._files.items()):
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            os.replace(tmp, self.folder / f"{kind}.csv")
        for kind in cm.EVENT_TYPES:
            if kind not in self._files:
                # the folder holds this export only: no file of an earlier one is mistaken for it
                (self.folder / f"{kind}.csv").unlink(missing_ok=True)
        self._files.clear()

    def abort(self) -> None:
        for tmp, stream in self._files.values():
            stream.close()
            tmp.unlink(missing_ok=True)
        self._files.clear()


# -- the two sources ---------------------------------------------------------------------


async def _from_store(data: DataDir, sink: _Sink, after: str | None, unacked: bool) -> None:
    """Every event of a stopped node's store, opened read-only."""
    node = Node(data)
    await node.async_open(readonly=True)
    try:
        acked = node.trace.acked
        for event in node.iter_events(after=after):
            if not (unacked and event["id"] in acked):
                sink.add_event(event)
    finally:
        await node.async_close()


async def _pages(data: DataDir, after: str | None, unacked: bool) -> AsyncIterator[bytes]:
    """GET /api/feed of the node serving `data`, page after page, over its control socket."""
    async with control_session(data) as session:
        while True:
            params = {"limit": str(PAGE)}
            if after is not None:
                params["after"] = after
            if unacked:
                params["unacked"] = "1"
            try:
                async with session.get(CONTROL_URL + "/api/feed", params=params) as resp:
                    page = await resp.read()
                    status = resp.status
                    after = resp.headers.get("Sterimesh-Next-After")
            except aiohttp.ClientError as err:
                raise click.ClickException(not_answering(data, err)) from None
            if status != 200:
                raise click.ClickException(f"the node refused the feed: {_error_of(page)}")
            yield page
            if after is None:
                return


def _error_of(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    return str(answer.get("error")) if isinstance(answer, dict) else str(answer)[:200]


async def _from_node(data: DataDir, sink: _Sink, after: str | None, unacked: bool) -> None:
    async for page in _pages(data, after, unacked):
        sink.add_page(page)


async def _export(data: DataDir, sink: _Sink, after: str | None, unacked: bool) -> None:
    if not data.is_served():
        try:
            await _from_store(data, sink, after, unacked)
        except NodeRunningError:
            pass  # it started meanwhile: ask it
        else:
            return
    await _from_node(data, sink, after, unacked)


# -- the command -------------------------------------------------------------------------


def _event_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        cm.split_event_id(value)
    except cm.ClockError:
        raise click.BadParameter("must be an event id, e.g. 1795869091234-00000-A") from None
    return value


@click.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's data directory.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="jsonl: one JSON object a line; csv: one <event type>.csv per type in the --out folder.",
)
@click.option(
    "--after",
    default=None,
    callback=_event_id,
    help="Only events whose id sorts after this one (events merged in later from peers may"
    " sort before it: resume with --unacked, not with --after).",
)
@click.option("--unacked", is_flag=True, help="Only events the platform has not acknowledged.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="jsonl: a file (default standard output); csv: a folder (required).",
)
def feed(data_dir: Path, fmt: str, after: str | None, unacked: bool, out: Path | None) -> None:
    """Write the reconciliation feed: every event in (hlc, id) order, as GET /api/feed gives it.

    With --format csv, the --out folder gets one <event type>.csv per type present (UTF-8
    with BOM, for people who re-key by hand); a <type>.csv of an earlier export of a type
    absent now is removed.
    """
    data = DataDir(data_dir)
    sink: _Sink
    if fmt == "csv":
        if out is None:
            raise click.UsageError("--format csv writes one file per event type: give --out FOLDER")
        if out.exists() and not out.is_dir():
            raise click.UsageError(f"--out {out} is a file; csv needs a folder")
    else:
        if out is not None and out.is_dir():
            raise click.UsageError(f"--out {out} is a folder; jsonl needs a file name")
        if out is not None and not out.parent.is_dir():
            raise click.UsageError(f"--out {out}: the folder {out.parent} does not exist")
    try:
        if fmt == "csv" and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            sink = _Csv(out)
        else:
            sink = _Jsonl(out)
    except OSError as err:
        raise click.ClickException(f"--out {out}: {err.strerror or err}") from None
    try:
        with ended_by_signals():
            asyncio.run(_export(data, sink, after, unacked))
            sink.commit()
    except (StoreError, DataDirError, NodeError) as err:
        sink.abort()
        raise click.ClickException(str(err)) from None
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, without a traceback
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except OSError as err:  # e.g. the disk filled up while writing
        sink.abort()
        raise click.ClickException(f"--out {out}: {err.strerror or err}") from None
    except BaseException:
        sink.abort()
        raise
    if out is not None:
        click.echo(f"feed: {sink.count} events written to {out}", err=True)
