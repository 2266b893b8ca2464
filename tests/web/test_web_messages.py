"""Field errors and anomalies on the web pages, in the person's language (fr, nl, en)."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

import crdt_model as cm
from crdt_model._anomalies import make_anomaly
from node import Node
from node._web_support import load_catalogs, say_anomaly, translator
from tests.web.helpers import DEVICE, OP, SET, csrf_of, login_in

CODE_CHARS = {
    "fr": "ne peut contenir que des lettres, des chiffres, des espaces et # . / : + -",
    "nl": "mag alleen letters, cijfers, spaties en # . / : + - bevatten",
    "en": "may hold only letters, digits, spaces and # . / : + -",
}


async def get(client: TestClient, path: str) -> str:
    resp = await client.get(path)
    assert resp.status == 200, path
    return html.unescape(await resp.text())


async def post_form(client: TestClient, form_page: str, target: str, **fields: str) -> str:
    token = csrf_of(await (await client.get(form_page)).text())
    resp = await client.post(target, data={"csrf": token, **fields})
    return html.unescape(await resp.text())


async def station_step(client: TestClient, zone: str, code: str, action: str, **fields: str) -> str:
    page = f"/station?zone={zone}&code={quote(code)}"
    return await post_form(client, page, "/station", zone=zone, code=code, action=action, **fields)


def plain(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).strip()


def flash_of(page: str) -> str:
    match = re.search(r'<div class="flash [a-z]+" role="\w+" id="flash">(.*?)</div>\n', page, re.S)
    assert match is not None, page[:1500]
    return plain(match.group(1))


def anomalies_in(page: str, list_id: str) -> dict[str, str]:
    """Rule -> message shown in a list of anomalies (the text after the severity)."""
    block = re.search(rf'<ul class="anomalies" id="{re.escape(list_id)}">(.*?)</ul>', page, re.S)
    assert block is not None, page[:2000]
    return {
        rule: plain(text).split(" · ", 1)[1]
        for rule, text in re.findall(r'data-rule="(\w+)"[^>]*>(.*?)</li>', block.group(1), re.S)
    }


def dashboard_anomalies(page: str) -> dict[str, str]:
    return {
        rule: plain(text).split(" · ", 1)[1]
        for rule, text in re.findall(r'<p data-rule="(\w+)">(.*?)</p>', page, re.S)
    }


# -- field errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("fr", "L'étape a été refusée. Boîte : {chars}"),
        ("nl", "De stap werd geweigerd. Set: {chars}"),
        ("en", "The step was refused. Set: {chars}"),
    ],
)
async def test_a_scanned_code_with_bad_characters_is_refused_in_the_operator_language(
    client: TestClient, node: Node, lang: str, said: str
) -> None:
    await login_in(client, "op", lang)
    page = await station_step(client, "sale", "JDIGG%111", "receive")
    assert flash_of(page) == said.format(chars=CODE_CHARS[lang])
    assert node.index.count == 0


async def test_a_field_error_keeps_its_parameters_in_dutch(client: TestClient, node: Node) -> None:
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-1", "program": "P", "sets": [SET]}, OP
    )
    await login_in(client, "op", "nl")
    before = node.index.count
    page = await station_step(client, "sale", SET, "wash_pass", cycle_no="4" * 40)
    assert flash_of(page) == (
        "De stap werd geweigerd. Cyclusnummer: mag hoogstens 32 tekens lang zijn"
    )
    assert node.index.count == before


async def test_a_bad_set_in_a_scanned_load_is_named_by_its_place_in_french(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op", "fr")
    page = await post_form(
        client,
        "/loads/new?kind=wash",
        "/loads/new",
        kind="wash",
        machine="LAV 1!",
        program="INSTRU",
        sets=f"{SET}\nJDIGG*112",
    )
    assert flash_of(page) == (
        "La charge a été refusée. Machine : " + CODE_CHARS["fr"] + "; "
        "Boîtes : élément 2 : " + CODE_CHARS["fr"]
    )
    assert node.index.count == 0


async def test_the_api_keeps_the_english_field_errors(client: TestClient, node: Node) -> None:
    token = await node.async_create_token("station", "operator", "test")
    resp = await client.post(
        "/api/events",
        json={"type": "set.received", "set": "JDIGG%111", "zone": "garage"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 422
    assert await resp.json() == {
        "ok": False,
        "error": "the event is not valid",
        "errors": [
            {"field": "set", "message": CODE_CHARS["en"]},
            {"field": "zone", "message": "must be one of sale, propre, sterile, office"},
        ],
        "status": 422,
    }


# -- anomalies ------------------------------------------------------------------------------


async def unusual_sterilizer_load(node: Node) -> tuple[str, str]:
    """A dirty set loaded straight into a sterilizer without Bowie-Dick: (load, day)."""
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    event, _ = await node.async_submit(
        {"type": "steri.loaded", "machine": "STE-1", "program": "P", "sets": [SET]}, OP
    )
    return str(event["load"]), node.trace.today(node._clock())


@pytest.mark.parametrize(
    ("lang", "bowie_dick", "order"),
    [
        (
            "nl",
            "Sterilisator STE-1 geladen op {day} zonder geslaagde Bowie-Dicktest ({load}).",
            "Laden van de sterilisator van set {set} wijkt af van de gebruikelijke volgorde "
            "(vorige status: vuil).",
        ),
        (
            "fr",
            "Stérilisateur STE-1 chargé le {day} sans test de Bowie-Dick réussi ({load}).",
            "Chargement du stérilisateur de la boîte {set} hors de l'ordre habituel "
            "(statut précédent : sale).",
        ),
        (
            "en",
            "Sterilizer STE-1 loaded on {day} without a passed Bowie-Dick test ({load}).",
            "Sterilizer loading of set {set} out of the usual order (previous status: dirty).",
        ),
    ],
)
async def test_dashboard_anomalies_are_in_the_person_language(
    client: TestClient, node: Node, lang: str, bowie_dick: str, order: str
) -> None:
    load, day = await unusual_sterilizer_load(node)
    await login_in(client, "chef", lang)
    shown = dashboard_anomalies(await get(client, "/dashboard"))
    assert shown == {
        "no_bowie_dick": bowie_dick.format(day=day, load=load),
        "out_of_order": order.format(set=SET),
    }


async def test_a_load_released_on_a_failed_cycle_says_so_in_dutch_on_its_pages(
    client: TestClient, node: Node
) -> None:
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    await node.async_submit(
        {"type": "wash.loaded", "machine": "L", "program": "P", "sets": [SET]}, OP
    )
    await node.async_record(
        {"type": "wash.cycle", "machine": "L", "cycle_no": "1", "result": "pass"}, OP
    )
    await node.async_submit({"type": "set.inspected", "set": SET, "result": "ok"}, OP)
    event, _ = await node.async_submit(
        {"type": "steri.loaded", "machine": "STE-1", "program": "P", "sets": [SET]}, OP
    )
    load = str(event["load"])
    await node.async_record(
        {"type": "steri.cycle", "machine": "STE-1", "cycle_no": "815", "result": "fail"}, DEVICE
    )
    # a release the rules refuse at a station, as a peer could still have recorded it
    await node.async_record({"type": "load.released", "load": load, "decision": "released"}, OP)
    said = f"Lading {load} vrijgegeven met een mislukte cyclus."
    await login_in(client, "chef", "nl")

    page = await get(client, f"/loads/{quote(load)}")
    assert anomalies_in(page, "load-anomalies")["release_without_passed_cycle"] == said
    assert "released with" not in page

    page = await get(client, f"/recall?lot={quote(load)}")
    assert anomalies_in(page, f"anomalies-{load}")["release_without_passed_cycle"] == said

    page = await get(client, "/dashboard/body")
    assert dashboard_anomalies(page)["release_without_passed_cycle"] == said


async def test_a_set_shows_its_open_anomalies_and_why_it_is_quarantined_in_dutch(
    client: TestClient, node: Node
) -> None:
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    first, _ = await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-1", "program": "P", "sets": [SET]}, OP
    )
    second, _ = await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-2", "program": "P", "sets": [SET]}, OP
    )
    await node.async_record(
        {"type": "wash.cycle", "machine": "LAV-2", "cycle_no": "7", "result": "fail"}, OP
    )
    await login_in(client, "op", "nl")
    page = await get(client, f"/station?zone=sale&code={quote(SET)}")
    said = (
        f"Set {SET} is in lading {second['load']} geladen terwijl hij nog in de open lading "
        f"{first['load']} zit."
    )
    assert anomalies_in(page, "set-anomalies") == {"set_in_two_loads": said}
    reason = re.search(r'<p class="flash error" id="reason">(.*?)</p>', page)
    assert reason is not None
    assert reason.group(1) == "De wascyclus is mislukt."
    # the anomaly concerns both loads
    for load in (first["load"], second["load"]):
        page = await get(client, f"/loads/{quote(load)}")
        assert anomalies_in(page, "load-anomalies") == {"set_in_two_loads": said}


async def test_a_refused_anomaly_decision_says_why_in_dutch(client: TestClient, node: Node) -> None:
    await unusual_sterilizer_load(node)
    anomaly = node.trace.fold.anomalies(open_only=True)[0]
    await login_in(client, "chef", "nl")
    before = node.index.count
    page = await post_form(
        client,
        "/dashboard",
        "/dashboard/resolve",
        anomaly=anomaly.id,
        decision="accepted",
        comment="zie\tnota",
    )
    assert flash_of(page) == (
        "De beslissing werd geweigerd. Opmerking: mag geen stuurtekens bevatten"
    )
    assert node.index.count == before
    page = await post_form(
        client, "/dashboard", "/dashboard/resolve", anomaly=anomaly.id, decision="accepted"
    )
    assert flash_of(page) == "Beslissing geregistreerd."
    assert anomaly.rule not in dashboard_anomalies(page)


# every rule, as the fold words it: the same English as the API, proper Dutch and French
SAMPLES: list[tuple[str, dict[str, str], str, str]] = [
    (
        "set_in_two_loads",
        {"set": "S#1", "load": "A-2", "other": "A-1"},
        "Set S#1 is in lading A-2 geladen terwijl hij nog in de open lading A-1 zit.",
        "La boîte S#1 est chargée dans A-2 alors qu'elle est encore dans la charge ouverte A-1.",
    ),
    (
        "label_not_released",
        {"set": "S#1", "load": "A-1", "why": "not_released"},
        "Etiket afgedrukt voor set S#1 (lading A-1), maar de lading is nog niet vrijgegeven.",
        "Étiquette imprimée pour la boîte S#1 (charge A-1) alors que la charge n'est pas "
        "encore libérée.",
    ),
    (
        "dispatch_not_released",
        {"set": "S#1", "load": "A-1", "why": "cycle_failed"},
        "Set S#1 verzonden, maar de cyclus is mislukt (lading A-1).",
        "Boîte S#1 expédiée alors que le cycle a échoué (charge A-1).",
    ),
    (
        "release_without_passed_cycle",
        {"load": "A-1", "why": "missing"},
        "Lading A-1 vrijgegeven met een ontbrekende cyclus.",
        "Charge A-1 libérée avec un cycle absent.",
    ),
    (
        "use_after_expiry",
        {"set": "S#1", "expires_on": "2026-01-31"},
        "Set S#1 gebruikt op 2026-02-02, na de vervaldatum van 2026-01-31.",
        "Boîte S#1 utilisée le 2026-02-02 après sa péremption du 2026-01-31.",
    ),
    (
        "use_without_valid_label",
        {"set": "S#1", "why": "no_label"},
        "Set S#1 gebruikt zonder geldig etiket: er werd geen etiket afgedrukt voor zijn lading.",
        "Boîte S#1 utilisée sans étiquette valide : aucune étiquette n'a été imprimée pour sa "
        "charge.",
    ),
    (
        "endoscope_not_reprocessed",
        {"endoscope": "E-7", "why": "last_use"},
        "Endoscoop E-7 gebruikt zonder geslaagde desinfectiecyclus sinds zijn laatste gebruik.",
        "Endoscope E-7 utilisé sans cycle de désinfection réussi depuis sa dernière utilisation.",
    ),
    (
        "no_bowie_dick",
        {"machine": "STE-1", "load": "A-1"},
        "Sterilisator STE-1 geladen op 2026-02-02 zonder geslaagde Bowie-Dicktest (A-1).",
        "Stérilisateur STE-1 chargé le 2026-02-02 sans test de Bowie-Dick réussi (A-1).",
    ),
    (
        "out_of_order",
        {"set": "S#1", "step": "set.inspected", "status": "dirty"},
        "Controle van set S#1 wijkt af van de gebruikelijke volgorde (vorige status: vuil).",
        "Contrôle de la boîte S#1 hors de l'ordre habituel (statut précédent : sale).",
    ),
    (
        "clock_skew",
        {"node": "C", "minutes": "-12"},
        "De klok van post C wijkt -12 min af van de HLC.",
        "Horloge du poste C décalée de -12 min par rapport à l'HLC.",
    ),
]


def test_every_rule_is_sampled() -> None:
    assert sorted(rule for rule, *_ in SAMPLES) == sorted(cm.RULES)


@pytest.mark.parametrize(("rule", "params", "dutch", "french"), SAMPLES)
def test_each_anomaly_reads_in_every_language(
    rule: str, params: dict[str, str], dutch: str, french: str
) -> None:
    subject = {k: v for k, v in params.items() if k != "why"}
    anomaly = make_anomaly(
        rule, ["1795869091234-00000-A"], "2026-02-02", params.get("why"), **subject
    )
    catalogs = load_catalogs()
    assert say_anomaly(anomaly, translator(catalogs, "nl")) == dutch
    assert say_anomaly(anomaly, translator(catalogs, "fr")) == french
    english = say_anomaly(anomaly, translator(catalogs, "en"))
    if rule == "out_of_order":  # its step and status are named, not given as codes
        assert english == "Inspection of set S#1 out of the usual order (previous status: dirty)."
    else:
        assert english == anomaly.message_en
