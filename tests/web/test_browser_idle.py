"""A shared station nobody uses locks itself, in Debian's Chromium: someone typing keeps it
open; once locked, its session is over and logging in leads back to the same page; a tab left
open does not lock out the tab in use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.test_browser import PASSWORD, _login, alice_at_a_station

pytestmark = pytest.mark.slow


def test_a_station_nobody_uses_locks_itself_and_leads_back(tmp_path: Path) -> None:
    with alice_at_a_station(tmp_path, "[web]\nidle_minutes = 0.1\n") as (node, context):  # 6 s
        page = context.new_page()
        _login(page, node.base_url, "alice")
        station = node.base_url + "/station?zone=sale"
        page.goto(station)
        for _ in range(8):  # 12 s of someone typing: twice the idle time, still open
            page.wait_for_timeout(1500)
            page.keyboard.press("Shift")
        assert page.url == station
        page.wait_for_url("**/login?*idle=1*", timeout=15_000)  # then nobody: locked
        assert "locked itself after 6 s without use" in page.locator("#login-idle").inner_text()
        page.goto(station)  # the session is over, not only the screen
        assert "/login" in page.url
        page.fill("#login", "alice")
        page.fill("#password", PASSWORD)
        page.click("#password-submit")
        page.wait_for_load_state()
        assert page.url == station  # logging in leads back to the station


def test_a_tab_left_open_does_not_lock_the_one_in_use(tmp_path: Path) -> None:
    with alice_at_a_station(tmp_path, "[web]\nidle_minutes = 0.1\n") as (node, context):  # 6 s
        left = context.new_page()
        _login(left, node.base_url, "alice")
        left.goto(node.base_url + "/loads")
        used = context.new_page()
        used.goto(node.base_url + "/station?zone=sale")
        for _ in range(9):  # 9 s of typing in one tab: the other, untouched, stays open
            used.wait_for_timeout(1000)
            used.keyboard.press("Shift")
        assert left.url.endswith("/loads")
        assert used.url.endswith("/station?zone=sale")
        used.wait_for_url("**/login?*idle=1*", timeout=15_000)  # then nobody: both lock
        left.wait_for_url("**/login?*", timeout=15_000)
