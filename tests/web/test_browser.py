"""Three real nodes, Debian's Chromium driven by Playwright: a set from reception to release.

Log in on A's station (zone sale) and receive and wash a set; on B's station inspect,
load, sterilize and release it (a releaser); watch C's dashboard change without reload.
Screenshots of each page (1366x768) go to docs/screenshots/.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import STRICT
from tests.node.test_cluster import join_node
from tests.procs import REPO_ROOT, NodeProcess, init_node_dir, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("STERIMESH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "motdepasse-test"
SYNC_WAIT_MS = 60_000
USERS = {"alice": "operator", "rita": "releaser", "hugo": "head", "ines": "admin"}


def _playwright() -> Any:
    """The sync Playwright API and Debian's Chromium; fails under STERIMESH_STRICT=1, else skips."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install playwright)"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    if problem is not None:
        if STRICT:
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[NodeProcess], str]]:
    sample = tmp_path / "sample"
    run_cli("sample-data", "--out", str(sample), "--scale", "small")
    with (sample / "set_instances.csv").open(encoding="utf-8-sig") as fh:
        set_code = next(csv.DictReader(fh, delimiter=";"))["instance"]
    a_dir = init_node_dir(tmp_path / "a", "Poste lavage", "sale")
    run_cli("import", "--data", str(a_dir.root), str(sample))
    for login, role in USERS.items():  # before the joins: every node knows them
        run_cli(
            "user",
            "add",
            "--data",
            str(a_dir.root),
            "--login",
            login,
            "--role",
            role,
            stdin=PASSWORD + "\n",
        )
    nodes = [NodeProcess(a_dir).start()]
    try:
        a = nodes[0]
        assert a.sync_address is not None
        b_dir = join_node(a, tmp_path / "b", "Poste propre", "propre")
        c_dir = join_node(a, tmp_path / "c", "Bureau stérile", "sterile")
        nodes.append(NodeProcess(b_dir, peers=[a.sync_address]).start())
        assert nodes[1].sync_address is not None
        nodes.append(NodeProcess(c_dir, peers=[a.sync_address, nodes[1].sync_address]).start())
        yield nodes, set_code
    finally:
        for node in nodes:
            node.close()


def _login(page: Any, base: str, user: str, shot: str | None = None) -> None:
    page.goto(base + "/login")
    page.fill("#login", user)
    page.fill("#password", PASSWORD)
    if shot:
        page.screenshot(path=str(SCREENSHOTS / shot))
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def _scan(page: Any, base: str, zone: str, code: str) -> None:
    """Type the code as a keyboard-wedge scanner does: characters, then Enter."""
    page.goto(f"{base}/station?zone={zone}")
    page.locator("#code").press_sequentially(code)
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#item[data-set="{code}"]')


def _do(page: Any, action: str, status: str) -> None:
    page.click(f"#do-{action}")
    page.wait_for_selector(f'#item[data-status="{status}"]')
    assert page.locator("#flash.ok").count() == 1, page.locator("#flash").inner_text()


def _wait_on_station(page: Any, base: str, zone: str, code: str, action: str) -> None:
    """Scan again until replication brought the set's last step to this node."""
    _scan(page, base, zone, code)
    for _ in range(SYNC_WAIT_MS // 500):
        if page.locator(f"#do-{action}").count():
            return
        page.wait_for_timeout(500)
        page.reload()
    pytest.fail(f"the step {action} never became possible on {base}")


def test_a_set_through_two_stations_appears_live_on_the_third_dashboard(
    cluster: tuple[list[NodeProcess], str],
) -> None:
    sync_playwright = _playwright()
    (a, b, c), code = cluster
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            external: list[str] = []
            hosts = {n.base_url for n in (a, b, c)}

            def new_page() -> Any:
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.set_default_timeout(SYNC_WAIT_MS)
                page.on(
                    "request",
                    lambda r: (
                        None if any(r.url.startswith(h) for h in hosts) else external.append(r.url)
                    ),
                )
                return page

            # A, zone sale: an operator receives and washes the set
            station_a = new_page()
            _login(station_a, a.base_url, "alice", "login.png")
            assert station_a.url.endswith("/station")
            _scan(station_a, a.base_url, "sale", code)
            _do(station_a, "receive", "dirty")
            station_a.screenshot(path=str(SCREENSHOTS / "station-sale.png"))
            _do(station_a, "wash_load", "washing")
            _do(station_a, "wash_pass", "washed")

            # C: the head's dashboard, opened once and never reloaded
            dashboard = new_page()
            _login(dashboard, c.base_url, "hugo")
            assert dashboard.url.endswith("/dashboard")
            dashboard.evaluate("window.__notReloaded = true")

            # B: a releaser inspects, sterilizes and releases
            station_b = new_page()
            _login(station_b, b.base_url, "rita")
            _wait_on_station(station_b, b.base_url, "propre", code, "inspect_ok")
            station_b.screenshot(path=str(SCREENSHOTS / "station-propre.png"))
            _do(station_b, "inspect_ok", "packed")
            _scan(station_b, b.base_url, "sterile", code)
            _do(station_b, "steri_load", "in_sterilizer")
            _do(station_b, "steri_pass", "sterilized")
            station_b.screenshot(path=str(SCREENSHOTS / "station-sterile.png"))

            live = f'#recent tr[data-set="{code}"] [data-status="%s"]'
            dashboard.wait_for_selector(live % "sterilized")
            _do(station_b, "release", "sterile")
            dashboard.wait_for_selector(live % "sterile")
            assert dashboard.evaluate("window.__notReloaded") is True
            dashboard.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

            # the other pages, as the releaser and an administrator see them
            station_b.goto(b.base_url + "/loads")
            station_b.screenshot(path=str(SCREENSHOTS / "loads.png"), full_page=True)
            station_b.click('a[href^="/loads/"]:not([href^="/loads/new"]) >> nth=-1')
            load = station_b.url.rsplit("/", 1)[1]
            station_b.screenshot(path=str(SCREENSHOTS / "load.png"), full_page=True)
            station_b.goto(f"{b.base_url}/recall?lot={load}")
            assert code in station_b.content()
            station_b.screenshot(path=str(SCREENSHOTS / "recall.png"), full_page=True)
            station_b.goto(b.base_url + "/reference")
            station_b.screenshot(path=str(SCREENSHOTS / "reference.png"))
            admin = new_page()
            _login(admin, c.base_url, "ines")
            admin.goto(c.base_url + "/admin")
            admin.screenshot(path=str(SCREENSHOTS / "admin.png"), full_page=True)
            assert external == []
        finally:
            browser.close()
