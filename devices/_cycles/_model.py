"""The machine cycle record every format parser produces, and its event form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any

# Limits of the event model (DESIGN.md, crdt_model): kept here, devices imports nothing of ours.
MAX_EVENT_PHASES = 64
MAX_EVENT_TEXT = 256
_NOT_CODE = re.compile(r"[^\w#./:+ -]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class CycleKind(StrEnum):
    """What ran: a sterilizer load, a washer load, or a sterilizer test cycle."""

    STERILIZER = "sterilizer"
    WASHER = "washer"
    TEST = "test"


class CycleFlag(StrEnum):
    """Why a record cannot be trusted as is; its raw text is always kept."""

    TRUNCATED = "truncated"  # no end marker: power cut, unplugged tap, file cut short
    GARBLED = "garbled"  # unreadable bytes or lines that do not fit the format
    UNFRAMED = "unframed"  # text outside any record (capture started mid-cycle)
    INCONSISTENT = "inconsistent"  # e.g. a failed phase in a record that says pass
    UNKNOWN_FORMAT = "unknown_format"  # no parser recognised the data


class TestKind(StrEnum):
    """Sterilizer test cycles, as in the steri.test event."""

    __test__ = False  # not a pytest test class

    BOWIE_DICK = "bowie_dick"
    LEAK = "leak"
    BI = "bi"


@dataclass(frozen=True, slots=True)
class Phase:
    """One program phase: its name, when it started, and the machine's OK/fail, if printed."""

    name: str
    at: datetime | None = None
    ok: bool | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement: temperature in degrees C and pressure in bar, either may be missing."""

    at: datetime | None
    temp_c: float | None
    pressure_bar: float | None


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """One machine cycle as captured; `raw` is the exact text it was parsed from."""

    format: str
    machine: str
    kind: CycleKind
    raw: str
    cycle_no: str | None = None
    program: str | None = None
    serial: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    phases: tuple[Phase, ...] = ()
    hold_samples: tuple[Sample, ...] = ()
    t_min: float | None = None
    t_max: float | None = None
    p_min: float | None = None
    p_max: float | None = None
    hold_s: int | None = None
    a0: float | None = None
    result: str | None = None  # what the machine printed: "pass", "fail" or None
    test_kind: TestKind | None = None
    flags: frozenset[CycleFlag] = field(default_factory=frozenset)
    problems: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when the record has a result and no flag."""
        return self.result is not None and not self.flags

    @property
    def identified(self) -> bool:
        """True when the text shows a cycle (its start or its number), not stray text.

        Stray text (line noise at start-up, a fragment with neither) must not be taken for
        the cycle of the machine's open load.
        """
        framed = not self.flags & {CycleFlag.UNFRAMED, CycleFlag.UNKNOWN_FORMAT}
        return framed or bool(self.cycle_no and self.cycle_no.strip())

    @property
    def verdict(self) -> str:
        """Return "pass" only for a complete record that passed, every phase OK; else "fail"."""
        if not self.complete or self.result != "pass":
            return "fail"
        return "fail" if any(p.ok is False for p in self.phases) else "pass"

    def to_event(self, tz: tzinfo | None = None) -> dict[str, Any]:
        """Return the wash.cycle, steri.cycle or steri.test event fields (DESIGN.md table).

        Times without a UTC offset get `tz`; without `tz` they are left out (events need an
        offset). Codes are reduced to the characters events accept; lists and texts are cut
        to the event limits; `raw` is kept whole (parsers cut records below the limit).
        """
        event: dict[str, Any]
        cycle_no = _code(self.cycle_no, 32)
        if self.kind is CycleKind.TEST:
            event = {
                "type": "steri.test",
                "machine": _code(self.machine, 64),
                "kind": (self.test_kind or TestKind.BOWIE_DICK).value,
                "result": self.verdict,
            }
        elif self.kind is CycleKind.WASHER:
            event = {
                "type": "wash.cycle",
                "machine": _code(self.machine, 64),
                "cycle_no": cycle_no,
                "result": self.verdict,
                "program": _text(self.program, 128),
                "started": _iso(self.started, tz),
                "ended": _iso(self.ended, tz),
                "a0": None if self.a0 is None else max(0.0, self.a0),
                "params": self._params(),
            }
        else:
            event = {
                "type": "steri.cycle",
                "machine": _code(self.machine, 64),
                "cycle_no": cycle_no,
                "result": self.verdict,
                "program": _text(self.program, 128),
                "started": _iso(self.started, tz),
                "ended": _iso(self.ended, tz),
                "phases": [_phase(p, tz) for p in self.phases[:MAX_EVENT_PHASES]] or None,
                "t_min": self.t_min,
                "t_max": self.t_max,
                "p_max": self.p_max,
                "hold_s": None if self.hold_s is None else max(0, self.hold_s),
            }
        event["raw"] = self.raw
        return {k: v for k, v in event.items() if v is not None}

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "format": self.format,
            "serial": _text(self.serial, MAX_EVENT_TEXT),
            "t_min": self.t_min,
            "t_max": self.t_max,
            "p_min": self.p_min,
            "p_max": self.p_max,
            "hold_s": self.hold_s,
            "phases": len(self.phases) or None,
            "machine_result": self.result,
            "flags": ",".join(sorted(self.flags)) or None,
            "problems": _text("; ".join(self.problems), MAX_EVENT_TEXT),
        }
        return {k: v for k, v in params.items() if v is not None}


def _iso(moment: datetime | None, tz: tzinfo | None) -> str | None:
    if moment is not None and moment.tzinfo is None:
        moment = None if tz is None else moment.replace(tzinfo=tz)
    return None if moment is None else moment.isoformat()


def _phase(phase: Phase, tz: tzinfo | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _text(phase.name, MAX_EVENT_TEXT) or "?"}
    at = _iso(phase.at, tz)
    if at is not None:
        out["at"] = at
    if phase.ok is not None:
        out["ok"] = phase.ok
    return out


def _code(value: str | None, limit: int) -> str:
    """Reduce to the characters an event code accepts: letters, digits, space, # . / : + -."""
    cleaned = " ".join(_NOT_CODE.sub("-", value or "").split())[:limit].strip(" ")
    return cleaned or "unknown"


def _text(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    cleaned = _CONTROL.sub(" ", value).strip()[:limit]
    return cleaned or None
