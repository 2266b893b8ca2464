"""The live dashboard in Debian's Chromium: a change elsewhere redraws it, but not while the
head is deciding on an anomaly (what they typed or chose would be thrown away)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import NodeProcess, create_token
from tests.web.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    _login,
    _playwright,
    one_node_dir,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[NodeProcess, str]]:
    data = one_node_dir(tmp_path / "a", "Bureau", "sterile", "hugo", "head")
    token = create_token(data, "operator")
    with NodeProcess(data) as process:
        yield process, token


def _record(node: NodeProcess, token: str, body: dict[str, str]) -> None:
    request = urllib.request.Request(
        node.base_url + "/api/events",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201


def test_a_comment_being_typed_survives_a_live_change(node: tuple[NodeProcess, str]) -> None:
    process, token = node
    _record(process, token, {"type": "set.dispatched", "set": "S001", "to": "Bloc"})
    sync_playwright = _playwright()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT, locale="fr-FR").new_page()
            _login(page, process.base_url, "hugo")
            page.goto(process.base_url + "/dashboard")
            page.wait_for_selector("#live-dot.on")
            page.fill('#dash input[name="comment"]', "vu avec le bloc")
            page.locator("#dash h1, body").first.click(position={"x": 5, "y": 5})  # focus away
            _record(process, token, {"type": "set.dispatched", "set": "S002", "to": "Bloc"})
            page.wait_for_timeout(2500)  # the change arrived; the redraw waits
            assert page.input_value('#dash input[name="comment"] >> nth=0') == "vu avec le bloc"
            assert "Anomalies ouvertes (1)" in page.inner_text("#dash")  # not redrawn yet
            page.fill('#dash input[name="comment"] >> nth=0', "")  # given up: redraw goes on
            page.locator("body").click(position={"x": 5, "y": 5})
            for _ in range(60):
                if "Anomalies ouvertes (2)" in page.inner_text("#dash"):
                    break
                page.wait_for_timeout(250)
            assert "Anomalies ouvertes (2)" in page.inner_text("#dash")
        finally:
            browser.close()
