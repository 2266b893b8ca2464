"""The load form in Debian's Chromium: each set scanned into the list shows at once under it,
with its status and what recording would warn about, before anything is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.procs import node_status
from tests.web.test_browser import _login, alice_at_a_station

pytestmark = pytest.mark.slow


def test_scanned_sets_show_under_the_list_before_the_load_is_recorded(tmp_path: Path) -> None:
    with alice_at_a_station(tmp_path) as (node, context):
        page = context.new_page()
        _login(page, node.base_url, "alice")
        page.goto(node.base_url + "/loads/new?kind=wash")
        page.fill("#machine", "LAV-1")
        page.click("#sets")
        for code in ("JDIGGRBA#111", "JORTHO#7"):  # a keyboard-wedge scanner: code, Enter
            page.keyboard.type(code)
            page.keyboard.press("Enter")
        page.wait_for_selector('#scanned li[data-set="JORTHO#7"]', timeout=10_000)
        lines = page.locator("#scanned li").all_inner_texts()
        assert [line.split()[0] for line in lines] == ["JDIGGRBA#111", "JORTHO#7"]
        count = page.locator("#scanned-count").inner_text()
        assert (
            count == "2 sets scanned · no reference data imported yet: set names are not known here"
        )
    assert node_status(node.data)["events"] == 0  # shown, nothing recorded


def test_the_other_kinds_tab_takes_the_sets_scanned_so_far(tmp_path: Path) -> None:
    """Sets scanned onto the washer form by mistake go to the sterilizer form with its tab."""
    with alice_at_a_station(tmp_path) as (node, context):
        page = context.new_page()
        _login(page, node.base_url, "alice")
        page.goto(node.base_url + "/loads/new?kind=wash&zone=sale")
        page.click("#sets")
        for code in ("JDIGGRBA#111", "JORTHO#7"):
            page.keyboard.type(code)
            page.keyboard.press("Enter")
        page.click("nav.zones a.zone-tab:not(.current)")
        page.wait_for_url("**/loads/new?kind=steri*", timeout=10_000)
        assert page.input_value("#sets").split() == ["JDIGGRBA#111", "JORTHO#7"]
        assert 'name="zone" value="sale"' in page.content()
    assert node_status(node.data)["events"] == 0
