"""The safety rules on the web pages: refusals and warnings in the person's language; zones."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from node import Node
from tests.web.helpers import DEVICE, OP, PASSWORD, SET, csrf_of, load_with_cycle, login_in


async def post_form(client: TestClient, form_page: str, target: str, **fields: str) -> str:
    token = csrf_of(await (await client.get(form_page)).text())
    resp = await client.post(target, data={"csrf": token, **fields})
    return html.unescape(await resp.text())


def flash_of(page: str) -> str:
    match = re.search(r'<div class="flash [a-z]+" role="\w+" id="flash">(.*?)</div>\n', page, re.S)
    assert match is not None, page[:1500]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("fr", "L'étape a été refusée. Le cycle 815 de la charge {load} a échoué."),
        ("nl", "De stap werd geweigerd. Cyclus 815 van lading {load} is mislukt."),
        ("en", "The step was refused. Cycle 815 of load {load} failed."),
    ],
)
async def test_a_refused_release_is_said_in_the_person_language(
    client: TestClient, node: Node, lang: str, said: str
) -> None:
    load = await load_with_cycle(node, "fail", "815")
    url = f"/loads/{quote(load)}"
    await login_in(client, "rel", lang)
    before = node.index.count
    page = await post_form(client, url, f"{url}/release", decision="released", password=PASSWORD)
    assert flash_of(page) == said.format(load=load)
    assert node.index.count == before


async def test_the_api_keeps_the_english_refusal(client: TestClient, node: Node) -> None:
    load = await load_with_cycle(node, "fail", "815")
    token = await node.async_create_token("station", "releaser", "test")
    resp = await client.post(
        "/api/events",
        json={"type": "load.released", "load": load, "decision": "released"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 422
    assert await resp.json() == {
        "ok": False,
        "error": f"the cycle 815 of load {load} failed",
        "errors": [],
        "status": 422,
    }


async def test_warnings_are_translated_with_their_parameters(
    client: TestClient, node: Node
) -> None:
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    await login_in(client, "op", "fr")
    page = await post_form(
        client,
        "/loads/new?kind=steri",
        "/loads/new",
        kind="steri",
        machine="STE-1",
        program="NORMAL 134°",
        sets=SET,
    )
    warnings = [
        re.sub(r"<[^>]+>", "", w) for w in re.findall(r'class="warning">⚠ (.*?)</div>', page)
    ]
    today = node.trace.today(node._clock())
    assert warnings == [
        f"Chargement du stérilisateur de la boîte {SET} hors de l'ordre habituel (statut : sale).",
        f"Le stérilisateur STE-1 n'a pas de test de Bowie-Dick conforme le {today}.",
    ]


async def test_a_refused_label_says_why_in_dutch(client: TestClient, node: Node) -> None:
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    event, _ = await node.async_submit(
        {"type": "steri.loaded", "machine": "STE-1", "program": "P", "sets": [SET]}, OP
    )
    await node.async_record(
        {"type": "steri.cycle", "machine": "STE-1", "cycle_no": "9", "result": "pass"}, DEVICE
    )
    load = str(event["load"])
    url = f"/loads/{quote(load)}"
    await login_in(client, "op", "nl")
    page = await post_form(client, url, f"{url}/label", set=SET)
    assert flash_of(page) == (
        f"Het etiket werd geweigerd. Set {SET}, lading {load}: de lading is nog niet vrijgegeven."
    )


# -- dashboard: sets by status and zone ---------------------------------------------------------


def zone_cells(page: str, status: str) -> dict[str, str]:
    row = re.search(rf'<tr data-status="{status}">(.*?)</tr>', page, re.S)
    assert row is not None, page[:2000]
    return dict(re.findall(r'<td class="num" data-zone="(\w*)">(\d*)</td>', row.group(1)))


async def test_sets_are_counted_in_the_zone_of_their_latest_event(
    client: TestClient, node: Node
) -> None:
    # the old dashboard put every dirty set in the dirty zone; the station's zone counts now
    await node.async_submit({"type": "set.received", "set": "A#1"}, OP)  # node zone: sale
    await node.async_submit({"type": "set.received", "set": "A#2", "zone": "sterile"}, OP)
    await node.async_submit({"type": "set.received", "set": "A#3", "zone": "sterile"}, OP)
    await node.async_submit({"type": "set.received", "set": "A#4", "zone": "office"}, OP)
    # a set whose status comes from its load's cycle: the cycle's recorder decides
    await node.async_submit({"type": "set.received", "set": "B#1"}, OP)
    await node.async_submit(
        {
            "type": "steri.loaded",
            "machine": "STE-1",
            "program": "P",
            "sets": ["B#1"],
            "zone": "propre",
        },
        OP,
    )
    await node.async_record(
        {
            "type": "steri.cycle",
            "machine": "STE-1",
            "cycle_no": "1",
            "result": "pass",
            "zone": "sterile",
        },
        DEVICE,
    )
    await login_in(client, "chef", "fr")
    page = await (await client.get("/dashboard/body")).text()
    assert zone_cells(page, "dirty") == {"sale": "1", "propre": "", "sterile": "2", "office": "1"}
    assert zone_cells(page, "sterilized") == {
        "sale": "",
        "propre": "",
        "sterile": "1",
        "office": "",
    }
    assert '<th class="num" data-zone="office">Bureau</th>' in page

    # a later step elsewhere moves the set
    await node.async_submit({"type": "set.received", "set": "A#4", "zone": "propre"}, OP)
    page = await (await client.get("/dashboard/body")).text()
    assert zone_cells(page, "dirty") == {"sale": "1", "propre": "1", "sterile": "2"}


async def test_a_set_whose_events_are_all_voided_is_counted_apart(
    client: TestClient, node: Node
) -> None:
    event, _ = await node.async_submit({"type": "set.received", "set": "C#1"}, OP)
    await node.async_submit({"type": "event.voided", "target": event["id"], "reason": "typo"}, OP)
    view = node.trace.fold.set_status("C#1")
    assert view.events == ()
    await login_in(client, "chef", "en")
    page = await (await client.get("/dashboard/body")).text()
    assert zone_cells(page, view.status) == {"sale": "", "propre": "", "sterile": "", "": "1"}
