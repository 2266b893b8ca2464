"""The print queue: persistent jobs, retries, operator-visible errors, no silent duplicate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices import (
    DuplicatePrintError,
    JobNotFoundError,
    JobState,
    PrinterError,
    PrintJob,
    PrintQueue,
    PrintQueueError,
    TcpPrinter,
    render_zpl,
)
from devices.simulators import PrinterMode, ZplPrinterSimulator
from tests.devices.devices_helpers import label, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FlakyPrinter:
    """Fails mid-send: the label may or may not be out."""

    def send(self, data: bytes, *, name: str = "label") -> None:
        raise PrinterError("connection reset while sending")


@pytest.fixture
def printer() -> Iterator[ZplPrinterSimulator]:
    with ZplPrinterSimulator() as sim:
        yield sim


def _queue(folder: Path, sim: ZplPrinterSimulator, clock: Clock, **kw: object) -> PrintQueue:
    return PrintQueue(
        folder,
        {"zebra": TcpPrinter(sim.host, sim.port, timeout=2)},
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


def test_job_is_printed_and_persisted(tmp_path: Path, printer: ZplPrinterSimulator) -> None:
    clock = Clock()
    queue = _queue(tmp_path, printer, clock)
    data = render_zpl(label())
    job = queue.submit(data, label_id="L-1", printer="zebra")
    assert job.state is JobState.QUEUED
    assert queue.data(job.id) == data
    done = queue.process_once()
    assert done is not None
    assert (done.state, done.attempts, done.last_error) == (JobState.DONE, 1, None)
    assert printer.wait_printed(1)
    assert queue.process_once() is None
    saved = json.loads((tmp_path / f"{job.id}.job.json").read_text())
    assert saved["state"] == "done"


def test_duplicate_needs_reprint(tmp_path: Path, printer: ZplPrinterSimulator) -> None:
    queue = _queue(tmp_path, printer, Clock())
    first = queue.submit(b"^XA^XZ", label_id="L-1", printer="zebra")
    with pytest.raises(DuplicatePrintError, match="reprint"):
        queue.submit(b"^XA^XZ", label_id="L-1", printer="zebra")
    again = queue.submit(
        render_zpl(label(reprint=True)), label_id="L-1", printer="zebra", reprint=True
    )
    assert again.reprint
    assert again.id > first.id
    queue.cancel(first.id)
    assert queue.get(first.id).state is JobState.CANCELLED
    with pytest.raises(PrintQueueError, match="unknown printer"):
        queue.submit(b"x", label_id="L-2", printer="nope")
    with pytest.raises(JobNotFoundError):
        queue.get("0000009999")


def test_paper_out_is_visible_and_retried_without_loss(
    tmp_path: Path, printer: ZplPrinterSimulator
) -> None:
    clock = Clock()
    seen: list[PrintJob] = []
    queue = _queue(tmp_path, printer, clock, retry_delays=(1, 10), on_change=seen.append)
    printer.set_mode(PrinterMode.PAPER_OUT)
    job = queue.submit(b"^XA^FDone^FS^XZ", label_id="L-1", printer="zebra")
    second = queue.submit(b"^XA^FDtwo^FS^XZ", label_id="L-2", printer="zebra")
    failed = queue.process_once()
    assert failed is not None
    assert failed.id == job.id
    assert failed.state is JobState.ERROR
    assert failed.last_error is not None
    assert "out of paper" in failed.last_error
    assert failed.next_attempt == clock.now + 1
    assert not failed.held
    assert queue.jobs([JobState.ERROR]) == [failed]
    # The second label waits behind the first: labels keep their order per printer.
    assert queue.process_once() is None
    clock.now += 1
    assert queue.process_once().attempts == 2  # type: ignore[union-attr]
    assert queue.get(job.id).next_attempt == clock.now + 10
    printer.set_mode(PrinterMode.READY)
    clock.now += 10
    assert queue.process_once().state is JobState.DONE  # type: ignore[union-attr]
    assert queue.process_once().id == second.id  # type: ignore[union-attr]
    assert printer.wait_printed(2)
    assert [p for p in printer.printed] == [b"^XA^FDone^FS^XZ", b"^XA^FDtwo^FS^XZ"]
    assert [j.state for j in seen].count(JobState.ERROR) == 2


def test_jobs_survive_a_restart_and_interrupted_ones_wait_for_the_operator(
    tmp_path: Path, printer: ZplPrinterSimulator
) -> None:
    clock = Clock()
    queue = _queue(tmp_path, printer, clock)
    waiting = queue.submit(b"^XA^FDa^FS^XZ", label_id="L-1", printer="zebra")
    printing = queue.submit(b"^XA^FDb^FS^XZ", label_id="L-2", printer="zebra")
    # Simulate a crash while the second job was being sent.
    path = tmp_path / f"{printing.id}.job.json"
    record = json.loads(path.read_text())
    record["state"] = "printing"
    path.write_text(json.dumps(record))
    (tmp_path / ".0000000042.tmp").write_text("half-written")
    reopened = _queue(tmp_path, printer, clock)
    assert reopened.get(waiting.id).state is JobState.QUEUED
    held = reopened.get(printing.id)
    assert held.state is JobState.ERROR
    assert held.held
    assert held.last_error is not None
    assert "interrupted" in held.last_error
    assert not (tmp_path / ".0000000042.tmp").exists()
    assert reopened.process_once().id == waiting.id  # type: ignore[union-attr]
    assert reopened.process_once() is None  # held: never reprinted behind the operator's back
    reopened.retry(printing.id)
    assert reopened.process_once().state is JobState.DONE  # type: ignore[union-attr]
    new = reopened.submit(b"x", label_id="L-3", printer="zebra")
    assert new.id > printing.id
    with pytest.raises(DuplicatePrintError):
        reopened.submit(b"x", label_id="L-1", printer="zebra")


def test_unsure_failure_is_held(tmp_path: Path) -> None:
    queue = PrintQueue(tmp_path, {"p": FlakyPrinter()}, clock=Clock())
    job = queue.submit(b"x", label_id="L-1", printer="p")
    failed = queue.process_once()
    assert failed is not None
    assert failed.held
    assert failed.next_attempt is None
    assert failed.last_error is not None
    assert "may have printed" in failed.last_error
    assert queue.process_once() is None
    with pytest.raises(PrintQueueError):
        queue.retry(queue.submit(b"y", label_id="L-2", printer="p").id)
    assert queue.cancel(job.id).state is JobState.CANCELLED


def test_corrupt_job_file_is_kept_aside(tmp_path: Path) -> None:
    (tmp_path / "0000000001.job.json").write_text("{not json")
    queue = PrintQueue(tmp_path, {}, clock=Clock())
    assert queue.jobs() == []
    assert (tmp_path / "0000000001.job.json.corrupt").exists()


def test_purge_removes_old_finished_jobs(tmp_path: Path, printer: ZplPrinterSimulator) -> None:
    clock = Clock()
    queue = _queue(tmp_path, printer, clock)
    job = queue.submit(b"^XA^XZ", label_id="L-1", printer="zebra")
    queue.process_once()
    assert queue.purge(older_than=clock.now) == 0
    clock.now += 100
    assert queue.purge(older_than=clock.now) == 1
    with pytest.raises(JobNotFoundError):
        queue.get(job.id)


def test_worker_purges_old_finished_jobs_at_start_and_daily(
    tmp_path: Path, printer: ZplPrinterSimulator
) -> None:
    day = 86_400.0
    clock = Clock()
    queue = _queue(tmp_path, printer, clock, keep_finished=3 * day)
    old = queue.submit(b"^XA^XZ", label_id="L-1", printer="zebra")
    queue.process_once()
    cancelled = queue.cancel(queue.submit(b"^XA^XZ", label_id="L-2", printer="zebra").id)
    clock.now += 4 * day
    recent = queue.submit(b"^XA^XZ", label_id="L-3", printer="zebra")
    queue.process_once()
    gone = [tmp_path / f"{j.id}.job.json" for j in (old, cancelled)]
    with queue:
        assert wait_for(lambda: not any(path.exists() for path in gone))
        assert queue.get(recent.id).state is JobState.DONE  # three days are not over
        clock.now += 4 * day
        queue.wake()
        assert wait_for(lambda: queue.jobs() == [])
    assert list(tmp_path.iterdir()) == []


def test_a_job_id_is_never_given_twice_even_after_every_job_was_purged(
    tmp_path: Path, printer: ZplPrinterSimulator
) -> None:
    clock = Clock()
    queue = _queue(tmp_path, printer, clock)
    first = queue.submit(b"^XA^XZ", label_id="L-1", printer="zebra")
    queue.process_once()
    clock.now += 10 * 86_400.0
    assert queue.purge(clock.now) == 1  # nothing left in the folder
    again = _queue(tmp_path, printer, clock)  # the node restarts
    later = again.submit(b"^XA^XZ", label_id="L-2", printer="zebra")
    assert later.id != first.id
    assert later.id > first.id


def test_worker_thread_prints_and_retries(tmp_path: Path, printer: ZplPrinterSimulator) -> None:
    printer.set_mode(PrinterMode.PAPER_OUT)
    queue = PrintQueue(
        tmp_path, {"zebra": TcpPrinter(printer.host, printer.port)}, retry_delays=(0.05,)
    )
    with queue:
        job = queue.submit(render_zpl(label()), label_id="L-1", printer="zebra")
        assert wait_for(lambda: queue.get(job.id).state is JobState.ERROR)
        printer.set_mode(PrinterMode.READY)
        assert wait_for(lambda: queue.get(job.id).state is JobState.DONE)
    assert printer.wait_printed(1)
    assert len(printer.printed) == 1
