"""Simulated devices on real ptys and loopback TCP, for tests and the demo."""

from __future__ import annotations

from ._machines import (
    BOWIE_DICK,
    ScannerSimulator,
    SterilizerSimulator,
    WasherSimulator,
    dac_cycle_text,
    generic_cycle_text,
    ims_cycle_csv,
)
from ._printer import (
    PrinterMode,
    ZplField,
    ZplFormat,
    ZplPrinterSimulator,
    datamatrix_element_string,
    parse_zpl,
)
from ._pty import VirtualSerial

__all__ = [
    "BOWIE_DICK",
    "PrinterMode",
    "ScannerSimulator",
    "SterilizerSimulator",
    "VirtualSerial",
    "WasherSimulator",
    "ZplField",
    "ZplFormat",
    "ZplPrinterSimulator",
    "dac_cycle_text",
    "datamatrix_element_string",
    "generic_cycle_text",
    "ims_cycle_csv",
    "parse_zpl",
]
