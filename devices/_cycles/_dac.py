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
from datetime import datetime

from ._base import (
    Draft,
    FramedParser,
    detect_test_kind,
    parse_date,
    parse_duration,
    parse_number,
    parse_ok,
    parse_result,
    parse_time,
)
from ._model import CycleFlag, CycleKind, Phase, Sample

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


class DacParser(FramedParser):
    """Sans-I/O parser of the DAC-style sterilizer printer protocol."""

    format_name = "dac"
    start = _START
    end = _END

    def clean(self, text: str) -> str:
        """A line without its line end, form feed and surrounding blanks."""
        return text.rstrip("\r\n\f").strip()

    def ignorable(self, body: str) -> bool:
        """Rulers and stars between sections."""
        return bool(_DECORATION.fullmatch(body))

    def field(self, draft: Draft, body: str) -> None:
        """One line of the record: a hold sample, a phase, a header or summary field."""
        self._body(draft, body)

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
    """A phase's name and its status: the last two words first ("NOT OK", "NON CONFORME"
    must not read as a name ending in NOT and an OK)."""
    words = text.split()
    for tail in (2, 1):
        if len(words) > tail:
            ok = parse_ok(" ".join(words[-tail:]))
            if ok is not None:
                return " ".join(words[:-tail]), ok
    return text.strip(), None
