"""What the cycle parsers share: line framing, the record draft, dates and numbers."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import ClassVar, Protocol

from .._sanitize import sanitize
from ._model import CycleFlag, CycleKind, CycleRecord, Phase, Sample, TestKind

MAX_LINE = 4096
MAX_RECORD_LINES = 20_000
MAX_RECORD_CHARS = 60_000  # the raw text must fit an event (64 KiB)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%y", "%d/%m/%y")
_TIME_FORMATS = ("%H:%M:%S", "%H:%M")
_PASS = {"pass", "passed", "ok", "conforme", "good", "success", "cycle ok", "reussi"}
_FAIL = {
    "fail",
    "failed",
    "nok",
    "not ok",
    "non conforme",
    "pas ok",
    "non ok",
    "aborted",
    "abort",
    "error",
    "erreur",
    "echec",
    "défaut",
    "defaut",
    "interrompu",
    "bad",
}


class CycleParser(Protocol):
    """Sans-I/O cycle parser: bytes in, finished records out."""

    @property
    def format_name(self) -> str:
        """The registry name of the format."""

    def feed(self, data: bytes) -> list[CycleRecord]:
        """Add received bytes; return the records they completed."""

    def settle(self) -> list[CycleRecord]:
        """The line has been quiet: return what a line held back completes."""

    def flush(self) -> list[CycleRecord]:
        """End of stream: return what is pending, flagged (a record is never dropped)."""


@dataclass
class Draft:
    """A record being assembled line by line."""

    lines: list[str] = field(default_factory=list)
    kind: CycleKind = CycleKind.STERILIZER
    machine: str | None = None
    cycle_no: str | None = None
    program: str | None = None
    serial: str | None = None
    day: date | None = None
    started: datetime | None = None
    ended: datetime | None = None
    phases: list[Phase] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    result: str | None = None
    test_kind: TestKind | None = None
    flags: set[CycleFlag] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    last_at: datetime | None = None
    chars: int = 0

    def add(self, text: str) -> None:
        """Append one raw line."""
        self.lines.append(text)
        self.chars += len(text)

    @property
    def full(self) -> bool:
        """True when the record reached the size an event can carry."""
        return self.chars >= MAX_RECORD_CHARS or len(self.lines) >= MAX_RECORD_LINES

    def problem(self, flag: CycleFlag | None, message: str) -> None:
        """Note a problem (bounded), with its flag if it taints the record."""
        if flag is not None:
            self.flags.add(flag)
        if len(self.problems) < 20:
            self.problems.append(sanitize(message, 160))

    def moment(self, text: str) -> datetime | None:
        """Return the datetime of a time or datetime field, rolling over midnight."""
        moment = parse_datetime(text)
        if moment is None:
            clock = parse_time(text)
            base = self.day or (self.started.date() if self.started else None)
            if clock is None or base is None:
                return None
            moment = _like(datetime.combine(base, clock), self.last_at or self.started)
            if self.last_at is not None and moment < self.last_at - timedelta(hours=1):
                moment += timedelta(days=1)
        else:
            moment = _like(moment, self.last_at or self.started)
        self.last_at = moment
        return moment


def _line_end(buffer: bytearray) -> int:
    """Where the first line ends (the index of its last byte), or -1 while it goes on: at LF,
    CR LF, or a CR alone (some machines end lines so). A CR last in the buffer waits for the
    next byte, which may be its LF (a tap settles it when the line stays quiet: settle())."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r", 0, lf if lf >= 0 else len(buffer))
    if cr < 0:
        return lf
    if cr + 1 == len(buffer):
        return -1
    return cr + 1 if buffer[cr + 1] == 0x0A else cr


def _like(moment: datetime, reference: datetime | None) -> datetime:
    """`moment` with the UTC offset, or not, of the record's other times (a printout may give
    its start with an offset and its phases as bare clock times: they compare as one)."""
    if reference is None or (moment.tzinfo is None) == (reference.tzinfo is None):
        return moment
    if reference.tzinfo is not None:
        return moment.replace(tzinfo=reference.tzinfo)
    return moment.replace(tzinfo=None)  # the wall clock as printed


class LineParser(ABC):
    """Base of line-oriented parsers: decoding, line framing, flush."""

    format_name: ClassVar[str] = "?"
    encoding: ClassVar[str] = "cp1252"

    def __init__(self, machine: str | None = None, tz: tzinfo | None = None) -> None:
        """Records carry `machine` (else the name the record gives); times get `tz`."""
        self.machine = machine
        self.tz = tz
        self._buffer = bytearray()
        self._draft: Draft | None = None  # the record being read, in parsers that keep one

    def feed(self, data: bytes) -> list[CycleRecord]:
        """Add received bytes; return the records they completed."""
        self._buffer += data
        records: list[CycleRecord] = []
        while True:
            end = _line_end(self._buffer)
            if end < 0:
                if len(self._buffer) <= MAX_LINE:
                    break
                end = MAX_LINE - 1
            chunk = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            records += self._read(self.decode(chunk))
        return records

    def settle(self) -> list[CycleRecord]:
        """The line has been quiet: a line ended by a lone CR (kept to see whether an LF
        follows) is complete; the records it completes."""
        if not self._buffer.endswith(b"\r"):
            return []
        chunk = bytes(self._buffer)
        self._buffer.clear()
        return self._read(self.decode(chunk))

    def flush(self) -> list[CycleRecord]:
        """End of stream: return what is pending, flagged (a record is never dropped)."""
        records: list[CycleRecord] = []
        if self._buffer:
            records += self._read(self.decode(bytes(self._buffer)))
            self._buffer.clear()
        try:
            return records + self.end_of_stream()
        except Exception as err:
            return records + self._salvage("", err)

    def _read(self, text: str) -> list[CycleRecord]:
        """One line through the parser; a line it fails on (a form nobody foresaw) ends the
        record being read as garbled, its text kept whole, and reading goes on."""
        before = self._draft  # a parser may let go of its record before failing on it
        try:
            return self.line(text)
        except Exception as err:
            return self._salvage(text, err, before)

    def _salvage(self, text: str, err: Exception, before: Draft | None = None) -> list[CycleRecord]:
        draft, self._draft = self._draft or before, None
        lines = list(draft.lines) if draft is not None else []
        if not lines or lines[-1] is not text:  # the failing line, once (it may be added)
            lines.append(text)
        raw = "".join(lines)
        if not raw.strip():
            return []
        problem = sanitize(f"a line could not be read ({type(err).__name__}: {err})", 160)
        return [
            CycleRecord(
                format=self.format_name,
                machine=self.machine or "unknown",
                kind=draft.kind if draft is not None else CycleKind.STERILIZER,
                raw=raw,
                flags=frozenset({CycleFlag.GARBLED}),
                problems=(problem,),
            )
        ]

    def decode(self, chunk: bytes) -> str:
        """Decode one line of bytes with the format's encoding, marking undecodable bytes."""
        return chunk.decode(self.encoding, "replace")

    @abstractmethod
    def line(self, text: str) -> list[CycleRecord]:
        """Handle one line (with its line end, if any)."""

    @abstractmethod
    def end_of_stream(self) -> list[CycleRecord]:
        """Close whatever is open, flagged."""

    def finish(self, draft: Draft) -> CycleRecord:
        """Turn a draft into a record: derive min/max, hold time, flags."""
        hold = [s for s in draft.samples]
        temps = [s.temp_c for s in hold if s.temp_c is not None]
        press = [s.pressure_bar for s in hold if s.pressure_bar is not None]
        t_min = draft.summary.get("t_min", min(temps) if temps else None)
        t_max = draft.summary.get("t_max", max(temps) if temps else None)
        p_min = draft.summary.get("p_min", min(press) if press else None)
        p_max = draft.summary.get("p_max", max(press) if press else None)
        hold_s = draft.summary.get("hold_s")
        if hold_s is None and len(hold) > 1 and hold[0].at and hold[-1].at:
            hold_s = (hold[-1].at - hold[0].at).total_seconds()
        if draft.result == "pass" and any(p.ok is False for p in draft.phases):
            draft.problem(CycleFlag.INCONSISTENT, "a phase failed but the result says pass")
        machine = self.machine or draft.machine or draft.serial or "unknown"
        return CycleRecord(
            format=self.format_name,
            machine=machine,
            kind=draft.kind,
            raw="".join(draft.lines),
            cycle_no=draft.cycle_no,
            program=draft.program,
            serial=draft.serial,
            started=self._tz(draft.started),
            ended=self._tz(draft.ended),
            phases=tuple(Phase(p.name, self._tz(p.at), p.ok) for p in draft.phases),
            hold_samples=tuple(Sample(self._tz(s.at), s.temp_c, s.pressure_bar) for s in hold),
            t_min=t_min,
            t_max=t_max,
            p_min=p_min,
            p_max=p_max,
            hold_s=None if hold_s is None else round(hold_s),
            a0=draft.summary.get("a0"),
            result=draft.result,
            test_kind=draft.test_kind,
            flags=frozenset(draft.flags),
            problems=tuple(draft.problems),
        )

    def _tz(self, moment: datetime | None) -> datetime | None:
        if moment is None or self.tz is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=self.tz)


class FramedParser(LineParser):
    """A format whose records run from a start line to an end line, one field a line."""

    start: ClassVar[re.Pattern[str]]
    end: ClassVar[re.Pattern[str]]
    restart_reason: ClassVar[str] = "a new cycle started before this ended"
    unframed_reason: ClassVar[str] = "text before any cycle start"
    no_end_reason: ClassVar[str] = "no cycle end"

    def __init__(self, machine: str | None = None, tz: tzinfo | None = None) -> None:
        """Records carry `machine` (else the name the record gives); times get `tz`."""
        super().__init__(machine, tz)
        self._draft: Draft | None = None

    def clean(self, text: str) -> str:
        """A line without its line end and surrounding blanks."""
        return text.rstrip("\r\n").strip()

    def ignorable(self, body: str) -> bool:
        """True for a line that carries nothing (decoration, comments)."""
        return False

    @abstractmethod
    def field(self, draft: Draft, body: str) -> None:
        """Take one line inside a record."""

    def line(self, text: str) -> list[CycleRecord]:
        """Handle one line: frame records, flag what breaks the frame, parse the rest."""
        start = self.start.search(text)
        if start is not None and self.clean(text[: start.start()]):
            # A power cut leaves half a line; the restarted machine's header follows on it.
            return self.line(text[: start.start()]) + self.line(text[start.start() :])
        body = self.clean(text)
        records: list[CycleRecord] = []
        if self.start.fullmatch(body):
            if self._draft is not None:
                self._draft.problem(CycleFlag.TRUNCATED, self.restart_reason)
                records.append(self.finish(self._draft))
            self._draft = Draft(lines=[text], chars=len(text))
            return records
        if self._draft is None:
            if not body or self.ignorable(body):
                return records
            self._draft = Draft()
            self._draft.problem(CycleFlag.UNFRAMED, self.unframed_reason)
        draft = self._draft
        draft.add(text)
        if self.end.fullmatch(body):
            self._draft = None
            return [self.finish(draft)]
        if is_garbled(text):
            draft.problem(CycleFlag.GARBLED, f"unreadable bytes in line {len(draft.lines)}")
        if body and not self.ignorable(body):
            self.field(draft, body)
        if draft.full:
            draft.problem(CycleFlag.TRUNCATED, "record too long: continued in the next record")
            self._draft = None
            records.append(self.finish(draft))
        return records

    def end_of_stream(self) -> list[CycleRecord]:
        """Flag and return the open record, if any."""
        if self._draft is None:
            return []
        draft, self._draft = self._draft, None
        draft.problem(CycleFlag.TRUNCATED, self.no_end_reason)
        return [self.finish(draft)]


def decode_utf8_or_cp1252(chunk: bytes) -> str:
    """UTF-8 when valid (machines and loggers differ), else Windows-1252."""
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk.decode("cp1252", "replace")


def is_garbled(text: str) -> bool:
    """True when a line holds undecodable bytes or stray control characters."""
    return bool(_CONTROL.search(text.rstrip("\r\n\f")))


def parse_result(text: str) -> str | None:
    """Map a printed result to "pass"/"fail"; None when it is neither."""
    word = " ".join(text.strip().lower().replace("_", " ").split())
    word = word.removeprefix("cycle ").strip(" .!:")
    if word in _PASS:
        return "pass"
    if word in _FAIL:
        return "fail"
    return None


def parse_ok(text: str) -> bool | None:
    """Map a phase status word to True/False; None when absent or unknown."""
    result = parse_result(text)
    return None if result is None else result == "pass"


def detect_test_kind(program: str) -> TestKind | None:
    """Recognise a test cycle from its program name."""
    name = program.upper()
    if "BOWIE" in name or "B&D" in name or "B-D" in name or name.startswith("BD "):
        return TestKind.BOWIE_DICK
    if "LEAK" in name or "VACUUM TEST" in name or "ETANCH" in name or "TEST DE VIDE" in name:
        return TestKind.LEAK
    return None


def parse_number(text: str) -> float | None:
    """Parse 134.2, 134,2 or 134.2C; None when there is no number."""
    match = re.search(r"-?\d+(?:[.,]\d+)?", text)
    return None if match is None else float(match.group().replace(",", "."))


def parse_duration(text: str) -> float | None:
    """Parse mm:ss, hh:mm:ss, or a number of seconds (optionally with s/sec)."""
    text = text.strip().lower().removesuffix("sec").removesuffix("s").strip()
    if re.fullmatch(r"\d+:\d{2}(?::\d{2})?", text):
        parts = [int(p) for p in text.split(":")]
        return (
            float(parts[0] * 60 + parts[1])
            if len(parts) == 2
            else float(parts[0] * 3600 + parts[1] * 60 + parts[2])
        )
    if re.fullmatch(r"\d+(?:[.,]\d+)?", text):
        return float(text.replace(",", "."))
    return None


def parse_date(text: str) -> date | None:
    """Parse a date in ISO, dd.mm.yyyy, dd/mm/yyyy or dd-mm-yyyy form."""
    text = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def parse_time(text: str) -> time | None:
    """Parse hh:mm:ss or hh:mm."""
    text = text.strip()
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).time()
        except ValueError:
            continue
    return None


def parse_datetime(text: str) -> datetime | None:
    """Parse an ISO datetime, or a date and a time separated by a space."""
    text = text.strip()
    try:
        return datetime.fromisoformat(text) if "T" in text or text.count(" ") == 1 else None
    except ValueError:
        pass
    day_part, _, time_part = text.partition(" ")
    day, clock = parse_date(day_part), parse_time(time_part)
    return None if day is None or clock is None else datetime.combine(day, clock)
