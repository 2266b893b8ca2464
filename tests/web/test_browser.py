"""Three real nodes, Debian's Chromium driven by Playwright: a set from reception to release.

An administrator gives the releaser a badge and a PIN on A; log in on A's station (zone
sale) and receive and wash a set; on B the releaser logs in with the badge (a keyboard-wedge
reader types it, then Enter) and PIN, inspects, loads, sterilizes and releases the set,
signing with the PIN; watch C's dashboard change without reload. No card of any page
scrolls sideways at 1366x768; screenshots of each page go to docs/screenshots/.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node import DataDir
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
BADGE = "0004521877"
PIN = "2580"


SIDEWAYS = """Array.from(document.querySelectorAll('main .card'))
    .filter((card) => card.scrollWidth > card.clientWidth)
    .map((card) => (card.querySelector('h2') || card).textContent.trim())
    .concat(document.documentElement.scrollWidth > window.innerWidth ? ['page'] : [])"""
"""The cards of a page (by title) whose content is wider than the card, and the page itself."""


def one_node_dir(path: Path, name: str, zone: str, login: str, role: str) -> DataDir:
    """A new one-node cluster with one person who logs in with PASSWORD."""
    data = init_node_dir(path, name, zone)
    run_cli(
        "user", "add", "--data", str(data.root), "--login", login, "--role", role,
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    return data


@contextlib.contextmanager
def alice_at_a_station(tmp_path: Path, config: str = "") -> Iterator[tuple[NodeProcess, Any]]:
    """A one-node cluster (node.toml `config`) whose operator alice logs in with PASSWORD,
    running, and a browser context of Debian's Chromium in English: (node, context)."""
    data = one_node_dir(tmp_path / "a", "Poste lavage", "sale", "alice", "operator")
    if config:
        data.config.write_text(config)
    sync_playwright = _playwright()
    with NodeProcess(data) as node, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield node, browser.new_context(viewport=VIEWPORT, locale="en-GB")
        finally:
            browser.close()


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
    page.click("#password-submit")
    page.wait_for_load_state()


def _give_badge(page: Any, base: str, user: str) -> None:
    """The administrator scans a new badge for `user` and types the PIN twice."""
    page.goto(base + "/admin")
    page.select_option("#badge-user", user)
    page.locator("#badge-code").press_sequentially(BADGE)
    page.keyboard.press("Enter")  # the reader's Enter moves on to the PIN, it does not submit
    assert page.evaluate("document.activeElement.id") == "badge-pin"
    page.keyboard.type(PIN)
    page.fill("#badge-pin2", PIN)
    page.click("#badge-save")
    page.wait_for_selector(f'tr[data-user="{user}"][data-badge="yes"][data-pin="yes"]')
    assert page.locator("#flash.ok").count() == 1


def _badge_login(page: Any, base: str) -> None:
    """Scan the badge (characters, then Enter), then type the PIN and Enter."""
    for _ in range(SYNC_WAIT_MS // 500):  # the badge reaches this node by replication
        page.goto(base + "/login")
        if page.locator("#badge").count():
            break
        page.wait_for_timeout(500)
    assert page.evaluate("document.activeElement.id") == "badge"
    page.keyboard.type(BADGE)
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "pin"
    page.keyboard.type(PIN)
    page.keyboard.press("Enter")
    page.wait_for_url("**/station")


def _shot(page: Any, name: str, *, full_page: bool = False) -> None:
    """Screenshot a page after checking that nothing on it scrolls sideways at 1366x768."""
    assert page.evaluate(SIDEWAYS) == [], f"{name}: cards scroll sideways at 1366x768"
    page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)


def _scan(page: Any, base: str, zone: str, code: str) -> None:
    """Type the code as a keyboard-wedge scanner does: characters, then Enter."""
    page.goto(f"{base}/station?zone={zone}")
    page.locator("#code").press_sequentially(code)
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#item[data-set="{code}"]')


def _do(
    page: Any, action: str, status: str, confirm: str | None = None, cycle_no: str | None = None
) -> None:
    if cycle_no is not None:  # read off the machine's printout
        page.fill(f'form:has(#do-{action}) input[name="cycle_no"]', cycle_no)
    if confirm is not None:
        page.fill(f"#confirm-{action}", confirm)
    page.click(f"#do-{action}")
    page.wait_for_selector(f'#item[data-status="{status}"]')
    assert page.locator("#flash.ok").count() == 1, page.locator("#flash").inner_text()


def _load(page: Any, action: str, machine: str, status: str) -> None:
    """A load step: the station opens the load form with the set on it; the load is recorded
    there and the station shows the set again."""
    page.fill(f'form:has(#do-{action}) input[name="machine"]', machine)
    page.click(f"#do-{action}")
    page.wait_for_selector("#new-load")
    page.click("#record-load")
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
                page = browser.new_context(viewport=VIEWPORT, locale="fr-FR").new_page()
                page.set_default_timeout(SYNC_WAIT_MS)
                page.on(
                    "request",
                    lambda r: (
                        None if any(r.url.startswith(h) for h in hosts) else external.append(r.url)
                    ),
                )
                return page

            # A: the administrator gives the releaser a badge and a PIN
            admin = new_page()
            _login(admin, a.base_url, "ines")
            _give_badge(admin, a.base_url, "rita")

            # A, zone sale: an operator receives and washes the set
            station_a = new_page()
            _login(station_a, a.base_url, "alice", "login.png")
            assert station_a.url.endswith("/station")
            _scan(station_a, a.base_url, "sale", code)
            _do(station_a, "receive", "dirty")
            _shot(station_a, "station-sale.png")
            _load(station_a, "wash_load", "LAV-1", "washing")
            _do(station_a, "wash_pass", "washed", cycle_no="4711")

            # C: the head's dashboard, opened once and never reloaded
            dashboard = new_page()
            _login(dashboard, c.base_url, "hugo")
            assert dashboard.url.endswith("/dashboard")
            dashboard.evaluate("window.__notReloaded = true")

            # B: a releaser logs in with the badge, inspects, sterilizes and releases
            station_b = new_page()
            _badge_login(station_b, b.base_url)
            _wait_on_station(station_b, b.base_url, "propre", code, "inspect_ok")
            _shot(station_b, "station-propre.png")
            _do(station_b, "inspect_ok", "packed")
            _scan(station_b, b.base_url, "sterile", code)
            _load(station_b, "steri_load", "STE-1", "in_sterilizer")
            _do(station_b, "steri_pass", "sterilized", cycle_no="815")
            _shot(station_b, "station-sterile.png")

            live = f'#recent tr[data-set="{code}"] [data-status="%s"]'
            dashboard.wait_for_selector(live % "sterilized")
            _do(station_b, "release", "sterile", confirm=PIN)
            dashboard.wait_for_selector(live % "sterile")
            assert dashboard.evaluate("window.__notReloaded") is True
            dashboard.wait_for_selector("#loads td.code")
            _shot(dashboard, "dashboard.png", full_page=True)

            # the other pages, as the releaser and an administrator see them
            station_b.goto(b.base_url + "/loads")
            _shot(station_b, "loads.png", full_page=True)
            station_b.click('a[href^="/loads/"]:not([href^="/loads/new"]) >> nth=-1')
            load = station_b.url.rsplit("/", 1)[1]
            _shot(station_b, "load.png", full_page=True)
            station_b.goto(f"{b.base_url}/recall?lot={load}")
            assert code in station_b.content()
            _shot(station_b, "recall.png", full_page=True)
            station_b.goto(b.base_url + "/reference")
            _shot(station_b, "reference.png")
            admin.goto(a.base_url + "/admin")
            _shot(admin, "admin.png", full_page=True)
            assert external == []
        finally:
            browser.close()
