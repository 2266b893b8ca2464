"""The errors raised by devices: one root, narrow subclasses."""

from __future__ import annotations


class DeviceError(Exception):
    """Root of every error raised by the devices library."""


class BarcodeError(DeviceError, ValueError):
    """A scanned or to-be-encoded barcode value is malformed or unsupported."""


class LabelError(DeviceError, ValueError):
    """Label data or label layout is invalid, or the label cannot be rendered."""


class PrinterError(DeviceError, OSError):
    """A print job may have failed part-way: the label may or may not be printed."""


class PrinterUnavailableError(PrinterError, ConnectionError):
    """The printer could not take the job and nothing was sent: retrying is safe."""


class PrinterStatusError(PrinterUnavailableError):
    """The printer reported a problem (paper out, head open...) before anything was sent."""


class PrintQueueError(DeviceError):
    """A print queue operation was refused."""


class DuplicatePrintError(PrintQueueError, ValueError):
    """The label was already queued or printed and the request did not say reprint."""


class JobNotFoundError(PrintQueueError, LookupError):
    """No print job has this id."""


class CycleFormatError(DeviceError, ValueError):
    """The machine cycle format name is unknown."""
