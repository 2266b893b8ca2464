"""IMS-style CSV logger of a washer-disinfector: one file (or stream section) per cycle.

Separator ";" (decimal comma allowed), "," or tab, taken from the first line::

    IMS-LOG;1
    Machine;LD-02
    Serial;IMS-55501
    Program;INSTRU 93C 3MIN NORMAL
    Cycle;000812
    Start;28/11/2026 07:02:11
    Time;Phase;T1 (C);T2 (C);P (mbar);A0
    07:02:11;Prelavage;22,1;22,0;1013;0
    07:20:00;Desinfection;90,1;90,0;1013;12
    07:23:00;Desinfection;93,1;93,0;1013;3050
    End;28/11/2026 07:58:40
    Result;OK

Rows whose phase names disinfection (desinfection, disinfection, thermo, hold, plateau) are the
hold phase; A0 is the last A0 value, or computed from the lowest sensor (T >= 65 C) if absent.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, tzinfo

from ._base import (
    Draft,
    LineParser,
    decode_utf8_or_cp1252,
    is_garbled,
    parse_datetime,
    parse_number,
    parse_result,
)
from ._model import CycleFlag, CycleKind, CycleRecord, Phase, Sample

_HEADER = re.compile(r"\ufeff?IMS-LOG([;,\t])", re.I)
_HOLD = re.compile(r"d[ée]sinf|disinf|thermo|hold|plateau", re.I)
A0_MIN_TEMP = 65.0
A0_MAX_TEMP = 150.0


class ImsCsvParser(LineParser):
    """Sans-I/O parser of the IMS-style washer CSV log."""

    format_name = "ims_csv"
    encoding = "cp1252"

    def __init__(self, machine: str | None = None, tz: tzinfo | None = None) -> None:
        """Records carry `machine` (else the file's Machine line); times get `tz`."""
        super().__init__(machine, tz)
        self._draft: Draft | None = None
        self._sep = ";"
        self._columns: dict[str, list[int]] = {}
        self._mbar = False
        self._a0_last: float | None = None
        self._hold_rows: list[tuple[datetime | None, list[float]]] = []
        self._hold_end: datetime | None = None

    def decode(self, chunk: bytes) -> str:
        """Decode UTF-8 when valid (loggers differ), else Windows-1252."""
        return decode_utf8_or_cp1252(chunk)

    def line(self, text: str) -> list[CycleRecord]:
        """Handle one CSV line."""
        restart = re.search(r"\ufeff?IMS-LOG[;,\t]", text)
        if restart is not None and text[: restart.start()].strip():
            return self.line(text[: restart.start()]) + self.line(text[restart.start() :])
        body = text.rstrip("\r\n").strip()
        records: list[CycleRecord] = []
        header = _HEADER.match(body)
        if header:
            if self._draft is not None:
                self._draft.problem(CycleFlag.TRUNCATED, "a new log started before Result")
                records.append(self._close())
            self._open(header.group(1))
            assert self._draft is not None
            self._draft.add(text)
            return records
        if self._draft is None:
            if not body:
                return records
            self._open(";" if ";" in body else "\t" if "\t" in body else ",")
            assert self._draft is not None
            self._draft.problem(CycleFlag.UNFRAMED, "lines before any IMS-LOG header")
        draft = self._draft
        draft.add(text)
        if is_garbled(text):
            draft.problem(CycleFlag.GARBLED, f"unreadable bytes in line {len(draft.lines)}")
        if body and self._row(draft, [c.strip() for c in body.split(self._sep)]):
            records.append(self._close())
        elif draft.full:
            draft.problem(CycleFlag.TRUNCATED, "record too long: continued in the next record")
            records.append(self._close())
        return records

    def end_of_stream(self) -> list[CycleRecord]:
        """Flag and return the open record, if any."""
        if self._draft is None:
            return []
        self._draft.problem(CycleFlag.TRUNCATED, "no Result line")
        return [self._close()]

    def _open(self, sep: str) -> None:
        self._draft = Draft(kind=CycleKind.WASHER)
        self._sep = sep
        self._columns = {}
        self._mbar = False
        self._a0_last = None
        self._hold_rows = []
        self._hold_end = None

    def _row(self, draft: Draft, cells: list[str]) -> bool:
        """Handle one row; return True when it ends the record."""
        key = cells[0].lower()
        value = cells[1] if len(cells) > 1 else ""
        if key == "result":
            draft.result = parse_result(value)
            if draft.result is None:
                draft.problem(CycleFlag.GARBLED, f"unknown result {value}")
            return True
        if key in ("machine", "serial", "program", "cycle"):
            setattr(draft, {"cycle": "cycle_no"}.get(key, key), value)
        elif key in ("start", "end"):
            moment = parse_datetime(value)
            if moment is None:
                draft.problem(CycleFlag.GARBLED, f"bad {key} time {value}")
            elif key == "start":
                draft.started, draft.day, draft.last_at = moment, moment.date(), moment
            else:
                draft.ended = moment
        elif key in ("time", "heure") and len(cells) > 2:
            self._header(cells)
        elif self._columns:
            self._sample(draft, cells)
        else:
            draft.problem(CycleFlag.GARBLED, f"line {len(draft.lines)} not understood")
        return False

    def _header(self, cells: list[str]) -> None:
        names = [c.lower() for c in cells]
        self._columns = {"time": [0], "phase": [], "temp": [], "press": [], "a0": []}
        for i, name in enumerate(names[1:], start=1):
            if name.startswith("phase"):
                self._columns["phase"].append(i)
            elif name == "a0":
                self._columns["a0"].append(i)
            elif re.match(r"t\d|temp", name):
                self._columns["temp"].append(i)
            elif re.match(r"p\b|p\s|press", name):
                self._columns["press"].append(i)
                self._mbar = "mbar" in name

    def _sample(self, draft: Draft, cells: list[str]) -> None:
        cols = self._columns
        if len(cells) < max(i for ids in cols.values() for i in ids) + 1:
            draft.problem(CycleFlag.GARBLED, f"line {len(draft.lines)} has missing columns")
            return
        at = draft.moment(cells[0])
        if at is None:
            draft.problem(CycleFlag.GARBLED, f"line {len(draft.lines)}: bad time {cells[0]}")
        phase = cells[cols["phase"][0]] if cols["phase"] else ""
        if phase and (not draft.phases or draft.phases[-1].name != phase):
            draft.phases.append(Phase(phase, at, None))
        temps = [t for t in (_num(cells[i]) for i in cols["temp"]) if t is not None]
        press = [p for p in (_num(cells[i]) for i in cols["press"]) if p is not None]
        pressure = None if not press else press[0] / (1000 if self._mbar else 1)
        for i in cols["a0"]:
            a0 = _num(cells[i])
            self._a0_last = a0 if a0 is not None else self._a0_last
        if _HOLD.search(phase):
            draft.samples.append(Sample(at, min(temps) if temps else None, pressure))
            self._hold_rows.append((at, temps))
        elif self._hold_rows and self._hold_end is None:
            self._hold_end = at
        if at is not None:
            draft.ended = draft.ended if draft.ended and draft.ended > at else at

    def _close(self) -> CycleRecord:
        draft = self._draft
        assert draft is not None
        self._draft = None
        all_temps = [t for _, temps in self._hold_rows for t in temps]
        if all_temps:
            draft.summary["t_min"], draft.summary["t_max"] = min(all_temps), max(all_temps)
        first = self._hold_rows[0][0] if self._hold_rows else None
        if first is not None and self._hold_end is not None:
            draft.summary["hold_s"] = (self._hold_end - first).total_seconds()
        if self._a0_last is not None:
            draft.summary["a0"] = self._a0_last
        elif self._hold_rows:
            rows = self._hold_rows + ([(self._hold_end, [])] if self._hold_end else [])
            draft.summary["a0"] = round(a0_value(rows), 1)
        return self.finish(draft)


def a0_value(rows: list[tuple[datetime | None, list[float]]]) -> float:
    """A0 (EN ISO 15883) = sum of 10^((T-80)/10) * dt over samples at or above 65 C."""
    total = 0.0
    for (at, temps), (next_at, _) in itertools.pairwise(rows):
        if at is None or next_at is None or not temps:
            continue
        low = min(temps)
        if A0_MIN_TEMP <= low <= A0_MAX_TEMP:  # beyond: a sensor fault value, not a heat
            total += 10 ** ((low - 80) / 10) * (next_at - at).total_seconds()
    return total


def _num(text: str) -> float | None:
    return parse_number(text) if text else None
