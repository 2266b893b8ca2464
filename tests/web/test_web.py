"""The web UI in process: login, sessions, CSRF, roles, station steps, dashboard, offline."""

from __future__ import annotations

import asyncio
import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

import crdt_model as cm
from node import Node
from node import _web_support as support
from node._auth import ADMIN_MESSAGES
from node._backup import FAILURE_REASONS
from node._web import CANNOT_RECORD
from node._web_dash import BACKUP_STATES
from node._web_station import STEPS
from tests.web.helpers import PASSWORD, ROLES, csrf_of, external_references

SET = "JDIGGRBA#111"


async def login(client: TestClient, user: str, password: str = PASSWORD) -> tuple[int, str]:
    page = await client.get("/login")
    token = csrf_of(await page.text())
    resp = await client.post(
        "/login", data={"csrf": token, "login": user, "password": password, "next": "/"}
    )
    return resp.status, html.unescape(await resp.text())


async def step(client: TestClient, action: str, zone: str, code: str = SET, **fields: str) -> str:
    page = await client.get("/station", params={"zone": zone, "code": code})
    assert page.status == 200
    resp = await client.post(
        "/station",
        data={
            "csrf": csrf_of(await page.text()),
            "zone": zone,
            "code": code,
            "action": action,
            **fields,
        },
    )
    assert resp.status == 200
    if action in {"wash_load", "steri_load"}:  # the station opens the load form, set on it
        assert resp.url.path == "/loads/new"
        resp = await record_load_form(client, await resp.text())
    return html.unescape(await resp.text())


async def record_load_form(client: TestClient, page: str, **changes: str) -> ClientResponse:
    """Post the load form as the page shows it (with `changes`), as a person would."""
    form = dict(re.findall(r'<input[^>]*name="(\w+)" value="([^"]*)"', page))
    form["sets"] = html.unescape(re.search(r'<textarea[^>]*name="sets"[^>]*>([^<]*)<', page)[1])
    form.update(changes)
    resp = await client.post("/loads/new", data=form)
    assert resp.status == 200, await resp.text()
    return resp


def status_of(node: Node, code: str = SET) -> str:
    return node.trace.fold.set_status(code).status


async def test_login_page_is_french_by_default(client: TestClient) -> None:
    resp = await client.get("/login")
    text = await resp.text()
    assert resp.status == 200
    assert '<html lang="fr">' in text
    assert "Mot de passe" in text


async def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/station", "/dashboard", "/dashboard/body", "/dashboard/stream"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"].startswith("/login")


async def test_bad_password_is_refused_plainly(client: TestClient) -> None:
    status, text = await login(client, "op", "wrong password")
    assert status == 401
    assert "Utilisateur inconnu ou mot de passe erroné." in text
    assert "sm_session" not in {c.key for c in client.session.cookie_jar}


async def test_unknown_user_is_refused(client: TestClient) -> None:
    status, _ = await login(client, "nobody")
    assert status == 401


async def test_login_is_rate_limited_per_login(client: TestClient) -> None:
    for _ in range(support.LOGIN_FAILURES):
        status, _ = await login(client, "op", "wrong password")
        assert status == 401
    status, text = await login(client, "op")
    assert status == 429
    assert "Trop d'essais" in text
    status, _ = await login(client, "rel")  # another login from the same place still works
    assert status == 200


def test_rate_limit_window_ends() -> None:
    now = [1000.0]
    limiter = support.LoginLimiter(clock=lambda: now[0])
    for _ in range(support.LOGIN_FAILURES):
        limiter.failed("op", "1.2.3.4")
    assert limiter.blocked("op", "1.2.3.4")
    assert not limiter.blocked("op", "5.6.7.8")
    now[0] += support.LOGIN_WINDOW_S + 1
    assert not limiter.blocked("op", "1.2.3.4")


async def test_login_form_needs_its_csrf_token(client: TestClient) -> None:
    await client.get("/login")
    resp = await client.post("/login", data={"csrf": "forged", "login": "op", "password": PASSWORD})
    assert resp.status == 401
    assert "sm_session" not in {c.key for c in client.session.cookie_jar}


async def test_session_cookie_is_httponly_and_strict(client: TestClient) -> None:
    page = await client.get("/login")
    resp = await client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "login": "op", "password": PASSWORD},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/station"
    cookie = resp.cookies["sm_session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"


async def test_forged_session_is_ignored(client: TestClient) -> None:
    await login(client, "op")
    jar = client.session.cookie_jar
    value = next(c.value for c in jar if c.key == "sm_session")
    body, mac = value.split(".")
    forged = json.loads(support.base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["u"] = "adm"
    raw = support.base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    jar.clear()
    jar.update_cookies({"sm_session": f"{raw}.{mac}"}, client.make_url("/"))
    resp = await client.get("/dashboard", allow_redirects=False)
    assert resp.status == 303


async def test_post_without_csrf_is_refused_and_records_nothing(
    client: TestClient, node: Node
) -> None:
    await login(client, "op")
    resp = await client.post(
        "/station", data={"zone": "sale", "code": SET, "action": "receive", "csrf": "nope"}
    )
    assert resp.status == 403
    assert node.index.count == 0


async def test_roles_are_enforced_on_the_server(client: TestClient, node: Node) -> None:
    await login(client, "chef")
    resp = await client.get("/station")
    assert resp.status == 403
    assert (await client.get("/dashboard")).status == 200
    await client.post(
        "/logout", data={"csrf": csrf_of(await (await client.get("/dashboard")).text())}
    )
    await login(client, "op")
    for action in ("receive", "wash_load", "wash_pass"):
        await step(client, action, "sale", machine="LAV-1", program="P", cycle_no="1")
    await step(client, "inspect_ok", "propre")
    await step(client, "steri_load", "sterile", machine="STE-1", program="P")
    await step(client, "steri_pass", "sterile", cycle_no="2")
    page = await (await client.get("/station", params={"zone": "sterile", "code": SET})).text()
    assert 'id="badge-release"' in page  # a releaser may sign here, with badge and PIN
    text = await step(client, "release", "sterile")  # not the operator, without them
    assert "Votre rôle ne permet pas cette étape." in text
    assert status_of(node) == "sterilized"


async def test_a_set_goes_from_reception_to_dispatch(client: TestClient, node: Node) -> None:
    await login(client, "rel")
    text = await step(client, "receive", "sale")
    assert "Boîte réceptionnée." in text
    assert status_of(node) == "dirty"
    text = await step(client, "wash_load", "sale", machine="LAV-1", program="INSTRU")
    assert status_of(node) == "washing"
    await step(client, "wash_pass", "sale", cycle_no="101")
    assert status_of(node) == "washed"
    text = await (await client.get("/station", params={"zone": "sale", "code": SET})).text()
    assert 'id="elsewhere"' in text
    await step(client, "inspect_ok", "propre", packaging="CONTENEUR")
    assert status_of(node) == "packed"
    await step(client, "steri_load", "sterile", machine="STE-1", program="NORMAL 134")
    await step(client, "steri_pass", "sterile", cycle_no="202")
    assert status_of(node) == "sterilized"
    text = await step(client, "release", "sterile")
    assert "Mot de passe erroné : rien n'a été enregistré." in text  # the release is signed
    assert status_of(node) == "sterilized"
    text = await step(client, "release", "sterile", confirm=PASSWORD)
    assert "Charge libérée." in text
    assert status_of(node) == "sterile"


async def test_another_zones_station_says_where_this_pc_stands(
    client: TestClient, node: Node
) -> None:
    await login(client, "op")
    assert node.zone == "sale"
    own = await (await client.get("/station", params={"zone": "sale"})).text()
    assert 'id="zone-elsewhere"' not in own
    assert 'class="zone-sale"' in own  # the band of the station's zone colour
    other = html.unescape(await (await client.get("/station", params={"zone": "sterile"})).text())
    assert "Ce poste est en zone Sale ; cette page est l'écran de la zone Stérile" in other
    assert '<a href="/station?zone=sale">Revenir à la zone Sale</a>' in other
    opened = await client.get("/loads/new", params={"kind": "steri", "zone": "sterile"})
    form = html.unescape(await opened.text())
    assert 'class="zone-sterile"' in form  # the load form of that station too
    assert "Ce poste est en zone Sale ; ce formulaire vient de l'écran de la zone Stérile" in form
    mine = await client.get("/loads/new", params={"kind": "wash", "zone": "sale"})
    assert 'id="zone-elsewhere"' not in await mine.text()


async def test_the_load_forms_tabs_keep_the_sets_scanned_and_the_station(
    client: TestClient, node: Node
) -> None:
    """Scanned onto the washer form by mistake: the sterilizer tab takes the list along (the
    machine and program are the other kind's)."""
    await login(client, "op")
    query = {"kind": "wash", "zone": "sale", "machine": "LAV-2", "sets": "JDIGGRBA#111 JORTHO#7"}
    page = html.unescape(await (await client.get("/loads/new", params=query)).text())
    tab = re.search(r'<a class="zone-tab" href="([^"]+)">', page)
    assert tab is not None
    url = urlsplit(tab.group(1))
    assert url.path == "/loads/new"
    assert parse_qs(url.query) == {
        "kind": ["steri"],
        "sets": ["JDIGGRBA#111\nJORTHO#7"],
        "zone": ["sale"],
    }
    other = html.unescape(await (await client.get(tab.group(1))).text())
    assert "JDIGGRBA#111\nJORTHO#7" in other  # on the sterilizer form's list
    assert re.search(r'<input id="machine" name="machine" value=""', other)


async def test_a_refused_step_is_said_in_the_operator_language(
    client: TestClient, node: Node
) -> None:
    await login(client, "rel")
    await client.get("/lang/nl")
    text = await step(client, "release", "sterile", code="NOPE#1", confirm=PASSWORD)
    assert "De stap werd geweigerd." in text
    assert node.index.count == 0


async def test_dashboard_shows_sets_and_charts(client: TestClient) -> None:
    await login(client, "rel")
    await step(client, "receive", "sale")
    await client.get("/lang/en")
    text = await (await client.get("/dashboard")).text()
    assert f'data-set="{SET}"' in text
    assert 'data-status="dirty"' in text
    assert text.count("<svg") == 2
    assert "Sets by status and zone" in text


async def test_stream_says_changed_after_an_event(client: TestClient, node: Node) -> None:
    await login(client, "chef")
    resp = await client.get("/dashboard/stream")
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert b"hello" in await resp.content.readuntil(b"\n\n")
    await node.async_submit({"type": "note", "text": "x"}, support_principal())
    while True:
        chunk = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 30)
        if b"event: changed" in chunk:
            break
    resp.close()


def support_principal() -> Any:
    from node._auth import Principal

    return Principal("op", "operator")


async def test_no_page_refers_outside_the_node(client: TestClient) -> None:
    await login(client, "rel")
    await step(client, "receive", "sale")
    pages = [
        "/login",
        "/station",
        f"/station?zone=sale&code={SET}",
        "/dashboard",
        "/dashboard/body",
        "/static/app.css",
        "/static/station.js",
        "/static/dashboard.js",
    ]
    for path in pages:
        resp = await client.get(path)
        assert resp.status == 200, path
        text = await resp.text()
        assert external_references(text) == [], path
    await client.post(
        "/logout", data={"csrf": csrf_of(await (await client.get("/station")).text())}
    )
    resp = await client.get("/login")
    assert external_references(await resp.text()) == []


RUNTIME_MESSAGES = {
    CANNOT_RECORD,
    "Unknown user or wrong password.",
    "Unknown badge or wrong PIN.",
    "Too many failed attempts: wait 5 minutes and try again.",
    "Wrong PIN: nothing was recorded.",
    "Wrong password: nothing was recorded.",
    "The step was refused.",
    "The decision was refused.",
    "Decision recorded.",
    "User disabled: their sessions end at once.",
    "User enabled.",
    "Token revoked.",
    "An administrator cannot disable their own login.",
    "The change was refused.",
    "This page does not exist, or what it showed is no longer here.",
    "What was sent is too large.",
    "The request could not be understood: go back and try again.",
}


def test_every_message_is_in_every_catalog() -> None:
    catalogs = support.load_catalogs()
    templates = Path(support.__file__).parent / "templates"
    used = set(RUNTIME_MESSAGES)
    for path in templates.glob("*.html"):
        found = re.findall(r'_\(\s*"([^"]+)"', path.read_text(encoding="utf-8"))
        used |= {m for m in found if not m.endswith(".") or " " in m}  # not a key prefix
    for step_ in STEPS.values():
        used |= {step_.label, step_.done, *(f"field.{f}" for f in step_.fields)}
    used |= {f"status.{s}" for s in cm.SET_STATES} | {f"role.{r}" for r in ROLES.values()}
    used |= {f"zone.{z}" for z in cm.ZONES}
    used |= {f"event.{t}" for t in cm.EVENT_TYPES}
    used |= {f"backup.{s}" for s in BACKUP_STATES}
    used |= {f"backup.error.{r}" for r in FAILURE_REASONS}
    for lang, catalog in catalogs.items():
        missing = sorted(used - set(catalog))
        assert missing == [], lang
    assert set(catalogs["fr"]) == set(catalogs["nl"]) == set(catalogs["en"])


def test_every_refusal_and_warning_code_is_in_every_catalog() -> None:
    """Each rule code reads in French, Dutch and English, with the English text's parameters."""
    from crdt_model._anomalies import WHY

    catalogs = support.load_catalogs()
    for code, english in cm.PROBLEMS.items():
        wanted = set(re.findall(r"{(\w+)}", english))
        for lang, catalog in catalogs.items():
            text = catalog.get(f"rule.{code}")
            assert text, (lang, code)
            assert set(re.findall(r"{(\w+)}", text)) == wanted, (lang, code)
    for why in WHY:
        for lang, catalog in catalogs.items():
            assert catalog.get(f"why.{why}"), (lang, why)


def test_every_admin_error_code_is_in_every_catalog() -> None:
    """Each administration error code reads in French, Dutch and English, with its parameters."""
    catalogs = support.load_catalogs()
    for code, english in ADMIN_MESSAGES.items():
        wanted = set(re.findall(r"{(\w+)(?:![rs])?}", english))
        for lang, catalog in catalogs.items():
            text = catalog.get(f"admin.{code}")
            assert text, (lang, code)
            assert set(re.findall(r"{(\w+)}", text)) == wanted, (lang, code)
    admin_keys = {key for key in catalogs["en"] if key.startswith("admin.")}
    assert admin_keys == {f"admin.{code}" for code in ADMIN_MESSAGES}  # none left over


def test_every_field_error_and_field_is_in_every_catalog() -> None:
    """Each field-error code and each field of an event reads in French, Dutch and English."""
    catalogs = support.load_catalogs()
    for code, english in cm.FIELD_MESSAGES.items():
        wanted = set(re.findall(r"{(\w+)}", english))
        for lang, catalog in catalogs.items():
            text = catalog.get(f"check.{code}")
            assert text, (lang, code)
            assert set(re.findall(r"{(\w+)}", text)) == wanted, (lang, code)
    fields = {"type", "body", "event", *cm.NODE_FIELDS}
    for event_type in cm.EVENT_TYPES.values():
        fields |= {*event_type.required, *event_type.optional}
    fields |= {"zone", "station"}  # the fields every event type may carry
    for lang, catalog in catalogs.items():
        assert sorted(f for f in fields if not catalog.get(f"field.{f}")) == [], lang
        assert set(re.findall(r"{(\w+)}", catalog["field_error"])) == {"field", "problem"}


def test_every_anomaly_rule_and_set_reason_is_in_every_catalog() -> None:
    """Each anomaly rule (with its message's parameters) and quarantine reason reads in all three."""
    from crdt_model import _anomalies

    catalogs = support.load_catalogs()
    for rule in cm.RULES:
        english = _anomalies._MESSAGES[rule][1]
        wanted = {"why" if p == "why_en" else p for p in re.findall(r"{(\w+)}", english)}
        for lang, catalog in catalogs.items():
            text = catalog.get(f"anomaly.{rule}")
            assert text, (lang, rule)
            assert set(re.findall(r"{(\w+)}", text)) == wanted, (lang, rule)
    reasons = {
        _anomalies.WASH_FAILED,
        _anomalies.CYCLE_FAILED,
        _anomalies.LOAD_REJECTED,
        _anomalies.RELEASED_WITHOUT_CYCLE,
        _anomalies.INSPECTION_FAILED,
    }
    for lang, catalog in catalogs.items():
        assert sorted(r for r in reasons if not catalog.get(f"reason.{r}")) == [], lang


def test_secret_file_is_private(tmp_path: Path) -> None:
    first = support.node_secret(tmp_path)
    assert support.node_secret(tmp_path) == first
    assert (tmp_path / support.SECRET_FILE).stat().st_mode & 0o777 == 0o600


def test_bar_chart_is_plain_svg() -> None:
    svg = support.bar_chart(["08", "09"], [("Sale", "z-sale", [3, 0])], title="<t>")
    assert svg.startswith("<svg")
    assert "&lt;t&gt;" in svg
    assert "http" not in svg


async def test_a_missing_page_or_load_is_a_page_that_says_so_not_json(client: TestClient) -> None:
    await login(client, "chef")
    for path in ("/loads/A-261128-999", "/no-such-page", "/reference/sets/NOPE"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert resp.content_type == "text/html"
        assert "Content-Security-Policy" in resp.headers
        text = html.unescape(await resp.text())
        assert "Cette page n'existe pas" in text  # French by default
        assert 'href="/"' in text  # and the way back
    resp = await client.get("/api/no-such-endpoint")  # machines keep their JSON
    assert resp.content_type == "application/json"


def test_a_list_of_sets_too_long_for_a_link_is_never_cut_inside_a_code() -> None:
    from node._web_loads import _whole_codes, scanned_codes

    text = " ".join(f"CH-{i:05d}" for i in range(1, 223)) + " CH-123456"
    kept = scanned_codes(_whole_codes(text, 2000))
    assert kept == [f"CH-{i:05d}" for i in range(1, 223)]  # the last one left out whole
    assert _whole_codes("AB CD", 3) == "AB "
    assert _whole_codes("AB,CD", 2) == "AB"
    assert _whole_codes("ABCD", 2) == ""
    assert _whole_codes("AB CD", 10) == "AB CD"
