"""The station as operators use it: loads of several sets, cycles by the machine's number,
labels they can print, the way back for quarantined sets, and forms that keep what was typed."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

from aiohttp.test_utils import TestClient

import devices
from node import Node
from node._auth import Principal
from node._bundle import read_bundle
from node._sample import write_sample
from tests.devices.devices_helpers import label as label_data
from tests.web.helpers import DEVICE, OP, PASSWORD, csrf_of, load_with_cycle, login_in
from tests.web.test_web import record_load_form, status_of

SETS = ["JDIGGRBA#111", "JDIGGRBA#112", "JDIGGRBA#113"]


async def _page(client: TestClient, zone: str, code: str) -> str:
    resp = await client.get("/station", params={"zone": zone, "code": code})
    assert resp.status == 200
    return html.unescape(await resp.text())


async def _post(client: TestClient, zone: str, code: str, action: str, **fields: str) -> str:
    page = await _page(client, zone, code)
    data = {"csrf": csrf_of(page), "zone": zone, "code": code, "action": action, **fields}
    resp = await client.post("/station", data=data)
    assert resp.status == 200
    return html.unescape(await resp.text())


async def test_sets_loaded_at_the_station_make_one_load_that_the_cycle_completes(
    client: TestClient, node: Node
) -> None:
    """The washer takes several sets: the station opens the load form with the scanned set,
    the others are scanned onto it, one load is recorded, and the machine's cycle (with no
    load number, as captured) washes them all."""
    await login_in(client, "op")
    for code in SETS:
        await node.async_submit({"type": "set.received", "set": code}, OP)
    form = await _post(client, "sale", SETS[0], "wash_load", machine="LAV-3")
    assert "/loads/new" in form
    assert 'name="zone" value="sale"' in form
    assert SETS[0] in form  # the scanned set is on the form already
    resp = await record_load_form(client, form, sets="\n".join(SETS))
    assert resp.url.path == "/station"
    assert resp.url.query["code"] == SETS[0]
    page = html.unescape(await resp.text())
    loads = {node.trace.fold.set_status(code).load for code in SETS}
    assert len(loads) == 1
    assert None not in loads
    (load,) = loads
    assert f"Charge {load}." in page
    await node.async_record(
        {"type": "wash.cycle", "machine": "LAV-3", "cycle_no": "88", "result": "pass"}, DEVICE
    )
    assert [status_of(node, code) for code in SETS] == ["washed"] * 3


async def test_the_machine_is_offered_from_those_known_and_never_made_up(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op")
    await node.async_submit({"type": "set.received", "set": SETS[0]}, OP)
    page = await _page(client, "sale", SETS[0])
    assert re.search(r'<input name="machine" value=""', page)  # no washer known yet
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-2", "program": "P", "sets": [SETS[1]]}, OP
    )
    page = await _page(client, "sale", SETS[0])
    assert re.search(r'<input name="machine" value="LAV-2"', page)  # the only washer known
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-4", "program": "P", "sets": [SETS[2]]}, OP
    )
    page = await _page(client, "sale", SETS[0])
    assert re.search(r'<input name="machine" value=""', page)  # two: the operator says which
    assert '<option value="LAV-2">' in page
    assert '<option value="LAV-4">' in page
    form = html.unescape(await (await client.get("/loads/new?kind=wash")).text())
    assert re.search(r'id="machine" name="machine" value=""', form)


async def test_a_cycle_is_recorded_under_the_number_the_operator_reads_off_the_machine(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op")
    await node.async_submit({"type": "set.received", "set": SETS[0]}, OP)
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-2", "program": "P", "sets": [SETS[0]]}, OP
    )
    page = await _page(client, "sale", SETS[0])
    assert re.search(r'<input name="cycle_no" value="" required', page)
    count = node.index.count
    text = await _post(client, "sale", SETS[0], "wash_pass", cycle_no="")
    assert 'id="flash"' in text
    assert "flash error" in text
    assert node.index.count == count
    assert status_of(node, SETS[0]) == "washing"
    await _post(client, "sale", SETS[0], "wash_pass", cycle_no="4711")
    load = node.trace.fold.load(str(node.trace.fold.set_status(SETS[0]).load))
    assert load is not None
    assert load.cycle is not None
    assert load.cycle.cycle_no == "4711"


async def test_a_label_issued_at_the_station_can_be_opened_as_pdf(
    client: TestClient, node: Node, tmp_path: Path
) -> None:
    await node.async_import(read_bundle(write_sample(tmp_path / "sample", scale="small", seed=1)))
    ref = node.trace.fold.reference
    assert ref is not None
    code = sorted(ref.instance_type)[0]
    await node.async_submit({"type": "set.received", "set": code}, OP)
    event, _ = await node.async_submit(
        {"type": "steri.loaded", "machine": "STE-1", "program": "P", "sets": [code]}, OP
    )
    await node.async_record(
        {"type": "steri.cycle", "machine": "STE-1", "cycle_no": "7", "result": "pass"}, DEVICE
    )
    await node.async_submit(
        {"type": "load.released", "load": event["load"], "decision": "released"},
        Principal("rel", "releaser"),
    )
    await login_in(client, "op")
    text = await _post(client, "sterile", code, "label")
    label = re.search(r'id="label-pdf" href="/labels/([^"]+)\.pdf"', text)
    assert label is not None, text[text.find('id="flash"') :][:400]
    pdf = await client.get(f"/labels/{label[1]}.pdf")
    assert pdf.status == 200
    assert (await pdf.read()).startswith(b"%PDF")


async def test_a_quarantined_set_is_sent_back_through_the_step_that_failed(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op")
    await load_with_cycle(node, "fail")
    assert node.trace.fold.set_status(SETS[0]).reason == "cycle_failed"
    sterile = await _page(client, "sterile", SETS[0])
    assert 'id="do-steri_load"' in sterile  # sterilized again, in the sterile zone
    clean = await _page(client, "propre", SETS[0])
    assert 'id="do-inspect_ok"' not in clean
    assert 'id="elsewhere"' in clean
    assert "stérile" in clean.split('id="elsewhere"')[1].split("</p>")[0].lower()
    dirty = await _page(client, "sale", SETS[0])
    assert 'id="do-receive"' in dirty  # or all over again from the reception
    other = SETS[1]
    await node.async_submit({"type": "set.received", "set": other}, OP)
    await node.async_submit({"type": "set.inspected", "set": other, "result": "nok"}, OP)
    assert node.trace.fold.set_status(other).reason == "inspection_failed"
    assert 'id="do-inspect_ok"' in await _page(client, "propre", other)
    assert 'id="do-steri_load"' not in await _page(client, "sterile", other)


async def test_a_refused_decision_keeps_the_reason_typed_and_a_reject_needs_one(
    client: TestClient, node: Node
) -> None:
    load = await load_with_cycle(node, "pass")  # passed, but the packs come out wet
    await login_in(client, "rel")
    count = node.index.count
    text = await _post(client, "sterile", SETS[0], "reject", confirm="")
    assert "flash error" in text
    assert node.index.count == count
    reason = "emballage mouillé en sortie"
    text = await _post(client, "sterile", SETS[0], "reject", reason=reason, confirm="0000")
    assert "flash error" in text
    assert node.index.count == count
    assert f'name="reason" value="{reason}"' in text  # what was typed is still there
    text = await _post(client, "sterile", SETS[0], "reject", reason=reason, confirm=PASSWORD)
    view = node.trace.fold.load(load)
    assert view is not None
    assert view.status == "rejected"


async def test_a_label_or_instrument_datamatrix_typed_by_a_scanner_names_its_set(
    client: TestClient, node: Node
) -> None:
    """A keyboard-wedge scanner types what the code holds: a label this cluster printed
    opens its set; a code that names no set is said so, and no step is offered on it."""
    await login_in(client, "op")
    for gtin in (None, "3453120000011"):
        label = label_data(gtin=gtin)
        typed = "]d2" + devices.label_payload(label).element_string()
        page = await _page(client, "sterile", typed)
        assert f'id="item" data-set="{label.instance}"' in page
    page = await _page(client, "sale", "(01)03453120000011(21)5ABC123")
    assert 'id="scan-refused"' in page
    assert 'id="item"' not in page
    assert 'id="item" data-set="JDIGGRBA#112"' in await _page(client, "sale", "JDIGGRBA#112")


async def test_a_pc_that_can_no_longer_record_says_so_not_that_the_step_was_refused(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op")
    node.failed = "storage failed, restart the node: [Errno 28] No space left on device"
    text = await _post(client, "sale", SETS[0], "receive")
    assert "Ce poste ne peut plus enregistrer" in text
    assert "a été refusée" not in text  # not a rule's refusal
    assert "Errno" not in text  # what IT reads in the log, not the operator
    assert status_of(node, SETS[0]) == "unknown"
    page = await _page(client, "sterile", "")  # every page says it, before anything is tried
    assert 'id="node-failed" role="alert">Ce poste ne peut plus enregistrer' in page
    form = await client.get("/loads/new", params={"kind": "wash"})
    scanned = await client.post(
        "/loads/check",
        data={"csrf": csrf_of(await form.text()), "kind": "wash", "sets": SETS[0]},
    )
    assert "Ce poste ne peut plus enregistrer" in html.unescape(await scanned.text())


async def test_a_pc_that_records_says_nothing_of_its_storage(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op")
    assert 'id="node-failed"' not in await _page(client, "sale", "")


async def test_stock_from_before_the_outage_is_recorded_from_its_label_at_the_sterile_zone(
    client: TestClient, node: Node
) -> None:
    """A set nothing was recorded of since the outage: at the sterile zone, its platform
    label's lot and expiry make it sterile stock, which goes on to be dispatched."""
    await login_in(client, "op")
    code = SETS[0]
    page = await _page(client, "sale", code)
    assert 'id="do-receive"' in page
    assert 'id="do-stock"' not in page
    page = await _page(client, "sterile", code)
    assert 'id="do-stock"' in page
    assert re.search(r'<input name="expires_on" value="" type="date" required', page)
    refused = await _post(client, "sterile", code, "stock", lot="L260914-0042", expires_on="13/03")
    assert 'id="flash"' in refused
    assert "flash error" in refused
    assert re.search(r'<input name="lot" value="L260914-0042"', refused)  # kept for a retry
    assert status_of(node, code) == "unknown"
    done = await _post(
        client, "sterile", code, "stock", lot="L260914-0042", expires_on="2027-03-13"
    )
    assert "Boîte enregistrée en stock stérile." in done
    assert status_of(node, code) == "sterile"
    assert "lot L260914-0042 (étiquette de la plateforme)" in done
    assert "péremption 13/03/2027" in done  # as people write dates
    assert 'id="do-dispatch"' in done
    assert 'id="do-label"' not in done
    (event,) = [e for e in node.iter_events() if e["type"] == "set.stocked"]
    assert (event["lot"], event["expires_on"], event["zone"]) == (
        "L260914-0042",
        "2027-03-13",
        "sterile",
    )


async def test_a_load_form_sent_twice_records_one_load(client: TestClient, node: Node) -> None:
    """A double tap on 'Record the load' (two posts at once, then a third later)."""
    await login_in(client, "op")
    for code in SETS:
        await node.async_submit({"type": "set.received", "set": code}, OP)
    page = html.unescape(await (await client.get("/loads/new?kind=wash")).text())
    form = dict(re.findall(r'<input[^>]*name="(\w+)" value="([^"]*)"', page))
    form.update(machine="LAV-3", sets="\n".join(SETS))
    before = node.index.count
    answers = await asyncio.gather(*(client.post("/loads/new", data=form) for _ in range(2)))
    assert [a.status for a in answers] == [200, 200]
    again = await client.post("/loads/new", data=form)
    assert again.status == 200
    assert node.index.count == before + 1
    (load,) = {node.trace.fold.set_status(code).load for code in SETS}
    assert {a.url.path for a in [*answers, again]} == {f"/loads/{load}"}
    fresh = html.unescape(await (await client.get("/loads/new?kind=wash")).text())
    assert dict(re.findall(r'name="(once)" value="([^"]*)"', fresh))["once"] != form["once"]


async def test_a_set_scanned_into_the_machine_or_cycle_field_is_refused(
    client: TestClient, node: Node
) -> None:
    """The scan went where the focus was: no load on machine 'JDIGGRBA#112', no cycle
    number 'JDIGGRBA#112'; what else was typed is kept."""
    await login_in(client, "op")
    for code in SETS:
        await node.async_submit({"type": "set.received", "set": code}, OP)
    page = html.unescape(await (await client.get("/loads/new?kind=wash&sets=" + SETS[0])).text())
    form = dict(re.findall(r'<input[^>]*name="(\w+)" value="([^"]*)"', page))
    resp = await client.post("/loads/new", data={**form, "machine": SETS[1], "sets": SETS[0]})
    assert resp.status == 422
    text = html.unescape(await resp.text())
    assert "pas une machine" in text
    assert SETS[0] in text  # the list is kept
    assert node.trace.fold.set_status(SETS[0]).load is None
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-3", "program": "P", "sets": [SETS[0]]}, OP
    )
    text = await _post(client, "sale", SETS[0], "wash_pass", cycle_no=SETS[1])
    assert "pas un numéro de cycle" in text
    assert status_of(node, SETS[0]) == "washing"


async def test_a_packed_set_goes_into_a_pass_through_sterilizer_from_the_clean_zone(
    client: TestClient, node: Node
) -> None:
    await login_in(client, "op")
    code = SETS[0]
    for body in (
        {"type": "set.received", "set": code},
        {"type": "wash.loaded", "machine": "LAV-1", "program": "P", "sets": [code]},
        {"type": "wash.cycle", "machine": "LAV-1", "cycle_no": "7", "result": "pass"},
        {"type": "set.inspected", "set": code, "result": "ok"},
        {"type": "steri.loaded", "machine": "STE-4", "program": "P", "sets": [SETS[1]]},
    ):
        await node.async_submit(body, OP)
    clean = await _page(client, "propre", code)
    assert 'id="do-steri_load"' in clean
    assert 'list="machines-steri"' in clean
    assert re.search(r'<input name="machine" value="STE-4"', clean)  # a sterilizer, not LAV-1


async def test_a_releaser_signs_at_an_operators_station_with_badge_and_pin(
    client: TestClient, node: Node
) -> None:
    """The operator stays logged in; the releaser scans their badge and types their PIN:
    the release is theirs. A wrong PIN, or the badge of someone who may not release,
    records nothing."""
    from node._users import async_update_user

    await async_update_user(node, "rel", {"badge": "0A0B0C0D", "pin": "4711"}, "test")
    await async_update_user(node, "op", {"badge": "0E0E0E0E", "pin": "1234"}, "test")
    await login_in(client, "op")
    load = await load_with_cycle(node, "pass")
    page = await _page(client, "sterile", SETS[0])
    assert f'href="/loads/{load}" id="load-link"' in page  # its cycle and checks a tap away
    assert 'id="badge-release"' in page
    assert not re.search(r'id="do-release"[^>]*disabled', page)
    before = node.index.count
    text = await _post(client, "sterile", SETS[0], "release", badge="0A0B0C0D", confirm="0000")
    assert "Badge inconnu ou code PIN erroné : rien n'a été enregistré." in text
    text = await _post(client, "sterile", SETS[0], "release", badge="0E0E0E0E", confirm="1234")
    assert "Votre rôle ne permet pas cette étape." in text
    assert node.index.count == before
    text = await _post(client, "sterile", SETS[0], "release", badge="0A0B0C0D", confirm="4711")
    assert "Charge libérée." in text
    view = node.trace.fold.load(load)
    assert view is not None
    assert view.status == "released"
    assert view.release is not None
    assert view.release.user == "rel"  # the releaser's decision, not the operator's


async def test_a_cycle_number_of_digits_or_a_known_machine_is_never_taken_for_a_set(
    client: TestClient, node: Node
) -> None:
    """Sets may carry numeric codes a cycle number can equal; a machine once scanned
    stays a machine."""
    await login_in(client, "op")
    await node.async_submit({"type": "set.received", "set": "4521"}, OP)  # a numeric set code
    await node.async_submit({"type": "set.received", "set": SETS[0]}, OP)
    await node.async_submit(
        {"type": "wash.loaded", "machine": "LAV-3", "program": "P", "sets": [SETS[0]]}, OP
    )
    text = await _post(client, "sale", SETS[0], "wash_pass", cycle_no="4521")
    assert "pas un numéro de cycle" not in text
    assert status_of(node, SETS[0]) == "washed"


async def test_the_release_step_shows_what_the_machine_recorded_of_the_cycle(
    client: TestClient, node: Node
) -> None:
    """Before signing, the releaser reads the cycle's values at the station (temperatures,
    pressure, plateau, what the capture noticed), with the whole record a tap away; once
    the load is decided, the set's page no longer lists them."""
    from tests.web.helpers import SET

    await login_in(client, "rel")
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    loaded, _ = await node.async_submit(
        {"type": "steri.loaded", "machine": "STE-1", "program": "P", "sets": [SET]}, OP
    )
    cycle = {
        "type": "steri.cycle",
        "machine": "STE-1",
        "cycle_no": "4521",
        "result": "pass",
        "program": "PRION 134 18MIN",
        "t_min": 134.1,
        "t_max": 135.6,
        "p_max": 3.08,
        "hold_s": 1080,
        "flags": ["truncated"],
    }
    await node.async_record(cycle, DEVICE)
    page = await _page(client, "sterile", SET)
    values = page[
        page.index('id="cycle-values"') : page.index("</table>", page.index('id="cycle-values"'))
    ]
    for label, value in [
        ("N° de cycle", "4521"),
        ("Programme", "PRION 134 18MIN"),
        ("Résultat", "conforme"),
        ("Température min. (°C)", "134.1"),
        ("Température max. (°C)", "135.6"),
        ("Pression max. (bar)", "3.08"),
        ("Plateau (s)", "1080"),
    ]:
        cell = rf'<th scope="row">{re.escape(label)}</th><td>{re.escape(value)}</td>'
        assert re.search(cell, values), label
    flagged = '<th scope="row">Signalements</th><td class="flagged">⚠ incomplet (pas de fin'
    assert flagged in values  # what the capture noticed, said, not a code
    assert f'href="/loads/{loaded["load"]}#cycle" id="cycle-link"' in page
    await _post(client, "sterile", SET, "release", confirm=PASSWORD)
    assert node.trace.fold.set_status(SET).status == "sterile"
    assert 'id="cycle-values"' not in await _page(client, "sterile", SET)


async def test_a_load_number_with_a_slash_links_to_its_page(client: TestClient, node: Node) -> None:
    """Load numbers given by the API may hold a slash: the links keep it inside one part."""
    from tests.web.helpers import SET

    await login_in(client, "rel")
    await node.async_submit({"type": "set.received", "set": SET}, OP)
    await node.async_submit(
        {"type": "steri.loaded", "machine": "STE-1", "program": "P", "sets": [SET], "load": "B/12"},
        OP,
    )
    await node.async_record(
        {"type": "steri.cycle", "machine": "STE-1", "cycle_no": "9", "result": "pass"}, DEVICE
    )
    page = await _page(client, "sterile", SET)
    assert 'href="/loads/B%2F12" id="load-link"' in page
    assert 'href="/loads/B%2F12#cycle" id="cycle-link"' in page
    resp = await client.get("/loads/B%2F12")
    assert resp.status == 200
    assert "B/12" in html.unescape(await resp.text())
