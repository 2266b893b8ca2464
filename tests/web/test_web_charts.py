"""The dashboard's server-drawn charts stay readable however many machines a department has."""

from __future__ import annotations

import html
import itertools
import re
import xml.etree.ElementTree as ET

from aiohttp.test_utils import TestClient

from node import Node
from node._auth import Principal
from node._web_support import CHAR_W, ROW_H, row_chart
from tests.web.helpers import PASSWORD, csrf_of

OP = Principal("op", "operator")
FONT_PX = 11  # svg .tick in app.css
WASHERS = [f"LAV-{n:02d}" for n in range(1, 25)]
STERILIZERS = [f"AUTOCLAVE-BLOC-OPERATOIRE-{n:02d}" for n in range(1, 17)]


async def cycles_on_every_machine(node: Node) -> None:
    """One to three loads, each with its cycle, on every machine."""
    for n, machine in enumerate([*WASHERS, *STERILIZERS]):
        kind = "wash" if machine in WASHERS else "steri"
        for load in range(1 + n % 3):
            body = {"machine": machine, "program": "P", "sets": [f"S#{n}-{load}"]}
            await node.async_submit({"type": f"{kind}.loaded", **body}, OP)
            cycle = {"machine": machine, "cycle_no": str(load), "result": "pass"}
            await node.async_record({"type": f"{kind}.cycle", **cycle}, OP)


def cycles_chart(page: str) -> ET.Element:
    found = re.search(r'<svg class="chart rows".*?</svg>', page, re.S)
    assert found is not None, page[:2000]
    return ET.fromstring(found.group(0))


def label_boxes(svg: ET.Element) -> list[tuple[str, float, float, float, float]]:
    """(text, left, top, right, bottom) of each row label, from its anchor and font size."""
    boxes = []
    for text in svg.iter("text"):
        if text.get("text-anchor") != "end":
            continue
        right, baseline = float(text.get("x", 0)), float(text.get("y", 0))
        label = text.text or ""
        boxes.append((label, right - CHAR_W * len(label), baseline - FONT_PX, right, baseline + 3))
    return boxes


def overlap(
    a: tuple[str, float, float, float, float], b: tuple[str, float, float, float, float]
) -> bool:
    return a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]


async def test_forty_machines_get_forty_labels_that_do_not_overlap(
    client: TestClient, node: Node
) -> None:
    await cycles_on_every_machine(node)
    page = await client.get("/login")
    resp = await client.post(
        "/login", data={"csrf": csrf_of(await page.text()), "login": "chef", "password": PASSWORD}
    )
    assert resp.status == 200
    svg = cycles_chart(html.unescape(await (await client.get("/dashboard/body")).text()))

    boxes = label_boxes(svg)
    # washers first, then sterilizers; long names cut, the tooltip of the row says them whole
    assert [b[0] for b in boxes] == [*WASHERS, *(f"AUTOCLAVE…TOIRE-{s[-2:]}" for s in STERILIZERS)]
    titles = [t.text or "" for g in svg.iter("g") for t in g.iter("title")]
    assert [t.rsplit(":", 1)[0] for t in titles] == [*WASHERS, *STERILIZERS]
    for i, box in enumerate(boxes):
        assert all(not overlap(box, other) for other in boxes[i + 1 :]), box
    _, _, width, height = (float(v) for v in svg.get("viewBox", "").split())
    bars = [r for g in svg.iter("g") for r in g.iter("rect")]
    assert len(bars) == len(boxes)
    for box, bar in zip(boxes, bars, strict=True):
        assert box[1] >= 0  # not cut at the left
        assert box[3] < float(bar.get("x", 0))  # the label ends before its bar
        assert float(bar.get("x", 0)) + float(bar.get("width", 0)) <= width
        assert box[4] <= height
    assert {bar.get("class") for bar in bars[: len(WASHERS)]} == {"k-wash"}
    assert {bar.get("class") for bar in bars[len(WASHERS) :]} == {"k-steri"}
    assert [v.text for v in svg.iter("text") if v.get("class") == "val"][:3] == ["1", "2", "3"]


def test_rows_are_one_font_height_apart_at_least() -> None:
    svg = ET.fromstring(row_chart([(f"M{n}", "k-wash", n) for n in range(50)], title="t"))
    baselines = [float(t.get("y", 0)) for t in svg.iter("text") if t.get("text-anchor") == "end"]
    assert len(baselines) == 50
    gaps = {b - a for a, b in itertools.pairwise(baselines)}
    assert gaps == {ROW_H}
    assert ROW_H >= FONT_PX + 4


def test_row_chart_escapes_its_labels() -> None:
    svg = row_chart([("<b>", "k-wash", 1)], [("A&B", "k-wash")], title="<t>")
    assert "&lt;b&gt;" in svg
    assert "A&amp;B" in svg
    assert "&lt;t&gt;" in svg
    assert "http" not in svg
