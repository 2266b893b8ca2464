"""GS1 element strings: the AIs we use, validation, parsing and encoding."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from ._errors import BarcodeError
from ._sanitize import sanitize

GS = "\x1d"

# GS1 General Specifications, figure 7.11-1: the 82 characters allowed in alphanumeric AIs.
CSET82 = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)

# AIM symbology identifiers that announce GS1 data (FNC1 in first position).
GS1_SYMBOLOGIES = frozenset({"]d2", "]C1", "]Q3", "]e0", "]J1"})


@dataclass(frozen=True, slots=True)
class _AISpec:
    ai: str
    kind: str  # "gtin", "date" or "x" (CSET 82)
    length: int  # fixed length, or the maximum length when `fixed` is false
    fixed: bool
    title: str


def _specs() -> dict[str, _AISpec]:
    specs = [
        _AISpec("01", "gtin", 14, True, "GTIN"),
        _AISpec("10", "x", 20, False, "BATCH/LOT"),
        _AISpec("11", "date", 6, True, "PROD DATE"),
        _AISpec("17", "date", 6, True, "USE BY"),
        _AISpec("21", "x", 20, False, "SERIAL"),
        _AISpec("8004", "x", 30, False, "GIAI"),
    ]
    specs += [_AISpec(str(n), "x", 90, False, "INTERNAL") for n in range(91, 100)]
    return {s.ai: s for s in specs}


AI_SPECS = _specs()
SUPPORTED_AIS = tuple(AI_SPECS)

_HUMAN_AI = re.compile(r"\((\d{2,4})\)")


@dataclass(frozen=True, slots=True)
class GS1Element:
    """One application identifier and its data, as carried in the symbol."""

    ai: str
    value: str


@dataclass(frozen=True, slots=True)
class GS1Message:
    """A validated GS1 element string: an ordered tuple of elements."""

    elements: tuple[GS1Element, ...]

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]]) -> GS1Message:
        """Validate (AI, value) pairs and return the message; raise BarcodeError if invalid."""
        elements: list[GS1Element] = []
        seen: set[str] = set()
        for ai, value in pairs:
            if ai in seen:
                raise BarcodeError(f"AI ({ai}) repeated")
            seen.add(ai)
            _validate(ai, value)
            elements.append(GS1Element(ai, value))
        if not elements:
            raise BarcodeError("empty GS1 message")
        return cls(tuple(elements))

    def get(self, ai: str) -> str | None:
        """Return the value of `ai`, or None when absent."""
        for element in self.elements:
            if element.ai == ai:
                return element.value
        return None

    def as_dict(self) -> dict[str, str]:
        """Return {AI: value} in symbol order."""
        return {e.ai: e.value for e in self.elements}

    @property
    def gtin(self) -> str | None:
        """The GTIN-14 of AI (01), if any."""
        return self.get("01")

    @property
    def serial(self) -> str | None:
        """The serial number of AI (21), if any."""
        return self.get("21")

    @property
    def lot(self) -> str | None:
        """The batch or lot of AI (10), if any."""
        return self.get("10")

    @property
    def expiry(self) -> date | None:
        """The use-by date of AI (17) in the 2000-2099 window, if any."""
        value = self.get("17")
        return None if value is None else parse_gs1_date(value)

    @property
    def production_date(self) -> date | None:
        """The production date of AI (11) in the 2000-2099 window, if any."""
        value = self.get("11")
        return None if value is None else parse_gs1_date(value)

    def element_string(self) -> str:
        """Return the element string with GS separators after variable-length fields."""
        parts: list[str] = []
        last = len(self.elements) - 1
        for i, element in enumerate(self.elements):
            parts.append(element.ai + element.value)
            if i < last and not AI_SPECS[element.ai].fixed:
                parts.append(GS)
        return "".join(parts)

    def human(self) -> str:
        """Return the human-readable form, e.g. (01)03453120000011(17)261231."""
        for element in self.elements:
            if "(" in element.value or ")" in element.value:
                raise BarcodeError(
                    f"AI ({element.ai}) holds a parenthesis: no unambiguous bracketed form"
                )
        return "".join(f"({e.ai}){e.value}" for e in self.elements)

    def bracketed(self) -> str:
        """Return the square-bracket form used as barcode writer input, e.g. [01]034...[21]7."""
        return "".join(f"[{e.ai}]{e.value}" for e in self.elements)


def gtin_check_digit(body: str) -> int:
    """Return the GS1 mod-10 check digit for the digits in `body`."""
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def normalize_gtin(gtin: str) -> str:
    """Return a GTIN-8/12/13/14 as 14 digits; raise BarcodeError if it is invalid."""
    if not gtin.isascii() or not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        raise BarcodeError(f"GTIN must be 8, 12, 13 or 14 digits: {sanitize(gtin, 40)!r}")
    gtin = gtin.rjust(14, "0")
    if gtin_check_digit(gtin[:-1]) != int(gtin[-1]):
        raise BarcodeError(f"GTIN {gtin} has a wrong check digit")
    return gtin


def parse_gs1_date(value: str, today: date | None = None) -> date:
    """Return the date of a YYMMDD field (DD 00 = last day of month); raise BarcodeError."""
    if len(value) != 6 or not value.isascii() or not value.isdigit():
        raise BarcodeError(f"date must be YYMMDD: {sanitize(value, 20)!r}")
    yy, mm, dd = int(value[:2]), int(value[2:4]), int(value[4:])
    year = 2000 + yy if today is None else _century_window(yy, today.year)
    if not 1 <= mm <= 12:
        raise BarcodeError(f"date {value}: month {mm:02d} out of range")
    last = calendar.monthrange(year, mm)[1]
    if dd == 0:
        dd = last
    if dd > last:
        raise BarcodeError(f"date {value}: day {dd:02d} out of range")
    return date(year, mm, dd)


def format_gs1_date(day: date) -> str:
    """Return `day` as YYMMDD; raise BarcodeError outside 2000-2099."""
    if not 2000 <= day.year <= 2099:
        raise BarcodeError(f"year {day.year} cannot be encoded as YYMMDD")
    return day.strftime("%y%m%d")


def parse_element_string(data: str, today: date | None = None) -> GS1Message:
    """Parse a GS1 element string (GS separators, optional leading FNC1/GS)."""
    text = data.lstrip(GS)
    if not text:
        raise BarcodeError("empty GS1 element string")
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos] == GS:
            raise BarcodeError(f"doubled separator at position {pos}")
        spec = _spec_at(text, pos)
        pos += len(spec.ai)
        if spec.fixed:
            value = text[pos : pos + spec.length]
            if len(value) < spec.length:
                raise BarcodeError(f"AI ({spec.ai}) truncated: {spec.length} characters expected")
            pos += spec.length
            if text.startswith(GS, pos):
                pos += 1
        else:
            end = text.find(GS, pos)
            end = len(text) if end < 0 else end
            value = text[pos:end]
            pos = end + 1
        if spec.kind == "date":
            parse_gs1_date(value, today)
        pairs.append((spec.ai, value))
    return GS1Message.build(pairs)


def parse_human(data: str, today: date | None = None) -> GS1Message:
    """Parse the bracketed human form, e.g. (01)03453120000011(10)LOT7."""
    if not data.startswith("("):
        raise BarcodeError("bracketed GS1 form must start with '('")
    marks = list(_HUMAN_AI.finditer(data))
    if not marks or marks[0].start() != 0 or marks[0].group(1) not in AI_SPECS:
        raise BarcodeError(f"unsupported AI in {sanitize(data, 40)!r}")
    unknown = next((m.group(1) for m in marks if m.group(1) not in AI_SPECS), None)
    if unknown is not None:  # else its data would be read as part of the value before it
        raise BarcodeError(
            f"unsupported AI ({unknown}), or digits in brackets inside a value, in"
            f" {sanitize(data, 40)!r}: scan the barcode itself"
        )
    pairs: list[tuple[str, str]] = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(data)
        ai, value = mark.group(1), data[mark.end() : end]
        if AI_SPECS[ai].kind == "date":
            parse_gs1_date(value, today)
        pairs.append((ai, value))
    return GS1Message.build(pairs)


def escape_internal(text: str) -> str:
    """Percent-encode (UTF-8) every character outside CSET 82, and '%' itself."""
    out: list[str] = []
    for char in text:
        if char in CSET82 and char != "%":
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8"))
    return "".join(out)


def unescape_internal(text: str) -> str:
    """Reverse escape_internal; raise BarcodeError on a malformed escape."""
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or any(c not in "0123456789ABCDEFabcdef" for c in pair):
                raise BarcodeError(f"bad %-escape in {sanitize(text, 40)!r}")
            raw.append(int(pair, 16))
            i += 3
        else:
            raw.extend(text[i].encode("ascii"))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BarcodeError(f"bad UTF-8 in {sanitize(text, 40)!r}") from err


def _spec_at(text: str, pos: int) -> _AISpec:
    for size in (2, 3, 4):
        spec = AI_SPECS.get(text[pos : pos + size])
        if spec is not None:
            return spec
    raise BarcodeError(
        f"unsupported AI at position {pos}: {sanitize(text[pos : pos + 4], 10)!r}"
        f" (supported: {', '.join(SUPPORTED_AIS)})"
    )


def _validate(ai: str, value: str) -> None:
    spec = AI_SPECS.get(ai)
    if spec is None:
        raise BarcodeError(f"unsupported AI ({sanitize(ai, 8)})")
    if spec.fixed and len(value) != spec.length:
        raise BarcodeError(f"AI ({ai}) needs {spec.length} characters, got {len(value)}")
    if not spec.fixed and not 1 <= len(value) <= spec.length:
        raise BarcodeError(f"AI ({ai}) needs 1 to {spec.length} characters, got {len(value)}")
    if spec.kind == "gtin":
        normalize_gtin(value)
    elif spec.kind == "date":
        parse_gs1_date(value)
    else:
        bad = sorted({c for c in value if c not in CSET82})
        if bad:
            shown = sanitize("".join(bad), 20)
            raise BarcodeError(f"AI ({ai}) holds characters outside GS1 CSET 82: {shown!r}")


def _century_window(yy: int, this_year: int) -> int:
    # GS1 General Specifications 7.12: the century that puts YY within -49..+50 years of now.
    century, now_yy = divmod(this_year, 100)
    diff = yy - now_yy
    if diff >= 51:
        century -= 1
    elif diff <= -50:
        century += 1
    return century * 100 + yy
