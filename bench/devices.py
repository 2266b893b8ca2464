"""Benchmark of devices: label rendering (PDF, ZPL) and machine cycle parsing.

Anchors, measured in the same run: rendering is compared with reportlab drawing a blank
50x30 mm PDF page with one text line; parsing with splitting the same bytes into lines.
Aims: a PDF label under 50 ms, a ZPL label under 1 ms. Run: python -m bench.devices
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from devices import LabelData, parse_cycle_bytes, render_pdf, render_zpl
from devices.simulators import dac_cycle_text, generic_cycle_text, ims_cycle_csv

REPEATS = 5
AIM_PDF_S = 0.050
AIM_ZPL_S = 0.001


def _label(n: int) -> LabelData:
    return LabelData(
        set_code="JDIGGRBA",
        set_name="JOL-GRANDE BASE DIGESTIVE",
        instance=f"JDIGGRBA#{n % 1000}",
        lot="B-261128-007",
        sterilized_on=date(2026, 11, 28),
        expires_on=date(2027, 5, 28),
        sterilizer="AUTOCLAVE-2",
        cycle_no="01234",
        packer="Marie Dupont",
        label_id=f"L-261128-{n:05d}",
    )


def _best(func: Callable[[int], object], count: int) -> float:
    """Return the best time per call over REPEATS batches of `count` calls."""
    best = float("inf")
    serial = 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(count):
            func(serial)
            serial += 1  # a new label id each call: no cached DataMatrix
        best = min(best, (time.perf_counter() - start) / count)
    return best


def _blank_page(_: int) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(50 * mm, 30 * mm), invariant=1)
    canvas.setFont("Helvetica", 6)
    canvas.drawString(5, 5, "Stérilisé le 28/11/2026")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _cycle_data() -> dict[str, bytes]:
    start = datetime(2026, 11, 28, 6, 0)
    return {
        "dac": "".join(dac_cycle_text(n, start + timedelta(hours=n)) for n in range(1, 51)).encode(
            "cp1252"
        ),
        "ims_csv": "".join(
            ims_cycle_csv(n, start + timedelta(hours=n)) for n in range(1, 51)
        ).encode("cp1252"),
        "generic": "".join(
            generic_cycle_text(n, start + timedelta(hours=n)) for n in range(1, 51)
        ).encode("utf-8"),
    }


def run() -> list[dict[str, Any]]:
    """Measure and return one dict per benchmark (seconds per operation, anchor, ratio)."""
    rows: list[dict[str, Any]] = []
    anchor_render = _best(_blank_page, 50)
    rows.append(_row("anchor: reportlab blank 50x30 mm page", anchor_render, "page", None, None))
    pdf = _best(lambda n: render_pdf(_label(n)), 50)
    rows.append(_row("label PDF", pdf, "label", "reportlab blank page", anchor_render))
    rows[-1]["aim_s"] = AIM_PDF_S
    zpl = _best(lambda n: render_zpl(_label(n)), 500)
    rows.append(_row("label ZPL", zpl, "label", "reportlab blank page", anchor_render))
    rows[-1]["aim_s"] = AIM_ZPL_S
    for name, data in _cycle_data().items():
        split = _best(lambda _n, d=data: d.splitlines(), 20)  # type: ignore[misc]
        rows.append(_row(f"anchor: splitlines {name}", split, "capture", None, None))
        parse = _best(lambda _n, d=data, f=name: parse_cycle_bytes(d, fmt=f), 5)  # type: ignore[misc]
        row = _row(f"parse {name} (50 cycles)", parse, "capture", f"splitlines {name}", split)
        row["mb_per_s"] = len(data) / parse / 1e6
        row["cycles_per_s"] = 50 / parse
        rows.append(row)
    return rows


def main() -> None:
    """Print the benchmark table."""
    rows = run()
    print(f"{'benchmark':<40} {'per op':>12} {'anchor':<24} {'ratio':>8}  notes")
    for row in rows:
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.1f}x"
        notes = []
        if "aim_s" in row:
            ok = "ok" if row["seconds"] < row["aim_s"] else "OVER"
            notes.append(f"aim < {row['aim_s'] * 1000:g} ms: {ok}")
        if "mb_per_s" in row:
            notes.append(f"{row['mb_per_s']:.1f} MB/s, {row['cycles_per_s']:.0f} cycles/s")
        print(
            f"{row['name']:<40} {row['seconds'] * 1000:>9.3f} ms {row['anchor'] or '':<24}"
            f" {ratio:>8}  {'; '.join(notes)}"
        )


def _row(
    name: str, seconds: float, unit: str, anchor: str | None, anchor_s: float | None
) -> dict[str, Any]:
    return {
        "bench": "devices",
        "name": name,
        "seconds": seconds,
        "unit": unit,
        "anchor": anchor,
        "ratio": None if anchor_s is None else seconds / anchor_s,
    }


if __name__ == "__main__":
    main()
