"""Hybrid logical clock: timestamps that follow wall time yet never go back."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LOGICAL = 99_999
"""Largest logical counter; past it the clock borrows the next millisecond."""

DEFAULT_MAX_DRIFT_MS = 5 * 60 * 1000
"""A remote timestamp further ahead of our wall clock than this is not adopted."""

_TS_RE = re.compile(r"^([0-9]{13})-([0-9]{5})\Z")  # ASCII digits only: they sort as numbers


class ClockError(ValueError):
    """A timestamp string that is not of the form PPPPPPPPPPPPP-LLLLL."""


@dataclass(frozen=True, order=True, slots=True)
class Timestamp:
    """A hybrid logical timestamp: wall milliseconds, then a logical counter."""

    physical: int
    logical: int = 0

    def __str__(self) -> str:
        return f"{self.physical:013d}-{self.logical:05d}"

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        """Parse the fixed-width text form; it sorts as the timestamps do."""
        match = _TS_RE.match(text)
        if match is None:
            raise ClockError(f"not a clock timestamp: {text[:40]!r}")
        return cls(int(match.group(1)), int(match.group(2)))


ZERO = Timestamp(0, 0)


class HybridClock:
    """Issues strictly increasing timestamps close to the wall clock.

    Wall-clock jumps backwards only advance the logical counter; jumps forward
    are followed. A remote timestamp is adopted only while it is at most
    `max_drift_ms` ahead of our wall clock, so one skewed peer cannot drag
    every node's clock into the future.
    """

    def __init__(self, last: Timestamp = ZERO, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS) -> None:
        self._last = last
        self.max_drift_ms = max_drift_ms

    @property
    def last(self) -> Timestamp:
        """The greatest timestamp issued or adopted so far."""
        return self._last

    def now(self, wall_ms: int) -> Timestamp:
        """A new timestamp for a local event, greater than every earlier one."""
        last = self._last
        if wall_ms > last.physical:
            ts = Timestamp(wall_ms, 0)
        elif last.logical < MAX_LOGICAL:
            ts = Timestamp(last.physical, last.logical + 1)
        else:
            ts = Timestamp(last.physical + 1, 0)
        self._last = ts
        return ts

    def observe(self, remote: Timestamp, wall_ms: int) -> bool:
        """Take a remote timestamp into account; False when it is too far ahead to adopt."""
        if remote.physical > wall_ms + self.max_drift_ms:
            return False
        self._last = max(self._last, remote)
        return True
