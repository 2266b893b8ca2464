"""DAC-style cycle protocol: the text a sterilizer prints on its printer port.

A record looks like this (French or English key words, dd.mm.yyyy or ISO dates)::

    *** CYCLE START ***
    SERIAL NO     : STE-4711
    PROGRAM       : 134C PRION 18MIN
    CYCLE NO      : 01234
    DATE          : 28.11.2026
    TIME          : 08:15:02
    PHASE 08:15:02 PRE-VACUUM 1        OK
    PHASE 08:28:00 HOLD START          OK
    HOLD  08:28:00  134.2 C   3.05 BAR
    HOLD  08:29:00  134.6 C   3.08 BAR
    PHASE 08:46:00 HOLD END            OK
    PHASE 09:01:00 END                 OK
    TEMP MIN/MAX  : 134.2 / 135.1 C
    PRESS MIN/MAX : 3.05 / 3.12 BAR
    HOLD TIME     : 18:00
    RESULT        : PASSED
    *** CYCLE END ***
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from ._base import (
    Draft,
    LineParser,
    detect_test_kind,
    is_garbled,
    parse_date,
    parse_duration,
    parse_number,
    parse_ok,
    parse_result,
    parse_time,
)
from ._model import CycleFlag, CycleKind, CycleRecord, Phase, Sample

_START = re.compile(r"\*+\s*(CYCLE START|DEBUT CYCLE|DÉBUT CYCLE)\s*\*+", re.I)
_END = re.compile(r"\*+\s*(CYCLE END|FIN CYCLE|FIN DE CYCLE)\s*\*+", re.I)
_DECORATION = re.compile(r"[=\-_*#.\s]*")
_KEY_VALUE = re.compile(r"([A-Za-zÀ-ÿ][A-Za-zÀ-ÿ0-9 /.°-]*?)\s*:\s*(.*)")
_PHASE = re.compile(r"PHASE\s+(\d{1,2}:\d{2}(?::\d{2})?)\s+(.+)", re.I)
_SAMPLE = re.compile(
    r"(?:HOLD|PLATEAU)\s+(\d{1,2}:\d{2}(?::\d{2})?)\s+(-?\d+(?:[.,]\d+)?)\s*°?C"
    r"\s+(-?\d+(?:[.,]\d+)?)\s*BAR",
    re.I,
)
_MIN_MAX = re.compile(r"(-?\d+(?:[.,]\d+)?)\s*/\s*(-?\d+(?:[.,]\d+)?)")

_KEYS = {
    "serial no": "serial",
    "serial": "serial",
    "n° serie": "serial",
    "no serie": "serial",
    "program": "program",
    "programme": "program",
    "cycle no": "cycle",
    "cycle": "cycle",
    "n° cycle": "cycle",
    "date": "date",
    "time": "time",
    "heure": "time",
    "temp min/max": "temp",
    "temp. min/max": "temp",
    "press min/max": "press",
    "press. min/max": "press",
    "pression min/max": "press",
    "hold time": "hold",
    "duree plateau": "hold",
    "durée plateau": "hold",
    "result": "result",
    "resultat": "result",
    "résultat": "result",
}


class DacParser(LineParser):
    """Sans-I/O parser of the DAC-style sterilizer printer protocol."""

    format_name = "dac"

    def __init__(self, machine: str | None = None, tz: tzinfo | None = None) -> None:
        """Records carry `machine`; naive machine times get `tz` when given."""
        super().__init__(machine, tz)
        self._draft: Draft | None = None

    def line(self, text: str) -> list[CycleRecord]:
        """Handle one line of the protocol."""
        start = _START.search(text)
        if start is not None and text[: start.start()].strip():
            # A power cut leaves half a line; the restarted machine's header follows on it.
            return self.line(text[: start.start()]) + self.line(text[start.start() :])
        body = text.rstrip("\r\n\f").strip()
        records: list[CycleRecord] = []
        if _START.fullmatch(body):
            if self._draft is not None:
                self._draft.problem(CycleFlag.TRUNCATED, "a new cycle started before this ended")
                records.append(self.finish(self._draft))
            self._draft = Draft(lines=[text], chars=len(text))
            return records
        if self._draft is None:
            if not body or _DECORATION.fullmatch(body):
                return records
            self._draft = Draft()
            self._draft.problem(CycleFlag.UNFRAMED, "text before any cycle start")
        draft = self._draft
        draft.add(text)
        if _END.fullmatch(body):
            self._draft = None
            return [self.finish(draft)]
        if is_garbled(text):
            draft.problem(CycleFlag.GARBLED, f"unreadable bytes in line {len(draft.lines)}")
        if body and not _DECORATION.fullmatch(body):
            self._body(draft, body)
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
        draft.problem(CycleFlag.TRUNCATED, "no cycle end")
        return [self.finish(draft)]

    def _body(self, draft: Draft, body: str) -> None:
        if match := _SAMPLE.fullmatch(body):
            at = draft.moment(match.group(1))
            temp, press = parse_number(match.group(2)), parse_number(match.group(3))
            draft.samples.append(Sample(at, temp, press))
            return
        if match := _PHASE.fullmatch(body):
            at = draft.moment(match.group(1))
            name, ok = _phase_name(match.group(2))
            draft.phases.append(Phase(name, at, ok))
            if at is not None:
                draft.ended = at
            return
        match = _KEY_VALUE.fullmatch(body)
        key = _KEYS.get(" ".join(match.group(1).lower().split())) if match else None
        if match is None or key is None:
            draft.problem(CycleFlag.GARBLED, f"line {len(draft.lines)} not understood: {body}")
            return
        self._field(draft, key, match.group(2).strip())

    def _field(self, draft: Draft, key: str, value: str) -> None:
        if key == "serial":
            draft.serial = value
        elif key == "program":
            draft.program = value
            kind = detect_test_kind(value)
            if kind is not None:
                draft.kind, draft.test_kind = CycleKind.TEST, kind
        elif key == "cycle":
            draft.cycle_no = value
        elif key == "date":
            draft.day = parse_date(value)
            if draft.day is None:
                draft.problem(CycleFlag.GARBLED, f"bad date {value}")
        elif key == "time":
            clock = parse_time(value)
            if clock is None or draft.day is None:
                draft.problem(CycleFlag.GARBLED, f"bad time {value}")
            else:
                draft.started = datetime.combine(draft.day, clock)
                draft.last_at = draft.started
        elif key in ("temp", "press"):
            pair = _MIN_MAX.search(value)
            if pair is None:
                draft.problem(CycleFlag.GARBLED, f"bad min/max {value}")
            else:
                low, high = (float(g.replace(",", ".")) for g in pair.groups())
                prefix = "t" if key == "temp" else "p"
                draft.summary[f"{prefix}_min"], draft.summary[f"{prefix}_max"] = low, high
        elif key == "hold":
            seconds = parse_duration(value)
            if seconds is None:
                draft.problem(CycleFlag.GARBLED, f"bad hold time {value}")
            else:
                draft.summary["hold_s"] = seconds
        elif key == "result":
            draft.result = parse_result(value)
            if draft.result is None:
                draft.problem(CycleFlag.GARBLED, f"unknown result {value}")


def _phase_name(text: str) -> tuple[str, bool | None]:
    parts = text.rsplit(None, 1)
    if len(parts) == 2:
        ok = parse_ok(parts[1])
        if ok is not None:
            return parts[0].strip(), ok
    return text.strip(), None
