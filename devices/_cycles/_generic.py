"""The generic key/value cycle format (documented in devices/README.md)."""

from __future__ import annotations

import re

from ._base import (
    Draft,
    FramedParser,
    decode_utf8_or_cp1252,
    parse_duration,
    parse_number,
    parse_ok,
    parse_result,
)
from ._model import CycleFlag, CycleKind, Phase, Sample, TestKind

_BEGIN = re.compile(r"BEGIN\s+CYCLE", re.I)
_END = re.compile(r"END\s+CYCLE", re.I)
_LINE = re.compile(r"([a-z_0-9]+)\s*[:=]\s*(.*)", re.I)
_NUMBERS = {"t_min", "t_max", "p_min", "p_max", "a0"}


class GenericParser(FramedParser):
    """Sans-I/O parser of the generic key/value cycle format."""

    format_name = "generic"
    start = _BEGIN
    end = _END
    restart_reason = "BEGIN CYCLE before END CYCLE"
    unframed_reason = "text before BEGIN CYCLE"
    no_end_reason = "no END CYCLE"

    def decode(self, chunk: bytes) -> str:
        """Decode UTF-8, falling back to Windows-1252."""
        return decode_utf8_or_cp1252(chunk)

    def clean(self, text: str) -> str:
        """A line without its line end, blanks and byte-order mark."""
        return text.rstrip("\r\n").strip().lstrip("\ufeff")

    def ignorable(self, body: str) -> bool:
        """Comment lines."""
        return body.startswith("#")

    def field(self, draft: Draft, body: str) -> None:
        """One key: value line of the record."""
        self._field(draft, body)

    def _field(self, draft: Draft, body: str) -> None:
        match = _LINE.fullmatch(body)
        if match is None:
            draft.problem(CycleFlag.GARBLED, f"line {len(draft.lines)} is not key: value")
            return
        key, value = match.group(1).lower(), match.group(2).strip()
        bad = False
        if key in ("machine", "serial", "program"):
            setattr(draft, key, value)
        elif key in ("cycle", "cycle_no"):
            draft.cycle_no = value
        elif key == "kind":
            try:
                draft.kind = CycleKind(value.lower())
            except ValueError:
                bad = True
        elif key == "test":
            try:
                draft.test_kind = TestKind(value.lower())
                draft.kind = CycleKind.TEST
            except ValueError:
                bad = True
        elif key in ("started", "ended"):
            moment = draft.moment(value)
            bad = moment is None
            if key == "started" and moment is not None:
                draft.started, draft.day = moment, moment.date()
            elif moment is not None:
                draft.ended = moment
        elif key == "phase":
            bad = not self._phase(draft, value)
        elif key == "sample":
            bad = not self._sample(draft, value)
        elif key in _NUMBERS or key == "hold_s":
            number = parse_duration(value) if key == "hold_s" else parse_number(value)
            bad = number is None
            if number is not None:
                draft.summary[key] = number
        elif key == "result":
            draft.result = parse_result(value)
            bad = draft.result is None
        else:
            draft.problem(None, f"unknown key {key} ignored")
        if bad:
            draft.problem(CycleFlag.GARBLED, f"bad {key}: {value}")

    def _phase(self, draft: Draft, value: str) -> bool:
        parts = [p.strip() for p in value.split(";")]
        if not parts[0] or len(parts) > 3:
            return False
        at = draft.moment(parts[1]) if len(parts) > 1 and parts[1] else None
        ok = parse_ok(parts[2]) if len(parts) > 2 and parts[2] else None
        if (len(parts) > 1 and parts[1] and at is None) or (
            len(parts) > 2 and parts[2] and ok is None
        ):
            return False
        draft.phases.append(Phase(parts[0], at, ok))
        return True

    def _sample(self, draft: Draft, value: str) -> bool:
        parts = [p.strip() for p in value.split(";")]
        if len(parts) != 3:
            return False
        at = draft.moment(parts[0])
        temp = parse_number(parts[1]) if parts[1] else None
        press = parse_number(parts[2]) if parts[2] else None
        if at is None or (parts[1] and temp is None) or (parts[2] and press is None):
            return False
        draft.samples.append(Sample(at, temp, press))
        return True
