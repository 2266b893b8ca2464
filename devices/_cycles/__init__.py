"""Machine cycle records: model, format parsers, registry and capture."""

from __future__ import annotations

from ._base import CycleParser
from ._capture import DropFolderWatcher, SerialCycleCapture
from ._dac import DacParser
from ._generic import GenericParser
from ._ims import ImsCsvParser, a0_value
from ._model import CycleFlag, CycleKind, CycleRecord, Phase, Sample, TestKind
from ._registry import (
    CycleFormat,
    cycle_formats,
    cycle_parser,
    parse_cycle_bytes,
    register_cycle_format,
    sniff_cycle_format,
)

__all__ = [
    "CycleFlag",
    "CycleFormat",
    "CycleKind",
    "CycleParser",
    "CycleRecord",
    "DacParser",
    "DropFolderWatcher",
    "GenericParser",
    "ImsCsvParser",
    "Phase",
    "Sample",
    "SerialCycleCapture",
    "TestKind",
    "a0_value",
    "cycle_formats",
    "cycle_parser",
    "parse_cycle_bytes",
    "register_cycle_format",
    "sniff_cycle_format",
]
