"""What scanners send: framing of the byte stream and classification of one scan."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from ._errors import BarcodeError
from ._gs1 import (
    GS,
    GS1_SYMBOLOGIES,
    GS1Message,
    gtin_check_digit,
    parse_element_string,
    parse_human,
)
from ._sanitize import sanitize

MAX_SCAN_LENGTH = 512

_AIM_PREFIX = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_INSTANCE = re.compile(r"[A-Z][A-Z0-9]{2,31}(?:#[0-9]{1,6})?")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
_GTIN_START = re.compile(r"01\d{14}")


class ScanKind(StrEnum):
    """What a scan holds."""

    GS1 = "gs1"
    INSTANCE = "instance"
    CODE128 = "code128"


@dataclass(frozen=True, slots=True)
class Scan:
    """One parsed scan; `text` is the GS1 element string (GS separators) or the plain value."""

    kind: ScanKind
    text: str
    gs1: GS1Message | None = None
    symbology: str | None = None


def parse_scan(data: bytes | str, today: date | None = None) -> Scan:
    """Classify and parse one scan; raise BarcodeError with the reason if it is unusable.

    GS1 data is recognised by a GS1 symbology identifier (]d2, ]C1, ]Q3, ]e0, ]J1), a leading
    or embedded GS (FNC1), the bracketed form "(01)...", or 16+ digits starting with AI 01
    and a valid GTIN. Other printable ASCII is a set instance code when it looks like one
    (upper-case code, optional "#number", e.g. JDIGGRBA#111) and a plain Code 128 value
    otherwise. `today` picks the century of two-digit years (None: 2000-2099).
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    text = text.strip(" \r\n\t\x00")
    if not text:
        raise BarcodeError("empty scan")
    if len(text) > MAX_SCAN_LENGTH:
        raise BarcodeError(f"scan longer than {MAX_SCAN_LENGTH} characters")
    symbology = None
    if _AIM_PREFIX.match(text):
        symbology, text = text[:3], text[3:]
        if not text:
            raise BarcodeError(f"scan holds only the symbology identifier {symbology}")
    if symbology in GS1_SYMBOLOGIES or (symbology is None and _looks_gs1(text)):
        message = parse_human(text, today) if text.startswith("(") else None
        if message is None:
            _check_chars(text.replace(GS, ""))
            message = parse_element_string(text, today)
        return Scan(ScanKind.GS1, message.element_string(), message, symbology)
    _check_chars(text)
    kind = ScanKind.INSTANCE if _INSTANCE.fullmatch(text) else ScanKind.CODE128
    return Scan(kind, text, None, symbology)


class ScanFramer:
    """Sans-I/O splitter of a scanner byte stream into one frame per scan."""

    def __init__(self, terminator: bytes = b"\r", max_length: int = MAX_SCAN_LENGTH) -> None:
        """Frames end with `terminator`; a run longer than `max_length` is cut into a frame."""
        if not terminator:
            raise ValueError("terminator must not be empty")
        self._terminator = terminator
        self._max = max_length
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete frames, blank ones left out.

        A run longer than `max_length` comes out as one frame (refused as too long) and the
        rest of it, up to the next terminator, is dropped: the tail of a cut scan is never
        taken for a scan of its own.
        """
        self._buffer += data
        frames: list[bytes] = []
        while True:
            end = self._buffer.find(self._terminator)
            if end < 0:
                if len(self._buffer) > self._max:
                    if not self._overflow:
                        frames.append(bytes(self._buffer))
                    self._overflow = True
                    # keep what may be the start of a terminator split across reads
                    keep = len(self._terminator) - 1
                    del self._buffer[: len(self._buffer) - keep if keep else None]
                break
            if not self._overflow:
                frames.append(bytes(self._buffer[:end]))
            self._overflow = False
            del self._buffer[: end + len(self._terminator)]
        return [f for f in frames if f.strip(b" \r\n\t\x00")]

    def flush(self) -> list[bytes]:
        """Return what is left without a terminator (at disconnect), as a frame."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        overflow, self._overflow = self._overflow, False
        return [rest] if rest.strip(b" \r\n\t\x00") and not overflow else []


def _looks_gs1(text: str) -> bool:
    if text.startswith(GS) or GS in text:
        return True
    if re.match(r"\(\d{2,4}\)", text):
        return True
    return bool(_GTIN_START.match(text)) and _valid_gtin14(text[2:16])


def _valid_gtin14(digits: str) -> bool:
    return gtin_check_digit(digits[:-1]) == int(digits[-1])


def _check_chars(text: str) -> None:
    if not _PRINTABLE_ASCII.fullmatch(text):
        bad = sorted({c for c in text if not ("\x20" <= c <= "\x7e")})
        raise BarcodeError(f"scan holds unsupported characters: {sanitize(''.join(bad), 20)!r}")
