"""The registry of cycle formats: look-up by name, sniffing, whole-file parsing."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

from .._errors import CycleFormatError
from ._base import MAX_RECORD_CHARS, CycleParser
from ._dac import DacParser
from ._generic import GenericParser
from ._ims import ImsCsvParser
from ._model import CycleFlag, CycleKind, CycleRecord

ParserFactory = Callable[[str | None, tzinfo | None], CycleParser]


_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CycleFormat:
    """A named cycle format: how to make its parser and how to recognise its data."""

    name: str
    factory: ParserFactory
    sniff: Callable[[bytes], bool]
    description: str


_FORMATS: dict[str, CycleFormat] = {}


def register_cycle_format(fmt: CycleFormat) -> None:
    """Add (or replace) a format in the registry."""
    _FORMATS[fmt.name] = fmt


def cycle_formats() -> dict[str, CycleFormat]:
    """Return the registered formats by name."""
    return dict(_FORMATS)


def cycle_parser(name: str, *, machine: str | None = None, tz: tzinfo | None = None) -> CycleParser:
    """Return a new parser of format `name`; raise CycleFormatError if it is unknown."""
    fmt = _FORMATS.get(name)
    if fmt is None:
        raise CycleFormatError(f"unknown cycle format {name!r}; known: {', '.join(_FORMATS)}")
    return fmt.factory(machine, tz)


def sniff_cycle_format(data: bytes) -> str | None:
    """Return the name of the first format that recognises the start of `data`, or None."""
    head = data[:4096]
    for fmt in _FORMATS.values():
        if fmt.sniff(head):
            return fmt.name
    return None


def parse_cycle_bytes(
    data: bytes,
    *,
    machine: str | None = None,
    fmt: str | None = None,
    tz: tzinfo | None = None,
    kind: CycleKind = CycleKind.STERILIZER,
) -> list[CycleRecord]:
    """Parse a whole file or capture; unknown data becomes one flagged raw record (as does
    data its parser fails on: a file never stops a drop folder)."""
    name = fmt or sniff_cycle_format(data)
    if name is not None:
        parser = cycle_parser(name, machine=machine, tz=tz)
        try:
            return parser.feed(data) + parser.flush()
        except Exception:
            _LOGGER.exception("the %s parser failed on a capture: kept as raw text", name)
    if not data.strip():
        return []
    text = data.decode("cp1252", "replace")
    return [
        CycleRecord(
            format="unknown",
            machine=machine or "unknown",
            kind=kind,
            raw=text[i : i + MAX_RECORD_CHARS],
            flags=frozenset({CycleFlag.UNKNOWN_FORMAT}),
            problems=("no cycle format recognised this data",),
        )
        for i in range(0, len(text), MAX_RECORD_CHARS)
    ]


def _sniffer(pattern: str) -> Callable[[bytes], bool]:
    regex = re.compile(pattern.encode(), re.I | re.M)
    return lambda head: regex.search(head) is not None


register_cycle_format(
    CycleFormat(
        "dac",
        DacParser,
        _sniffer(r"^\s*\*+\s*(CYCLE START|D(E|\xc9|\xc3\x89)BUT CYCLE)\s*\*+"),
        "DAC-style sterilizer printer protocol (serial printer-port tap)",
    )
)
register_cycle_format(
    CycleFormat(
        "ims_csv",
        ImsCsvParser,
        _sniffer(r"\A(\xef\xbb\xbf)?IMS-LOG[;,\t]"),
        "IMS-style washer CSV logger (drop folder, one file per cycle)",
    )
)
register_cycle_format(
    CycleFormat(
        "generic",
        GenericParser,
        _sniffer(r"^\s*BEGIN\s+CYCLE\s*$"),
        "generic key/value cycle record (devices/README.md)",
    )
)
