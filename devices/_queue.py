"""A print queue kept in a folder: one file per job, retried, never lost, never duplicated."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ._errors import (
    DuplicatePrintError,
    JobNotFoundError,
    PrinterUnavailableError,
    PrintQueueError,
)
from ._printers import Printer
from ._sanitize import sanitize

_LOGGER = logging.getLogger(__name__)

RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
IDLE_WAIT = 5.0
PURGE_EVERY = 86_400.0
_SUFFIX = ".job.json"
INTERRUPTED = "interrupted while printing: check whether the label came out, then retry or cancel"
UNSURE = "may have printed partly: check the printer, then retry or cancel"


class JobState(StrEnum):
    """Where a print job stands."""

    QUEUED = "queued"
    PRINTING = "printing"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class PrintJob:
    """A print job as persisted; `held` errors wait for the operator, others are retried."""

    id: str
    label_id: str
    printer: str
    format: str
    reprint: bool
    state: JobState
    created: float
    updated: float
    attempts: int = 0
    last_error: str | None = None
    next_attempt: float | None = None
    held: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the job's fields as JSON-ready values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class PrintQueue:
    """Persistent print queue; `process_once` is the step, `start` runs it in a thread."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        printers: Mapping[str, Printer],
        *,
        retry_delays: Iterable[float] = RETRY_DELAYS,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[PrintJob], None] | None = None,
        keep_finished: float | None = None,
    ) -> None:
        """Open (or create) the queue in `folder`; jobs left printing by a crash are held.

        With `keep_finished` (seconds), the worker deletes done and cancelled jobs older than
        that when it starts and once a day after, so the folder does not grow for ever.
        """
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.printers = dict(printers)
        self.retry_delays = tuple(retry_delays) or RETRY_DELAYS
        self.keep_finished = keep_finished
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: dict[str, PrintJob] = {}
        self._seq = 0
        self._load()

    # Operator and node API

    def submit(
        self,
        data: bytes,
        *,
        label_id: str,
        printer: str,
        fmt: str = "zpl",
        reprint: bool = False,
    ) -> PrintJob:
        """Queue `data` durably; a label already queued or printed needs `reprint=True`."""
        if printer not in self.printers:
            raise PrintQueueError(f"unknown printer {sanitize(printer, 40)!r}")
        with self._lock:
            if not reprint:
                for job in self._jobs.values():
                    if job.label_id == label_id and job.state is not JobState.CANCELLED:
                        raise DuplicatePrintError(
                            f"label {sanitize(label_id, 40)} already has job {job.id}"
                            f" ({job.state}): ask for a reprint"
                        )
            now = self._clock()
            # never an id used before, even once every job is purged and the node restarts:
            # an old id held by an integration must not retry or cancel another job
            self._seq = max(self._seq + 1, int(now * 1000))
            job = PrintJob(
                id=f"{self._seq:013d}",
                label_id=label_id,
                printer=printer,
                format=fmt,
                reprint=reprint,
                state=JobState.QUEUED,
                created=now,
                updated=now,
            )
            self._write(job, data)
        self._changed(job)
        self._wake.set()
        return job

    def jobs(self, states: Iterable[JobState] | None = None) -> list[PrintJob]:
        """Return the jobs (all, or in `states`), oldest first."""
        wanted = None if states is None else set(states)
        with self._lock:
            return [j for _, j in sorted(self._jobs.items()) if wanted is None or j.state in wanted]

    def get(self, job_id: str) -> PrintJob:
        """Return one job; raise JobNotFoundError."""
        with self._lock:
            return self._get(job_id)

    def data(self, job_id: str) -> bytes:
        """Return the bytes of one job."""
        with self._lock:
            self._get(job_id)
            return self._read_data(job_id)

    def retry(self, job_id: str) -> PrintJob:
        """Put an errored job back in the queue now (the operator checked the printer)."""
        with self._lock:
            job = self._get(job_id)
            if job.state is not JobState.ERROR:
                raise PrintQueueError(f"job {job_id} is {job.state}, only errors are retried")
            job = self._save(job, state=JobState.QUEUED, held=False, next_attempt=None)
        self._changed(job)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> PrintJob:
        """Cancel a queued or errored job; its label may then be submitted again."""
        with self._lock:
            job = self._get(job_id)
            if job.state not in (JobState.QUEUED, JobState.ERROR):
                raise PrintQueueError(f"job {job_id} is {job.state}: it cannot be cancelled")
            job = self._save(job, state=JobState.CANCELLED, next_attempt=None)
        self._changed(job)
        return job

    def purge(self, older_than: float) -> int:
        """Delete done and cancelled jobs last updated before `older_than`; return the count."""
        removed = 0
        with self._lock:
            for job in list(self._jobs.values()):
                if job.state in (JobState.DONE, JobState.CANCELLED) and job.updated < older_than:
                    (self.folder / f"{job.id}{_SUFFIX}").unlink(missing_ok=True)
                    del self._jobs[job.id]
                    removed += 1
        return removed

    # The worker

    def process_once(self, now: float | None = None) -> PrintJob | None:
        """Send the next due job, if any; return it in its new state."""
        now = self._clock() if now is None else now
        with self._lock:
            job = self._next_due(now)
            if job is None:
                return None
            data = self._read_data(job.id)
            job = self._save(job, state=JobState.PRINTING, attempts=job.attempts + 1)
        self._changed(job)
        error: str | None = None
        retry_safe = True
        try:
            self.printers[job.printer].send(data, name=f"{job.id}-{job.label_id}")
        except PrinterUnavailableError as err:
            error = str(err)
        except Exception as err:
            error = f"{err} ({UNSURE})"
            retry_safe = False
        with self._lock:
            if error is None:
                job = self._save(job, state=JobState.DONE, last_error=None, next_attempt=None)
                _LOGGER.info("printed job %s (label %s)", job.id, sanitize(job.label_id, 40))
            else:
                delay = self.retry_delays[min(job.attempts - 1, len(self.retry_delays) - 1)]
                job = self._save(
                    job,
                    state=JobState.ERROR,
                    last_error=sanitize(error, 300),
                    held=not retry_safe,
                    next_attempt=None if not retry_safe else now + delay,
                )
                _LOGGER.warning("print job %s failed: %s", job.id, job.last_error)
        self._changed(job)
        return job

    def next_due_in(self, now: float | None = None) -> float | None:
        """Return seconds until a job is due (0 if one is due now), None if none waits."""
        now = self._clock() if now is None else now
        with self._lock:
            times = [
                now if j.state is JobState.QUEUED else j.next_attempt
                for j in self._jobs.values()
                if j.state is JobState.QUEUED
                or (j.state is JobState.ERROR and j.next_attempt is not None)
            ]
        valid = [t for t in times if t is not None]
        return None if not valid else max(0.0, min(valid) - now)

    def start(self) -> None:
        """Run the worker in a daemon thread until stop()."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="print-queue", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the worker thread, after the job it is printing."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Make the worker look for due jobs now."""
        self._wake.set()

    def __enter__(self) -> PrintQueue:
        """Start the worker."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the worker."""
        self.stop()

    # Private

    def _run(self) -> None:
        next_purge = float("-inf")
        while not self._stop.is_set():
            if self.keep_finished is not None and self._clock() >= next_purge:
                next_purge = self._clock() + PURGE_EVERY
                self._purge_finished(self.keep_finished)
            try:
                job = self.process_once()
            except Exception:
                _LOGGER.exception("print queue step failed")
                job = None
            if job is not None:
                continue
            wait = self.next_due_in()
            self._wake.wait(IDLE_WAIT if wait is None else min(wait, IDLE_WAIT))
            self._wake.clear()

    def _purge_finished(self, keep: float) -> None:
        try:
            removed = self.purge(self._clock() - keep)
        except OSError:
            _LOGGER.exception("print queue purge failed")
            return
        if removed:
            _LOGGER.info("print queue: %d finished jobs purged", removed)

    def _next_due(self, now: float) -> PrintJob | None:
        blocked: set[str] = set()
        for _, job in sorted(self._jobs.items()):
            if job.printer in blocked:
                continue
            if job.state is JobState.QUEUED:
                return job
            if job.state is JobState.ERROR and not job.held:
                if job.next_attempt is not None and job.next_attempt <= now:
                    return job
                blocked.add(job.printer)  # keep label order per printer while it is down
        return None

    def _get(self, job_id: str) -> PrintJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no print job {sanitize(job_id, 40)!r}")
        return job

    def _save(self, job: PrintJob, **changes: Any) -> PrintJob:
        job = dataclasses.replace(job, updated=self._clock(), **changes)
        self._write(job, self._read_data(job.id) if job.id in self._jobs else b"")
        return job

    def _write(self, job: PrintJob, data: bytes) -> None:
        record = job.to_json() | {"data": base64.b64encode(data).decode("ascii")}
        path = self.folder / f"{job.id}{_SUFFIX}"
        tmp = self.folder / f".{job.id}.tmp"
        with tmp.open("w", encoding="utf-8") as file:
            json.dump(record, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.folder)
        self._jobs[job.id] = job

    def _read_data(self, job_id: str) -> bytes:
        record = json.loads((self.folder / f"{job_id}{_SUFFIX}").read_text("utf-8"))
        return base64.b64decode(record["data"])

    def _load(self) -> None:
        for tmp in self.folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for path in sorted(self.folder.glob(f"*{_SUFFIX}")):
            try:
                record = json.loads(path.read_text("utf-8"))
                record.pop("data")
                record["state"] = JobState(record["state"])
                job = PrintJob(**record)
            except (OSError, ValueError, TypeError, KeyError):
                bad = path.with_name(path.name + ".corrupt")
                os.replace(path, bad)
                _LOGGER.exception("print job file %s unreadable: kept as %s", path, bad.name)
                continue
            self._jobs[job.id] = job
            self._seq = max(self._seq, int(job.id) if job.id.isascii() and job.id.isdigit() else 0)
        for job in list(self._jobs.values()):
            if job.state is JobState.PRINTING:
                self._save(
                    job, state=JobState.ERROR, last_error=INTERRUPTED, held=True, next_attempt=None
                )

    def _changed(self, job: PrintJob) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(job)
        except Exception:
            _LOGGER.exception("print queue listener failed")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
