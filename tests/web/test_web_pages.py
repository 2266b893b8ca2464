"""Web pages for loads, recall, reference and administration, in process with reference data."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

import crdt_model as cm
from node import Node
from node._auth import Principal
from node._bundle import Bundle, read_bundle
from node._sample import write_sample
from node._web_loads import scanned_codes
from node._web_support import load_catalogs
from tests.node.nodes import StepClock, new_data_dir, open_node
from tests.web.helpers import PASSWORD, ROLES, csrf_of, external_references

PLANNED = "2026-11-30"
DEVICE = Principal("device:STE-1", "operator")
RAW = "STE-1 CYCLE 00815\n134.1 C  3.04 bar\nPLATEAU 300 s\nRESULTAT: CONFORME"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    folder = tmp_path_factory.mktemp("bundle") / "sample"
    return read_bundle(
        write_sample(folder, scale="small", seed=1, start=date.fromisoformat(PLANNED))
    )


@pytest.fixture
async def node(tmp_path: Path, bundle: Bundle) -> AsyncIterator[Node]:
    node = await open_node(new_data_dir(tmp_path), clock=StepClock(step=1000))
    await node.async_import(bundle)
    for login, role in ROLES.items():
        await node.async_add_user(login, role, PASSWORD, "test")
    yield node
    await node.async_close()


def sets_of(node: Node, n: int = 2) -> list[str]:
    ref = node.trace.fold.reference
    assert ref is not None
    return sorted(ref.instance_type)[:n]


async def login(client: TestClient, user: str, password: str = PASSWORD) -> None:
    client.session.cookie_jar.clear()
    page = await client.get("/login")
    resp = await client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "login": user, "password": password},
    )
    assert resp.status == 200, user


async def page(client: TestClient, path: str) -> tuple[int, str]:
    resp = await client.get(path, allow_redirects=False)
    return resp.status, html.unescape(await resp.text())


async def post(client: TestClient, form_page: str, action: str, **fields: str) -> tuple[int, str]:
    token = csrf_of(await (await client.get(form_page)).text())
    resp = await client.post(action, data={"csrf": token, **fields})
    return resp.status, html.unescape(await resp.text())


async def washed_and_packed(node: Node, codes: list[str]) -> None:
    op = Principal("op", "operator")
    for code in codes:
        await node.async_submit({"type": "set.received", "set": code}, op)
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-1", "program": "P", "sets": codes}, op
    )
    await node.async_submit(
        {"type": "wash.cycle", "machine": "LAV-1", "cycle_no": "101", "result": "pass"}, op
    )
    for code in codes:
        await node.async_submit(
            {"type": "set.inspected", "set": code, "result": "ok", "packer": "op"}, op
        )
    await node.async_submit(
        {"type": "steri.test", "machine": "STE-1", "kind": "bowie_dick", "result": "pass"}, op
    )


async def scan_a_load(client: TestClient, node: Node, codes: list[str]) -> str:
    """Build a sterilizer load by scanning; its cycle is then captured from the machine."""
    status, text = await post(
        client,
        "/loads/new?kind=steri",
        "/loads/new",
        kind="steri",
        machine="STE-1",
        program="NORMAL 134°",
        sets="\r\n".join([*codes, codes[0]]) + "\r\n",
    )
    assert status == 200, text
    assert "Charge enregistrée." in text
    load = node.trace.fold.set_status(codes[0]).load
    assert load is not None
    view = node.trace.fold.load(load)
    assert view is not None
    assert list(view.sets) == codes
    await node.async_record(
        {
            "type": "steri.cycle",
            "machine": "STE-1",
            "load": load,
            "cycle_no": "00815",
            "result": "pass",
            "raw": RAW,
        },
        DEVICE,
    )
    return load


# -- access ------------------------------------------------------------------------------------

PAGES = [
    "/loads",
    "/recall",
    "/readiness",
    "/reference",
    "/reference/profiles",
    "/reference/planning",
    "/admin",
]


async def test_pages_need_a_session(client: TestClient) -> None:
    for path in [*PAGES, "/loads/new", "/labels/LA1.pdf"]:
        status, _ = await page(client, path)
        assert status == 303, path
    for path in ("/loads/new", "/admin/users", "/admin/invite", "/loads/X/release"):
        resp = await client.post(path, data={}, allow_redirects=False)
        assert resp.status == 303, path


@pytest.mark.parametrize("user", sorted(ROLES))
async def test_each_page_for_its_roles(client: TestClient, user: str) -> None:
    await login(client, user)
    role = ROLES[user]
    for path in PAGES:
        status, text = await page(client, path)
        expected = 403 if path == "/admin" and role != "admin" else 200
        assert status == expected, (path, user)
        if expected == 403:
            assert "Votre rôle ne donne pas accès" in text
    status, _ = await page(client, "/loads/new")
    assert status == (200 if role in {"operator", "releaser"} else 403)
    status, _ = await page(client, "/recall?patient=000211553")
    assert status == (403 if role == "operator" else 200)


async def test_no_new_page_refers_outside_the_node(client: TestClient, node: Node) -> None:
    codes = sets_of(node)
    await washed_and_packed(node, codes)
    await login(client, "rel")
    load = await scan_a_load(client, node, codes)
    paths = [
        "/loads",
        "/loads/new?kind=wash",
        f"/loads/{quote(load)}",
        f"/recall?lot={quote(load)}",
        "/reference",
        f"/reference/sets/{quote(codes[0].split('#')[0])}",
        "/reference/profiles",
        f"/reference/planning?date={PLANNED}",
        f"/readiness?date={PLANNED}",
    ]
    for path in paths:
        status, text = await page(client, path)
        assert status == 200, path
        assert external_references(text) == [], path
    await login(client, "adm")
    status, text = await page(client, "/admin")
    assert status == 200
    assert external_references(text) == []


def test_every_new_message_is_in_every_catalog() -> None:
    catalogs = load_catalogs()
    root = Path(__file__).parents[2] / "node"
    used: set[str] = set()
    for name in (
        "loads",
        "load",
        "load_new",
        "recall",
        "readiness",
        "admin",
        "_flash",
        "_reference_tabs",
    ):
        text = (root / "templates" / f"{name}.html").read_text(encoding="utf-8")
        used |= set(re.findall(r"_\(\s*[\"']([^\"']+)[\"']", text))
    for module in ("_web_loads", "_web_recall", "_web_admin"):
        text = (root / f"{module}.py").read_text(encoding="utf-8")
        used |= set(re.findall(r'(?:"m": |error=|"what": |\["error"\] = )"([^"]+)"', text))
    used = {m for m in used if not m.endswith(".") or " " in m or m == "None."}
    used |= {f"kind.{k}" for k in ("wash", "steri")} | {"node.member", "node.revoked"}
    used |= {f"recall.{k}" for k in ("lot", "set", "patient", "machine")}
    for lang, catalog in catalogs.items():
        assert sorted(used - set(catalog)) == [], lang


def test_scanned_codes_one_per_line_each_once() -> None:
    assert scanned_codes("A#1\r\nB#2\n\nA#1\n  C#3 ") == ["A#1", "B#2", "C#3"]


# -- loads -------------------------------------------------------------------------------------


async def test_a_load_scanned_released_with_password_and_labelled(
    client: TestClient, node: Node
) -> None:
    codes = sets_of(node)
    await washed_and_packed(node, codes)
    await login(client, "rel")
    load = await scan_a_load(client, node, codes)
    url = f"/loads/{quote(load)}"

    status, text = await page(client, "/loads")
    assert status == 200
    assert f'data-load="{load}"' in text
    status, text = await page(client, url)
    assert status == 200
    assert f'<pre class="raw" id="raw">{RAW}</pre>' in text
    assert 'id="do-release"' in text
    assert '<th scope="row">N° de cycle</th><td>00815</td>' in text  # the cycle record in French
    assert "<td>conforme</td>" in text
    assert ">cycle_no</th>" not in text

    before = node.index.count
    status, text = await post(
        client, url, f"{url}/release", decision="released", password="not my password"
    )
    assert status == 200
    assert "Mot de passe erroné" in text
    assert node.index.count == before
    assert node.trace.fold.load(load).status == "passed"  # type: ignore[union-attr]

    resp = await client.post(f"{url}/release", data={"decision": "released", "password": PASSWORD})
    assert resp.status == 403
    assert node.index.count == before

    status, text = await post(client, url, f"{url}/release", decision="released", password=PASSWORD)
    assert status == 200
    assert "Charge libérée." in text
    view = node.trace.fold.load(load)
    assert view is not None
    assert view.status == "released"
    assert view.release is not None
    assert view.release.user == "rel"

    status, text = await post(client, url, f"{url}/label", set=codes[0])
    assert status == 200, text
    match = re.search(r'href="(/labels/([A-Z0-9]+)\.pdf)"', text)
    assert match is not None, text
    pdf = await client.get(match.group(1))
    assert pdf.status == 200
    assert pdf.content_type == "application/pdf"
    assert (await pdf.read()).startswith(b"%PDF")
    client.session.cookie_jar.clear()
    resp = await client.get(match.group(1), allow_redirects=False)
    assert resp.status == 303  # the label file wants a session, not a bearer token


async def test_an_operator_neither_releases_nor_sees_the_form(
    client: TestClient, node: Node
) -> None:
    codes = sets_of(node, 1)
    await washed_and_packed(node, codes)
    await login(client, "op")
    load = await scan_a_load(client, node, codes)
    url = f"/loads/{quote(load)}"
    status, text = await page(client, url)
    assert status == 200
    assert 'id="do-release"' not in text
    before = node.index.count
    status, _ = await post(client, url, f"{url}/release", decision="released", password=PASSWORD)
    assert status == 403
    assert node.index.count == before


async def test_the_load_form_shows_each_scanned_set_before_recording(
    client: TestClient, node: Node
) -> None:
    """As sets are scanned, the form lists each one's name and status, and what recording
    would warn about: the operator sees a wrong scan before the load is recorded."""
    first, second, third = sets_of(node, 3)
    op = Principal("op", "operator")
    for code in (first, second):
        await node.async_submit({"type": "set.received", "set": code}, op)
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-1", "program": "P", "sets": [first]}, op
    )
    ref = node.trace.fold.reference
    assert ref is not None
    type_code = ref.type_code(second)
    assert type_code is not None
    name = ref.set_types[type_code]["name"]
    await login(client, "op")
    token = csrf_of(await (await client.get("/loads/new?kind=wash")).text())

    async def check(**fields: str) -> tuple[int, str]:
        resp = await client.post("/loads/check", data={"csrf": token, "kind": "wash", **fields})
        return resp.status, html.unescape(await resp.text())

    before = node.index.count
    status, text = await check(machine="LAV-2", sets="\n".join([first, second, third, "NOPE#1"]))
    assert status == 200
    lines = re.findall(r'<li data-set="([^"]+)"( class="warn")?>', text)
    assert lines == [
        (first, ' class="warn"'),
        (second, ""),
        (third, ""),
        ("NOPE#1", ' class="warn"'),
    ]
    assert "4 boîtes scannées" in text
    line_of_second = text[text.index(f'<li data-set="{second}"') :].split("</li>")[0]
    assert name in line_of_second
    assert '<span class="badge s-washing">en lavage</span>' in text
    assert f"La boîte {first} est encore dans la charge ouverte" in text  # still in its load
    assert "La boîte NOPE#1 n'est pas dans les données de référence" in text
    # what recording would refuse is said too: a code no event may carry, a set as machine
    status, text = await check(machine=second, sets=f"{third}\n(01)0123")
    refused = re.findall(r'<p class="flash error">([^<]*)</p>', text)
    assert refused[0].startswith("C'est le code d'une boîte, pas une machine")
    assert (
        refused[1]
        == "Boîtes : élément 2 : ne peut contenir que des lettres, des chiffres, des espaces et # . / : + -"
    )
    status, text = await check(sets="\n".join(f"X#{n}" for n in range(201)))
    assert "Trop de boîtes dans une charge." in text
    assert node.index.count == before  # nothing recorded
    status, text = await check(sets="")
    assert (status, "<li" in text) == (200, False)
    client.session.cookie_jar.clear()
    status, _ = await check(sets=first)
    assert status == 401  # over: the page reloads and asks to log in


async def test_a_refused_load_is_said_plainly(client: TestClient, node: Node) -> None:
    await login(client, "op")
    await client.get("/lang/en")
    status, text = await post(
        client, "/loads/new", "/loads/new", kind="wash", machine="LAV-1", program="P", sets=" \n"
    )
    assert status == 422
    assert "Scan at least one set." in text
    assert node.index.count == 0


async def test_rejecting_needs_a_reason(client: TestClient, node: Node) -> None:
    codes = sets_of(node, 1)
    await washed_and_packed(node, codes)
    await login(client, "rel")
    load = await scan_a_load(client, node, codes)
    url = f"/loads/{quote(load)}"
    before = node.index.count
    _, text = await post(client, url, f"{url}/release", decision="rejected", password=PASSWORD)
    assert "Indiquez pourquoi" in text
    assert node.index.count == before
    _, text = await post(
        client, url, f"{url}/release", decision="rejected", password=PASSWORD, reason="wet pack"
    )
    assert "Charge refusée." in text
    assert node.trace.fold.load(load).status == "rejected"  # type: ignore[union-attr]


# -- recall and reference ---------------------------------------------------------------------


async def test_recall_by_lot_shows_the_patient(client: TestClient, node: Node) -> None:
    codes = sets_of(node, 1)
    await washed_and_packed(node, codes)
    await login(client, "rel")
    load = await scan_a_load(client, node, codes)
    url = f"/loads/{quote(load)}"
    await post(client, url, f"{url}/release", decision="released", password=PASSWORD)
    await node.async_submit(
        {"type": "set.used", "set": codes[0], "patient": "000211553", "room": "J Salle 1"},
        Principal("op", "operator"),
    )
    status, text = await page(client, f"/recall?lot={quote(load)}")
    assert status == 200
    assert 'id="result"' in text
    assert "000211553" in text
    assert codes[0] in text
    status, text = await page(client, "/recall?patient=000211553")
    assert status == 200
    assert load in text
    status, text = await page(client, f"/recall?set={quote(codes[0])}")
    assert status == 200
    assert load in text
    status, text = await page(client, "/recall?lot=NOPE")
    assert status == 404
    assert "Rien de connu" in text


async def test_recall_by_endoscope_and_washer_disinfector(client: TestClient, node: Node) -> None:
    ref = node.trace.fold.reference
    assert ref is not None
    serial = sorted(ref.endoscopes)[0]
    op = Principal("op", "operator")
    await node.async_submit(
        {"type": "endo.aer_cycle", "endoscope": serial, "machine": "LD-1", "cycle_no": "12",
         "result": "pass"},
        op,
    )  # fmt: skip
    await node.async_submit({"type": "endo.used", "endoscope": serial, "patient": "000211553"}, op)
    await login(client, "rel")
    for url in (f"/recall?endoscope={quote(serial)}", "/recall?machine=LD-1"):
        status, text = await page(client, url)
        assert status == 200
        assert 'class="recall-endoscopes"' in text
        assert "000211553" in text
        assert "LD-1 12" in text


async def test_reference_browser(client: TestClient, node: Node) -> None:
    ref = node.trace.fold.reference
    assert ref is not None
    kind = sorted(ref.set_types)[0]
    await login(client, "op")
    status, text = await page(client, f"/reference?q={kind.lower()}")
    assert status == 200
    assert kind in text
    status, text = await page(client, f"/reference/sets/{kind}")
    assert status == 200
    contents = [r for r in cm.read_table(node.docs[cm.ref_doc_name(ref.export_id)], "set_contents")]
    first = next(r for r in contents if r["type_code"] == kind)
    assert str(first["description"]) in text
    status, text = await page(client, "/reference/profiles")
    assert status == 200
    assert next(iter(ref.profiles)) in text
    status, text = await page(client, f"/reference/planning?date={PLANNED}")
    assert status == 200
    row = ref.or_planning[PLANNED][0]
    assert str(row["procedure"]) in text
    assert str(row["patient_code"]) not in text  # no patient codes for an operator
    status, _ = await page(client, "/reference/planning?date=30-11-2026")
    assert status == 400
    status, _ = await page(client, "/reference/sets/NOPE")
    assert status == 404


# -- administration ---------------------------------------------------------------------------


async def test_admin_creates_a_user_who_then_logs_in(client: TestClient) -> None:
    await login(client, "adm")
    status, text = await post(
        client,
        "/admin",
        "/admin/users",
        login="nina",
        role="releaser",
        password="une phrase longue",
        password2="une phrase longue",
    )
    assert status == 200
    assert "Utilisateur enregistré." in text
    assert 'data-user="nina"' in text
    status, text = await post(
        client, "/admin", "/admin/users", login="x", role="operator", password="a", password2="a"
    )
    assert status == 422
    assert "L'utilisateur a été refusé." in text
    await login(client, "nina", "une phrase longue")
    status, _ = await page(client, "/loads")
    assert status == 200


async def test_admin_creates_a_token_and_invites_a_node(client: TestClient, node: Node) -> None:
    await login(client, "adm")
    status, text = await post(
        client, "/admin", "/admin/tokens", name="platform", role="integration"
    )
    assert status == 200
    match = re.search(r'<pre id="secret-value">(smt_[^<]+)</pre>', text)
    assert match is not None
    assert node.authenticate(match.group(1)) == Principal("platform", "integration")
    status, text = await page(client, "/admin")
    assert match.group(1) not in text  # shown once
    status, text = await post(client, "/admin", "/admin/invite")
    assert status == 200
    invite = re.search(r'<pre id="secret-value">([^<]+)</pre>', text)
    assert invite is not None
    assert len(invite.group(1)) > 20
    status, text = await post(client, "/admin", "/admin/revoke", node=node.node_id, confirm="yes")
    assert status == 422
    assert "Le poste n'a pas été révoqué." in text
    assert "Un poste ne peut pas se révoquer lui-même" in text


async def test_admin_posts_are_refused_without_csrf_or_role(client: TestClient, node: Node) -> None:
    await login(client, "adm")
    resp = await client.post(
        "/admin/users",
        data={"login": "eve", "role": "admin", "password": "x" * 10, "password2": "x" * 10},
    )
    assert resp.status == 403
    assert cm.cluster_get(node.docs[cm.CLUSTER_DOC], "users", "eve") is None
    await login(client, "chef")
    status, _ = await post(
        client,
        "/loads",
        "/admin/users",
        login="eve",
        role="admin",
        password="x" * 10,
        password2="x" * 10,
    )
    assert status == 403
    assert cm.cluster_get(node.docs[cm.CLUSTER_DOC], "users", "eve") is None


async def test_the_readiness_of_a_day_shows_each_operation_and_what_it_lacks(
    client: TestClient, node: Node
) -> None:
    """Nothing sterile yet: every operation with a profile lacks its sets, said per room;
    the head sees patient codes, an operator does not."""
    fold = node.trace.fold
    answer = cm.readiness(fold, PLANNED)
    assert answer["operations"]
    await login(client, "chef")
    status, text = await page(client, f"/readiness?date={PLANNED}")
    assert status == 200
    assert f"Préparation · {PLANNED}" in text
    for op in answer["operations"]:
        assert op["room"] in text
        if op["patient_code"]:
            assert op["patient_code"] in text
    short = [op for op in answer["operations"] if op["status"] == "short"]
    assert short
    assert text.count('data-status="short"') == len(short) + sum(
        1 for p in answer["endoscopy"]["procedures"] if p["status"] == "short"
    )
    assert "manquante(s)" in text
    assert 'id="endoscopy"' in text
    assert 'href="/readiness?date=2026-12-01"' in text  # the next day
    await login(client, "op")
    status, text = await page(client, f"/readiness?date={PLANNED}")
    assert status == 200
    assert all(op["patient_code"] not in text for op in answer["operations"] if op["patient_code"])
    status, text = await page(client, "/readiness?date=30-11-2026")
    assert status == 400
    assert "AAAA-MM-JJ" in text or "YYYY-MM-DD" in text


async def test_a_code_the_reference_does_not_know_is_recorded_only_when_confirmed(
    client: TestClient, node: Node
) -> None:
    """A misread or mistyped code: said, and recorded only once the operator ticks that
    the code is right."""
    await login(client, "op")
    typo = "JDIGGRBX-11"
    url = f"/station?zone=sale&code={typo}"
    _, text = await page(client, url)
    assert "Ce code est absent des données de référence." in text
    assert 'name="unknown_ok"' in text
    before = node.index.count

    async def receive(**extra: str) -> str:
        token = csrf_of(await (await client.get(url)).text())
        form = {"csrf": token, "zone": "sale", "code": typo, "action": "receive", **extra}
        return html.unescape(await (await client.post("/station", data=form)).text())

    assert "cochez « L'enregistrer quand même »" in await receive()
    assert node.index.count == before
    assert "Boîte réceptionnée." in await receive(unknown_ok="1")
    assert node.index.count == before + 1
    _, known = await page(client, f"/station?zone=sale&code={quote(sets_of(node)[0])}")
    assert 'name="unknown_ok"' not in known


async def released_load(client: TestClient, node: Node, n: int) -> tuple[list[str], str, str]:
    """`n` sets scanned into a load, its cycle captured, released by a releaser logged in:
    (the sets, the load, its page)."""
    codes = sets_of(node, n)
    await washed_and_packed(node, codes)
    await login(client, "rel")
    load = await scan_a_load(client, node, codes)
    url = f"/loads/{quote(load)}"
    await post(client, url, f"{url}/release", decision="released", password=PASSWORD)
    return codes, load, url


async def test_the_labels_of_a_whole_load_are_printed_in_one_tap(
    client: TestClient, node: Node
) -> None:
    codes, load, url = await released_load(client, node, 3)
    await post(client, url, f"{url}/label", set=codes[1])  # one printed already
    _, text = await page(client, url)
    assert "Imprimer les étiquettes des boîtes qui n'en ont pas (2)" in text
    status, text = await post(client, url, f"{url}/labels")
    assert status == 200
    assert "2 étiquettes émises." in text
    view = node.trace.fold.load(load)
    assert view is not None
    assert sorted(label.set for label in view.labels) == sorted(codes)  # no reprint
    assert 'id="label-all"' not in text


async def test_labels_of_a_whole_load_sent_twice_are_issued_once(
    client: TestClient, node: Node
) -> None:
    codes, load, url = await released_load(client, node, 2)
    page_text = await (await client.get(url)).text()
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page_text))
    answers = await asyncio.gather(*(client.post(f"{url}/labels", data=form) for _ in range(2)))
    assert [a.status for a in answers] == [200, 200]
    view = node.trace.fold.load(load)
    assert view is not None
    assert sorted(label.set for label in view.labels) == sorted(codes)  # once each
    assert not any(label.reprint for label in view.labels)
