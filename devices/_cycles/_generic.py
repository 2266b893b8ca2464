"""The generic key/value cycle format (documented in devices/README.md)."""

from __future__ import annotations

import re
from datetime import tzinfo

from ._base import (
    Draft,
    LineParser,
    is_garbled,
    parse_duration,
    parse_number,
    parse_ok,
    parse_result,
)
from ._model import CycleFlag, CycleKind, CycleRecord, Phase, Sample, TestKind

_BEGIN = re.compile(r"BEGIN\s+CYCLE", re.I)
_END = re.compile(r"END\s+CYCLE", re.I)
_LINE = re.compile(r"([a-z_0-9]+)\s*[:=]\s*(.*)", re.I)
_NUMBERS = {"t_min", "t_max", "p_min", "p_max", "a0"}


class GenericParser(LineParser):
    """Sans-I/O parser of the generic key/value cycle format."""

    format_name = "generic"

    def __init__(self, machine: str | None = None, tz: tzinfo | None = None) -> None:
        """Records carry `machine` (else the record's machine key); times get `tz`."""
        super().__init__(machine, tz)
        self._draft: Draft | None = None

    def decode(self, chunk: bytes) -> str:
        """Decode UTF-8, falling back to Windows-1252."""
        try:
            return chunk.decode("utf-8")
        except UnicodeDecodeError:
            return chunk.decode(self.encoding, "replace")

    def line(self, text: str) -> list[CycleRecord]:
        """Handle one line."""
        begin = _BEGIN.search(text)
        if begin is not None and text[: begin.start()].strip(" \t\ufeff"):
            return self.line(text[: begin.start()]) + self.line(text[begin.start() :])
        body = text.rstrip("\r\n").strip().lstrip("\ufeff")
        records: list[CycleRecord] = []
        if _BEGIN.fullmatch(body):
            if self._draft is not None:
                self._draft.problem(CycleFlag.TRUNCATED, "BEGIN CYCLE before END CYCLE")
                records.append(self.finish(self._draft))
            self._draft = Draft(lines=[text], chars=len(text))
            return records
        if self._draft is None:
            if not body or body.startswith("#"):
                return records
            self._draft = Draft()
            self._draft.problem(CycleFlag.UNFRAMED, "text before BEGIN CYCLE")
        draft = self._draft
        draft.add(text)
        if _END.fullmatch(body):
            self._draft = None
            return [self.finish(draft)]
        if is_garbled(text):
            draft.problem(CycleFlag.GARBLED, f"unreadable bytes in line {len(draft.lines)}")
        if body and not body.startswith("#"):
            self._field(draft, body)
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
        draft.problem(CycleFlag.TRUNCATED, "no END CYCLE")
        return [self.finish(draft)]

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
