"""Label as a one-page PDF (reportlab): text, GS1 DataMatrix as rectangles, Code 128."""

from __future__ import annotations

import io

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from ._labels import (
    FONT,
    FONT_BOLD,
    LabelData,
    LabelLayout,
    LabelPlan,
    datamatrix_matrix,
    plan_label,
)

# Baseline below the top of a line, as a share of the font size (Helvetica ascent ~0.72 em).
_ASCENT = 0.75


def render_pdf(label: LabelData, layout: LabelLayout | None = None) -> bytes:
    """Return one label as a one-page PDF of the layout's size (deterministic bytes)."""
    return pdf_from_plan(plan_label(label, layout), title=f"Etiquette {label.label_id}")


def pdf_from_plan(plan: LabelPlan, title: str = "Etiquette") -> bytes:
    """Return the PDF drawing `plan`."""
    lay = plan.layout
    buffer = io.BytesIO()
    page_h = lay.height_mm * mm
    canvas = Canvas(buffer, pagesize=(lay.width_mm * mm, page_h), invariant=1)
    canvas.setTitle(title)
    canvas.setCreator("sterimesh devices")
    for line in plan.lines:
        canvas.setFont(FONT_BOLD if line.bold else FONT, line.size_mm * mm)
        canvas.drawString(
            line.x_mm * mm, page_h - (line.y_mm + _ASCENT * line.size_mm) * mm, line.text
        )
    _draw_datamatrix(canvas, plan, page_h)
    module_mm = plan.code128_module_dots * 25.4 / lay.dpi
    bars = Code128(
        plan.code128,
        barWidth=module_mm * mm,
        barHeight=lay.code128_height_mm * mm,
        quiet=0,
        humanReadable=0,
    )
    bars.drawOn(
        canvas, plan.code128_x_mm * mm, page_h - (plan.code128_y_mm + lay.code128_height_mm) * mm
    )
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _draw_datamatrix(canvas: Canvas, plan: LabelPlan, page_h: float) -> None:
    (rows, cols), modules = datamatrix_matrix(plan.payload.bracketed())
    size = plan.layout.dm_module_mm * mm
    left = plan.dm_x_mm * mm
    top = page_h - plan.dm_y_mm * mm
    path = canvas.beginPath()
    for r in range(rows):
        row = modules[r * cols : (r + 1) * cols]
        c = 0
        while c < cols:
            if row[c] != 0:
                c += 1
                continue
            start = c
            while c < cols and row[c] == 0:
                c += 1
            path.rect(left + start * size, top - (r + 1) * size, (c - start) * size, size)
    canvas.setFillGray(0)
    canvas.drawPath(path, stroke=0, fill=1)
