"""Label as ZPL II for Zebra printers: text, ^BX GS1 DataMatrix, ^BC Code 128."""

from __future__ import annotations

from ._gs1 import AI_SPECS
from ._labels import LabelData, LabelLayout, LabelPlan, plan_label

# ^BX quality 200 escape character, given explicitly: firmware defaults differ (_ or ~).
DM_ESCAPE = "_"
HOST_STATUS_QUERY = b"~HS"


def render_zpl(label: LabelData, layout: LabelLayout | None = None) -> bytes:
    """Return one label as a ZPL II format (ASCII bytes, UTF-8 text through ^CI28 and ^FH)."""
    return zpl_from_plan(plan_label(label, layout))


def zpl_from_plan(plan: LabelPlan) -> bytes:
    """Return the ZPL II format drawing `plan`."""
    lay = plan.layout
    out = [
        "^XA",
        "^CI28",
        f"^PW{lay.dots(lay.width_mm)}",
        f"^LL{lay.dots(lay.height_mm)}",
        "^LH0,0",
    ]
    for line in plan.lines:
        height = lay.dots(line.size_mm)
        width = round(height * (0.95 if line.bold else 0.8))
        out.append(
            f"^FO{lay.dots(line.x_mm)},{lay.dots(line.y_mm)}^A0N,{height},{width}"
            f"^FH\\^FD{zpl_field_text(line.text)}^FS"
        )
    module = max(1, lay.dots(lay.dm_module_mm))
    out.append(
        f"^FO{lay.dots(plan.dm_x_mm)},{lay.dots(plan.dm_y_mm)}"
        f"^BXN,{module},200,0,0,6,{DM_ESCAPE}^FD{zpl_gs1_data(plan)}^FS"
    )
    out.append(
        f"^BY{plan.code128_module_dots}"
        f"^FO{lay.dots(plan.code128_x_mm)},{lay.dots(plan.code128_y_mm)}"
        f"^BCN,{lay.dots(lay.code128_height_mm)},N,N,N^FD>:{plan.code128.replace('>', '><')}^FS"
    )
    out += ["^PQ1", "^XZ"]
    return ("\n".join(out) + "\n").encode("ascii")


def zpl_gs1_data(plan: LabelPlan) -> str:
    """Return the ^BX field data: FNC1 first, FNC1 after each variable-length field."""
    parts = [f"{DM_ESCAPE}1"]
    last = len(plan.payload.elements) - 1
    for i, element in enumerate(plan.payload.elements):
        parts.append(element.ai + element.value.replace(DM_ESCAPE, DM_ESCAPE * 2))
        if i < last and not AI_SPECS[element.ai].fixed:
            parts.append(f"{DM_ESCAPE}1")
    return "".join(parts)


def zpl_field_text(text: str) -> str:
    """Escape text for ^FH\\: '\\', '^', '~', controls and non-ASCII become \\XX UTF-8 hex."""
    out: list[str] = []
    for char in text:
        if " " <= char <= "}" and char not in "\\^":
            out.append(char)
        else:
            out.extend(f"\\{b:02X}" for b in char.encode("utf-8"))
    return "".join(out)
