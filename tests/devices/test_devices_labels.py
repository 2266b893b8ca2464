"""Labels: data checks, layout settings, ZPL field by field, PDF decoded back."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import (
    LabelError,
    LabelLayout,
    decode_label_code,
    label_payload,
    parse_element_string,
    plan_label,
    render_pdf,
    render_zpl,
)
from devices._gs1 import GS
from devices.simulators import datamatrix_element_string, parse_zpl
from tests.devices.devices_helpers import label, rasterize, zxing

GTIN = "03453120000011"


def test_payload_without_gtin_uses_internal_ais() -> None:
    payload = label_payload(label())
    assert payload.element_string() == (
        f"91JDIGGRBA%23111{GS}92B-261128-007{GS}93270528{GS}94261128{GS}95L-261128-0042"
    )


def test_payload_with_gtin_uses_standard_ais() -> None:
    payload = label_payload(label(gtin="3453120000011"))
    assert payload.as_dict() == {
        "01": GTIN,
        "11": "261128",
        "17": "270528",
        "10": "B-261128-007",
        "21": "JDIGGRBA%23111",
        "95": "L-261128-0042",
    }
    assert payload.element_string().startswith(f"01{GTIN}112611281727052810B-261128-007" + GS)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"set_name": ""}, "non-empty"),
        ({"lot": "A\x1bB"}, "control"),
        ({"packer": "x" * 81}, "longer"),
        ({"instance": "JDIG^111"}, "Code 128"),
        ({"expires_on": date(2026, 1, 1)}, "before"),
        ({"gtin": "12345670"}, None),
        ({"gtin": "12345678"}, "check digit"),
    ],
)
def test_label_data_is_checked(changes: dict[str, object], reason: str | None) -> None:
    if reason is None:
        assert label(**changes).gtin == changes["gtin"]
        return
    with pytest.raises(LabelError, match=reason):
        label(**changes)


def test_layout_from_settings() -> None:
    layout = LabelLayout.from_settings({"width_mm": 60, "height_mm": 40, "dpi": 300})
    assert (layout.width_mm, layout.height_mm, layout.dpi) == (60, 40, 300)
    assert LabelLayout.from_settings({}) == LabelLayout()
    with pytest.raises(LabelError, match="unknown"):
        LabelLayout.from_settings({"colour": 1})
    with pytest.raises(LabelError, match="number"):
        LabelLayout.from_settings({"width_mm": "50"})
    with pytest.raises(LabelError, match="integer"):
        LabelLayout.from_settings({"dpi": 203.5})
    with pytest.raises(LabelError):
        LabelLayout.from_settings({"width_mm": 5})


def test_text_that_does_not_fit_is_cut_and_label_too_small_is_refused() -> None:
    plan = plan_label(label(set_name="BOITE " * 12))
    assert plan.lines[0].text.endswith("...")
    with pytest.raises(LabelError, match="too short"):
        plan_label(label(reprint=True), LabelLayout(height_mm=20))
    with pytest.raises(LabelError, match="Code 128"):
        plan_label(label(instance="A" * 60))
    with pytest.raises(LabelError, match="too narrow"):
        plan_label(label(), LabelLayout(width_mm=20))


def test_zpl_field_by_field() -> None:
    zpl = render_zpl(label(reprint=True))
    assert zpl.isascii()
    (fmt,) = parse_zpl(zpl)
    assert fmt.command("CI") == "28"
    assert fmt.command("PW") == "400"  # 50 mm at 203 dpi
    assert fmt.command("LL") == "240"  # 30 mm
    texts = [f.text for f in fmt.field_kind("text")]
    assert texts == [
        "JOL-GRANDE BASE DIGESTIVE",
        "JDIGGRBA#111",
        "Lot B-261128-007",
        "Stérilisé le 28/11/2026",
        "À utiliser avant 28/05/2027",
        "Stér. AUTOCLAVE-2 cycle 01234",
        "Conditionné par Marie Dupont",
        "Réimpression",
    ]
    (dm,) = fmt.field_kind("datamatrix")
    assert dm.params.split(",")[2] == "200"  # ECC 200
    assert dm.params.endswith(",_")  # escape character given explicitly
    assert dm.data.startswith("_1")  # FNC1 first: a GS1 DataMatrix
    payload = label_payload(label())
    assert datamatrix_element_string(dm.data) == payload.element_string()
    (bar,) = fmt.field_kind("code128")
    assert bar.data == ">:JDIGGRBA#111"
    assert [f.y for f in fmt.field_kind("text")] == sorted(f.y for f in fmt.field_kind("text"))
    assert bar.y > max(f.y for f in fmt.field_kind("text"))


def test_zpl_escapes_what_zpl_would_read_as_commands() -> None:
    zpl = render_zpl(label(set_name="A^B~C\\D", packer="Zoé_1", lot="L_1"))
    (fmt,) = parse_zpl(zpl)
    texts = [f.text for f in fmt.field_kind("text")]
    assert texts[0] == "A^B~C\\D"
    assert "Conditionné par Zoé_1" in texts
    (dm,) = fmt.field_kind("datamatrix")
    assert "L__1" in dm.data
    assert parse_element_string(datamatrix_element_string(dm.data)).get("92") == "L_1"
    assert zpl.count(b"^XA") == 1


def test_no_reprint_line_on_a_first_print() -> None:
    (fmt,) = parse_zpl(render_zpl(label()))
    assert "Réimpression" not in [f.text for f in fmt.field_kind("text")]


def test_pdf_is_deterministic_and_sized() -> None:
    pdf = render_pdf(label())
    assert pdf.startswith(b"%PDF")
    assert pdf == render_pdf(label())
    assert b"/MediaBox [ 0 0 141.7323 85.03937 ]" in pdf  # 50 x 30 mm


def test_pdf_datamatrix_decodes_to_the_exact_gs1_payload(tmp_path: Path) -> None:
    zx = zxing()
    data = label(reprint=True)
    image = rasterize(render_pdf(data), tmp_path)
    results = zx.read_barcodes(image)
    matrices = [r for r in results if r.format == zx.BarcodeFormat.DataMatrix]
    bars = [r for r in results if r.format == zx.BarcodeFormat.Code128]
    assert len(matrices) == 1, results
    assert matrices[0].symbology_identifier == "]d2"  # FNC1 in first position: GS1
    assert matrices[0].content_type == zx.ContentType.GS1
    assert matrices[0].bytes.decode("ascii") == label_payload(data).element_string()
    assert [b.text for b in bars] == ["JDIGGRBA#111"]


def test_pdf_datamatrix_is_square_and_reads_as_gs1_like_the_zpl_one(tmp_path: Path) -> None:
    zx = zxing()
    data = label(label_id="LB2611280001")  # a payload zxing-cpp alone draws as a 12x64 DMRE
    rows, cols = plan_label(data).dm_modules
    assert rows == cols
    image = rasterize(render_pdf(data), tmp_path)
    (matrix,) = [r for r in zx.read_barcodes(image) if r.format == zx.BarcodeFormat.DataMatrix]
    assert matrix.symbology_identifier == "]d2"  # a rectangular DMRE reads back as ]d8
    assert matrix.content_type == zx.ContentType.GS1
    corners = matrix.position
    width = corners.top_right.x - corners.top_left.x
    height = corners.bottom_left.y - corners.top_left.y
    assert abs(width - height) <= width * 0.1
    # the printer draws the same data, square (^BX: no size, no rectangular aspect)
    (fmt,) = parse_zpl(render_zpl(data))
    (dm,) = fmt.field_kind("datamatrix")
    assert dm.params.split(",")[3:5] == ["0", "0"]
    assert matrix.bytes.decode("ascii") == datamatrix_element_string(dm.data)


def test_pdf_with_gtin_decodes(tmp_path: Path) -> None:
    zx = zxing()
    data = label(gtin="03453120000011", instance="JDIGELAP01", set_code="JDIGELAP")
    image = rasterize(render_pdf(data), tmp_path)
    (matrix,) = [r for r in zx.read_barcodes(image) if r.format == zx.BarcodeFormat.DataMatrix]
    message = parse_element_string(matrix.bytes.decode("ascii"))
    code = decode_label_code(message)
    assert code is not None
    assert (code.gtin, code.instance, code.lot) == (GTIN, "JDIGELAP01", "B-261128-007")


_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x17F, exclude_categories=["Cc"]),
    min_size=1,
    max_size=20,
).filter(str.strip)


@settings(max_examples=60, deadline=None)
@given(
    instance=st.from_regex(r"[A-Z][A-Z0-9]{2,10}(#[0-9]{1,4})?", fullmatch=True),
    lot=_text,
    label_id=_text,
    days=st.integers(min_value=0, max_value=3650),
)
def test_label_payload_round_trip(instance: str, lot: str, label_id: str, days: int) -> None:
    data = label(
        instance=instance,
        lot=lot,
        label_id=label_id,
        expires_on=date(2026, 11, 28) + timedelta(days=days),
    )
    try:
        payload = label_payload(data)
    except LabelError:
        return  # escaped value longer than the AI allows: refused, never cut
    code = decode_label_code(parse_element_string(payload.element_string()))
    assert code is not None
    assert (code.instance, code.lot, code.label_id) == (instance, lot, label_id)
    assert (code.sterilized_on, code.expires_on) == (data.sterilized_on, data.expires_on)
