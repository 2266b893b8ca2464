"""A station fed by the node's serial scanner, in Debian's Chromium: scans made while the page
changes are taken by the next page, not dropped; scans that name no set are said."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from devices.simulators import ScannerSimulator, VirtualSerial
from tests.procs import NodeProcess
from tests.web.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    _login,
    _playwright,
    one_node_dir,
)

pytestmark = pytest.mark.slow

CODES = ["JDIGGRBA#111", "JDIGGRBA#112", "JDIGGRBA#113"]


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[NodeProcess, ScannerSimulator]]:
    data = one_node_dir(tmp_path / "a", "Poste lavage", "sale", "alice", "operator")
    with VirtualSerial(tmp_path / "scanner") as port:
        data.config.write_text(f'[[scanner]]\nport = "{port.path}"\nstation = "sale-1"\n')
        with NodeProcess(data) as node:
            yield node, ScannerSimulator(port)


def _showing(page: Any, code: str) -> None:
    page.wait_for_selector(f'#item[data-set="{code}"]', timeout=15_000)


def test_scans_made_while_the_page_changes_are_followed_in_order(
    station: tuple[NodeProcess, ScannerSimulator],
) -> None:
    node, scanner = station
    sync_playwright = _playwright()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT, locale="fr-FR").new_page()
            shown: list[str] = []
            page.on(
                "framenavigated",
                lambda frame: (
                    shown.append(unquote(frame.url.split("code=")[1].split("&")[0]))
                    if "code=" in frame.url
                    else None
                ),
            )
            _login(page, node.base_url, "alice")
            page.goto(node.base_url + "/station?zone=sale")
            page.wait_for_timeout(500)  # the page has asked for scans once
            scanner.scan(CODES[0])
            _showing(page, CODES[0])
            scanner.scan(CODES[1])
            scanner.scan(CODES[2])  # both at once: the first moves the page, the next follows
            _showing(page, CODES[2])
            assert shown == CODES  # each scan shown, in the order scanned
            scanner.scan("bonjour")  # a plain code: said, and the page stays
            note = page.wait_for_selector("#scan-note:not([hidden])", timeout=15_000)
            assert "bonjour" in note.inner_text()
            assert page.locator(f'#item[data-set="{CODES[2]}"]').count() == 1
            page.reload()  # what was scanned before a reload is not acted on again
            page.wait_for_timeout(1500)
            assert page.locator(f'#item[data-set="{CODES[2]}"]').count() == 1
            # a load: the station opens the load form, the scanner adds the other sets to it
            page.click("#do-receive")
            page.wait_for_selector('#item[data-status="dirty"]')
            page.fill('form:has(#do-wash_load) input[name="machine"]', "LAV-2")
            page.click("#do-wash_load")
            page.wait_for_selector("#new-load")
            page.wait_for_timeout(500)
            scanner.scan(CODES[0])
            scanner.scan(CODES[1])
            for _ in range(100):  # the page's policy allows no evaluated script: poll
                if sorted(page.input_value("#sets").split()) == CODES:
                    break
                page.wait_for_timeout(100)
            assert sorted(page.input_value("#sets").split()) == CODES
            page.click("#record-load")
            page.wait_for_selector(f'#item[data-set="{CODES[2]}"][data-status="washing"]')
            assert "station=sale-1" in page.url  # still following the scanner
            scanner.scan(CODES[0])  # and the station follows the scanner again
            _showing(page, CODES[0])
            assert page.locator('#item[data-status="washing"]').count() == 1
            other = browser.new_context(viewport=VIEWPORT).new_page()
            _login(other, node.base_url, "alice")
            other.goto(node.base_url + "/station?zone=sale")
            other.wait_for_timeout(1500)  # a tab opened afresh: earlier scans were not for it
            assert other.locator("#item").count() == 0
        finally:
            browser.close()
