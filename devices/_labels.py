"""Sterile-set label: its data, its layout settings, its DataMatrix payload and its plan."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import zxingcpp
from reportlab.pdfbase.pdfmetrics import stringWidth

from ._errors import BarcodeError, LabelError
from ._gs1 import (
    GS1Message,
    escape_internal,
    format_gs1_date,
    normalize_gtin,
    parse_gs1_date,
    unescape_internal,
)

MM_PER_INCH = 25.4
PT_PER_MM = 72 / MM_PER_INCH
FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"

# Internal AIs carried by labels of sets without a GTIN (documented in devices/README.md).
AI_INSTANCE, AI_LOT, AI_EXPIRY, AI_STERILIZED, AI_LABEL_ID = "91", "92", "93", "94", "95"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CODE128_SAFE = re.compile(r"[\x20-\x5b\x5d\x5f-\x7d]+")  # ASCII but backslash ^ ~
_MAX_TEXT = 80


@dataclass(frozen=True, slots=True)
class LabelData:
    """What one sterile-set label shows; the node fills it, rendering never changes it."""

    set_code: str
    set_name: str
    instance: str
    lot: str
    sterilized_on: date
    expires_on: date
    sterilizer: str
    cycle_no: str
    packer: str
    label_id: str
    gtin: str | None = None
    reprint: bool = False

    def __post_init__(self) -> None:
        """Refuse empty, overlong or control-character text, bad dates and bad GTINs."""
        for field in ("set_code", "set_name", "instance", "lot", "sterilizer", "cycle_no"):
            _check_text(field, getattr(self, field))
        for field in ("packer", "label_id"):
            _check_text(field, getattr(self, field))
        if not _CODE128_SAFE.fullmatch(self.instance):
            raise LabelError("instance must be printable ASCII without \\ ^ ~ (Code 128)")
        if self.expires_on < self.sterilized_on:
            raise LabelError("expires_on is before sterilized_on")
        if self.gtin is not None:
            try:
                normalize_gtin(self.gtin)
            except BarcodeError as err:
                raise LabelError(str(err)) from err


@dataclass(frozen=True, slots=True)
class LabelCode:
    """The label fields read back from one of our label DataMatrix codes."""

    instance: str
    lot: str
    sterilized_on: date
    expires_on: date
    label_id: str
    gtin: str | None = None


@dataclass(frozen=True, slots=True)
class LabelLayout:
    """Label geometry in millimetres; the cluster settings may override any field."""

    width_mm: float = 50.0
    height_mm: float = 30.0
    margin_mm: float = 1.5
    dpi: int = 203
    title_size_mm: float = 2.6
    text_size_mm: float = 2.2
    line_gap_mm: float = 0.25
    column_gap_mm: float = 1.0
    dm_module_mm: float = 0.375
    code128_module_mm: float = 0.25
    code128_height_mm: float = 5.0

    def __post_init__(self) -> None:
        """Refuse sizes outside what a label printer can do."""
        if not 15 <= self.width_mm <= 220 or not 15 <= self.height_mm <= 300:
            raise LabelError("label size must be 15-220 mm wide and 15-300 mm high")
        if not 100 <= self.dpi <= 1200:
            raise LabelError("dpi must be 100-1200")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "dpi" and not 0 <= value <= 100:
                raise LabelError(f"{field.name} must be between 0 and 100 mm")
        for name in ("title_size_mm", "text_size_mm", "dm_module_mm", "code128_module_mm"):
            if getattr(self, name) <= 0:
                raise LabelError(f"{name} must be positive")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> LabelLayout:
        """Build a layout from a settings mapping; raise LabelError on unknown or bad keys."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise LabelError(f"unknown label layout settings: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LabelError(f"label layout setting {key} must be a number")
            if key == "dpi" and not isinstance(value, int):
                raise LabelError("label layout setting dpi must be an integer")
            values[key] = value
        return cls(**values)

    def dots(self, mm: float) -> int:
        """Return `mm` in printer dots, rounded."""
        return round(mm * self.dpi / MM_PER_INCH)


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of text, placed by its top-left corner in millimetres."""

    x_mm: float
    y_mm: float
    size_mm: float
    bold: bool
    text: str


@dataclass(frozen=True, slots=True)
class LabelPlan:
    """Where everything goes on the label; ZPL and PDF both draw from it."""

    layout: LabelLayout
    lines: tuple[TextLine, ...]
    payload: GS1Message
    dm_x_mm: float
    dm_y_mm: float
    dm_modules: tuple[int, int]
    code128: str
    code128_x_mm: float
    code128_y_mm: float
    code128_module_dots: int


def label_payload(label: LabelData) -> GS1Message:
    """Return the GS1 message of the label's DataMatrix (internal AIs when no GTIN)."""
    try:
        if label.gtin is not None:
            return GS1Message.build(
                [
                    ("01", normalize_gtin(label.gtin)),
                    ("11", format_gs1_date(label.sterilized_on)),
                    ("17", format_gs1_date(label.expires_on)),
                    ("10", escape_internal(label.lot)),
                    ("21", escape_internal(label.instance)),
                    (AI_LABEL_ID, escape_internal(label.label_id)),
                ]
            )
        return GS1Message.build(
            [
                (AI_INSTANCE, escape_internal(label.instance)),
                (AI_LOT, escape_internal(label.lot)),
                (AI_EXPIRY, format_gs1_date(label.expires_on)),
                (AI_STERILIZED, format_gs1_date(label.sterilized_on)),
                (AI_LABEL_ID, escape_internal(label.label_id)),
            ]
        )
    except BarcodeError as err:
        raise LabelError(f"label {label.label_id}: {err}") from err


def decode_label_code(message: GS1Message) -> LabelCode | None:
    """Return the label fields if `message` is one of our label codes, else None."""
    fields = message.as_dict()
    try:
        if "01" in fields and AI_LABEL_ID in fields and {"10", "11", "17", "21"} <= set(fields):
            return LabelCode(
                instance=unescape_internal(fields["21"]),
                lot=unescape_internal(fields["10"]),
                sterilized_on=parse_gs1_date(fields["11"]),
                expires_on=parse_gs1_date(fields["17"]),
                label_id=unescape_internal(fields[AI_LABEL_ID]),
                gtin=fields["01"],
            )
        wanted = {AI_INSTANCE, AI_LOT, AI_EXPIRY, AI_STERILIZED, AI_LABEL_ID}
        if "01" not in fields and wanted <= set(fields):
            return LabelCode(
                instance=unescape_internal(fields[AI_INSTANCE]),
                lot=unescape_internal(fields[AI_LOT]),
                sterilized_on=parse_gs1_date(fields[AI_STERILIZED]),
                expires_on=parse_gs1_date(fields[AI_EXPIRY]),
                label_id=unescape_internal(fields[AI_LABEL_ID]),
            )
    except BarcodeError:
        return None
    return None


def label_lines(label: LabelData) -> list[tuple[str, bool]]:
    """Return the label's text lines (French) with their bold flag, before fitting."""
    ident = (
        label.instance
        if label.instance.startswith(label.set_code)
        else (f"{label.set_code} {label.instance}")
    )
    lines = [
        (label.set_name, True),
        (ident, False),
        (f"Lot {label.lot}", False),
        (f"Stérilisé le {label.sterilized_on:%d/%m/%Y}", False),
        (f"À utiliser avant {label.expires_on:%d/%m/%Y}", True),
        (f"Stér. {label.sterilizer} cycle {label.cycle_no}", False),
        (f"Conditionné par {label.packer}", False),
    ]
    if label.reprint:
        lines.append(("Réimpression", True))
    return lines


def plan_label(label: LabelData, layout: LabelLayout | None = None) -> LabelPlan:
    """Place the text, the DataMatrix and the Code 128; raise LabelError if they do not fit."""
    layout = layout or LabelLayout()
    payload = label_payload(label)
    rows, cols = datamatrix_shape(payload.bracketed())
    dm_w = cols * layout.dm_module_mm
    dm_x = layout.width_mm - layout.margin_mm - dm_w
    text_w = dm_x - layout.column_gap_mm - layout.margin_mm
    if text_w < 10:
        raise LabelError("label too narrow for text beside the DataMatrix")
    lines: list[TextLine] = []
    y = layout.margin_mm
    for i, (text, bold) in enumerate(label_lines(label)):
        size = layout.title_size_mm if i == 0 else layout.text_size_mm
        font = FONT_BOLD if bold else FONT
        # Shrink a long line down to 80 % before cutting it: the set name matters.
        shown = size
        while shown > size * 0.8 and fit_text(text, font, shown, text_w) != text:
            shown = round(shown - 0.1, 2)
        lines.append(
            TextLine(layout.margin_mm, y, shown, bold, fit_text(text, font, shown, text_w))
        )
        y += size + layout.line_gap_mm
    bar_y = layout.height_mm - layout.margin_mm - layout.code128_height_mm
    if y - layout.line_gap_mm > bar_y or layout.margin_mm + rows * layout.dm_module_mm > bar_y:
        raise LabelError("label too short for its text, DataMatrix and Code 128")
    module = _code128_module_dots(label.instance, layout)
    return LabelPlan(
        layout=layout,
        lines=tuple(lines),
        payload=payload,
        dm_x_mm=dm_x,
        dm_y_mm=layout.margin_mm,
        dm_modules=(rows, cols),
        code128=label.instance,
        code128_x_mm=layout.margin_mm,
        code128_y_mm=bar_y,
        code128_module_dots=module,
    )


def fit_text(text: str, font: str, size_mm: float, width_mm: float) -> str:
    """Return `text`, cut with '...' so that it fits `width_mm` in `font`."""
    size_pt = size_mm * PT_PER_MM
    limit = width_mm * PT_PER_MM
    if stringWidth(text, font, size_pt) <= limit:
        return text
    while text and stringWidth(text + "...", font, size_pt) > limit:
        text = text[:-1]
    return text.rstrip() + "..."


def datamatrix_shape(bracketed: str) -> tuple[int, int]:
    """Return (rows, columns) of the GS1 DataMatrix encoding `bracketed` data."""
    return _datamatrix(bracketed)[0]


def datamatrix_matrix(bracketed: str) -> tuple[tuple[int, int], bytes]:
    """Return ((rows, columns), modules) of a GS1 DataMatrix; module byte 0 is dark."""
    return _datamatrix(bracketed)


@lru_cache(maxsize=256)
def _datamatrix(bracketed: str) -> tuple[tuple[int, int], bytes]:
    # Square symbols only: zxing-cpp otherwise picks rectangular DMRE sizes (e.g. 12x64),
    # which many scanners do not read and which read back as ]d8, not GS1's ]d2; ZPL's ^BX
    # draws square symbols too, so the PDF and the ZPL label carry the same symbol.
    try:
        barcode = zxingcpp.create_barcode(
            bracketed, zxingcpp.BarcodeFormat.DataMatrix, gs1=True, forceSquare=True
        )
    except (ValueError, RuntimeError) as err:
        raise LabelError(f"DataMatrix encoding failed: {err}") from err
    image: Any = barcode.to_image(scale=1, add_quiet_zones=False)
    rows, cols = image.shape
    return (int(rows), int(cols)), bytes(memoryview(image))


def _code128_module_dots(value: str, layout: LabelLayout) -> int:
    # Code 128 subset B: start + data + check + stop symbols of 11 modules, stop has 13.
    modules = 11 * (len(value) + 3) + 2
    available = layout.dots(layout.width_mm - 2 * layout.margin_mm)
    dots = max(1, layout.dots(layout.code128_module_mm))
    while dots > 1 and modules * dots > available:
        dots -= 1
    if modules * dots > available:
        raise LabelError(f"Code 128 of {value!r} does not fit the label width")
    return dots


def _check_text(field: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise LabelError(f"{field} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise LabelError(f"{field} longer than {_MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise LabelError(f"{field} holds control characters")
