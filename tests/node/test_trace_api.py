"""The traceability API through real HTTP, on a real node with a real store and reference data.

One set goes from reception to use on a patient; the refused actions leave nothing behind;
facts of the physical world are recorded and raise anomalies; readiness, recall, the feed
with its acknowledgements, and two replicas fed in different orders giving the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

import crdt_model as cm
import sync
from devices import decode_label_code, parse_element_string
from node import DataDir, Node, make_app
from node._bundle import Bundle, read_bundle
from node._node import NodeFailedError
from node._sample import write_sample
from tests.devices.devices_helpers import rasterize, zxing
from tests.node.nodes import BASE_MS, StepClock, copy_as, new_data_dir, open_node
from tests.node.test_api import Api, assert_error_shape

TODAY = "2026-11-28"
"""The nodes' local day: BASE_MS (12:31 UTC) in Europe/Paris."""
PLANNED = "2026-11-30"
"""A Monday of the sample's planning (it starts that day)."""
ROLES = ("operator", "releaser", "head", "admin", "integration")
FEED = "application/x-ndjson"

AClient = Callable[[Any], Awaitable[TestClient]]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The small sample export, its planning starting on PLANNED."""
    folder = tmp_path_factory.mktemp("bundle") / "sample"
    return read_bundle(
        write_sample(folder, scale="small", seed=1, start=date.fromisoformat(PLANNED))
    )


class Trace(Api):
    """A client of one node with its clock, and the steps of a set's cycle."""

    def __init__(
        self, client: TestClient, node: Node, tokens: dict[str, str], clock: StepClock
    ) -> None:
        super().__init__(client, node, tokens)
        self.clock = clock
        self._cycles = 800

    @property
    def count(self) -> int:
        return self.node.index.count

    @property
    def ref(self) -> cm.Reference:
        ref = self.node.trace.fold.reference
        assert ref is not None
        return ref

    def kind(self, n: int = 0) -> str:
        """The n-th set type of the reference that has at least two instances."""
        kinds = [c for c, found in self.ref.instances_by_type.items() if len(found) >= 2]
        return sorted(kinds)[n]

    def instance(self, type_code: str, n: int = 0) -> str:
        """The n-th instance of a set type, as listed in the reference."""
        return self.ref.instances_by_type[type_code][n]

    def cycle_no(self) -> str:
        self._cycles += 1
        return f"{self._cycles:05d}"

    async def record(
        self, event_type: str, role: str = "operator", /, **fields: Any
    ) -> dict[str, Any]:
        """POST an event that must be taken without any warning."""
        status, body = await self.post_event(role, type=event_type, **fields)
        assert status == 201, body
        assert "warnings" not in body, body
        return body

    async def get(self, path: str, role: str = "head") -> Any:
        status, body = await self.call("GET", path, role)
        assert status == 200, body
        return body

    async def status_of(self, code: str) -> str:
        return str((await self.get(f"/api/sets/{q(code)}"))["status"])

    async def feed(self, query: str = "", role: str = "integration") -> tuple[bytes, Any]:
        resp = await self.client.get(f"/api/feed{query}", headers=self.headers(role))
        assert resp.status == 200, await resp.text()
        assert resp.content_type == FEED
        return await resp.read(), resp.headers

    # -- the steps of a set's cycle ------------------------------------------------------

    async def receive_wash_pack(self, codes: list[str], washer: str = "LAV-1") -> str:
        """Reception, a washer load with a passed cycle, inspection: the sets are packed."""
        for code in codes:
            await self.record("set.received", set=code, **{"from": "Bloc J Salle 1"})
        load = await self.record(
            "wash.loaded", machine=washer, program="INSTRU 93°C 3MIN NORMAL", sets=codes
        )
        await self.record("wash.cycle", machine=washer, cycle_no=self.cycle_no(), result="pass")
        for code in codes:
            await self.record("set.inspected", set=code, result="ok", packer="mdupont")
        return str(load["load"])

    async def sterilize(
        self,
        codes: list[str],
        machine: str = "AUTO-1",
        *,
        result: str = "pass",
        release: bool = True,
    ) -> str:
        """A passed Bowie-Dick, a sterilizer load, its cycle and (by default) its release."""
        await self.record("steri.test", machine=machine, kind="bowie_dick", result="pass")
        loaded = await self.record(
            "steri.loaded", machine=machine, program="NORMAL 134°", sets=codes
        )
        load = str(loaded["load"])
        await self.record(
            "steri.cycle", machine=machine, load=load, cycle_no=self.cycle_no(), result=result
        )
        if release:
            await self.record("load.released", "releaser", load=load, decision="released")
        return load

    async def make_sterile(self, codes: list[str], machine: str = "AUTO-1") -> str:
        await self.receive_wash_pack(codes)
        return await self.sterilize(codes, machine)


async def start(
    data: DataDir, aiohttp_client: AClient, clock: StepClock, bundle: Bundle | None = None
) -> Trace:
    """Open a node on `data` with a token per role; import `bundle` when given."""
    node = await open_node(data, clock=clock)
    if bundle is not None:
        await node.async_import(bundle)
    tokens = {role: await node.async_create_token(f"t-{role}", role, "test") for role in ROLES}
    return Trace(await aiohttp_client(make_app(node)), node, tokens, clock)


@pytest.fixture
async def trace(tmp_path: Path, aiohttp_client: AClient, bundle: Bundle) -> AsyncIterator[Trace]:
    t = await start(new_data_dir(tmp_path), aiohttp_client, StepClock(step=1000), bundle)
    yield t
    await t.client.close()
    await t.node.async_close()


def q(value: str) -> str:
    """A set code in a URL: '#' starts a fragment, so it is sent as %23."""
    return quote(value, safe="")


# -- a full cycle --------------------------------------------------------------------------


async def test_a_set_from_reception_to_a_patient_and_back_by_recall(
    trace: Trace, tmp_path: Path
) -> None:
    t = trace
    type_code = t.kind()
    code = t.instance(type_code)
    type_row = t.ref.set_types[type_code]
    patient = t.ref.or_planning[PLANNED][0]["patient_code"]
    seen = [await t.status_of(code)]

    await t.record("set.received", set=code, **{"from": "Bloc J Salle 1"})
    seen.append(await t.status_of(code))
    wash = await t.record(
        "wash.loaded", machine="LAV-1", program=type_row["wash_program"], sets=[code]
    )
    assert re.fullmatch(r"A-261128-\d{3}", wash["load"])
    seen.append(await t.status_of(code))
    # no load named: the cycle belongs to the open load of the washer
    await t.record("wash.cycle", machine="LAV-1", cycle_no=4711, result="pass", a0=3000)
    seen.append(await t.status_of(code))
    await t.record("set.inspected", set=code, result="ok", packer="mdupont")
    seen.append(await t.status_of(code))
    await t.record("steri.test", machine="AUTO-1", kind="bowie_dick", result="pass")
    steri = await t.record(
        "steri.loaded", machine="AUTO-1", program=type_row["steri_program"], sets=[code]
    )
    load = steri["load"]
    assert load != wash["load"]
    assert re.fullmatch(r"A-261128-\d{3}", load)
    seen.append(await t.status_of(code))
    await t.record(
        "steri.cycle",
        machine="AUTO-1",
        load=load,
        cycle_no="00815",
        result="pass",
        ended=f"{TODAY}T13:40:00+01:00",
        t_min=134.1,
        hold_s=300,
    )
    seen.append(await t.status_of(code))
    await t.record("load.released", "releaser", load=load, decision="released")
    seen.append(await t.status_of(code))

    # the label: lot, dates from the set type's shelf life, sterilizer, cycle, packer
    status, label = await t.call("POST", "/api/labels", json={"set": code, "load": load})
    assert status == 201, label
    expires = (date.fromisoformat(TODAY) + timedelta(days=type_row["shelf_life_days"])).isoformat()
    assert label["lot"] == load
    assert label["sterilized_on"] == TODAY
    assert label["expires_on"] == expires
    assert label["shelf_life_days"] == type_row["shelf_life_days"]
    assert (label["sterilizer"], label["cycle_no"], label["packer"]) == (
        "AUTO-1",
        "00815",
        "mdupont",
    )
    assert (label["set_type"], label["set_name"]) == (type_code, type_row["name"])
    assert label["reprint"] is False
    assert re.fullmatch(r"LA261128\d{4}", label["label_id"])
    printed = t.node.get_event(label["event"])
    assert printed is not None
    assert printed["type"] == "label.printed"
    assert (printed["lot"], printed["expires_on"], printed["label_id"]) == (
        load,
        expires,
        label["label_id"],
    )

    # the PDF's DataMatrix carries the instance, the lot, the dates and the label id
    resp = await t.client.get(label["pdf"], headers=t.headers("operator"))
    assert resp.status == 200
    assert resp.content_type == "application/pdf"
    zx = zxing()
    image = rasterize(await resp.read(), tmp_path)
    (matrix,) = [r for r in zx.read_barcodes(image) if r.format == zx.BarcodeFormat.DataMatrix]
    decoded = decode_label_code(parse_element_string(matrix.bytes.decode("ascii")))
    assert decoded is not None
    assert (decoded.instance, decoded.lot, decoded.label_id) == (code, load, label["label_id"])
    assert (decoded.sterilized_on.isoformat(), decoded.expires_on.isoformat()) == (TODAY, expires)
    resp = await t.client.get(label["zpl"], headers=t.headers("operator"))
    assert resp.status == 200
    zpl = (await resp.read()).decode("ascii")
    assert zpl.startswith("^XA")
    assert load in zpl
    assert f"^FD>:{code}^FS" in zpl  # the Code 128 of the instance
    assert "^BX" in zpl  # the DataMatrix
    status, body = await t.call("GET", "/api/labels/LA2611289999.pdf")
    assert_error_shape(status, body, 404)

    # a reprint keeps the lot and the expiry, and says it is one
    status, again = await t.call("POST", "/api/labels", json={"set": code, "load": load})
    assert status == 201, again
    assert again["reprint"] is True
    assert (again["lot"], again["expires_on"]) == (load, expires)
    assert again["label_id"] != label["label_id"]
    assert again["previous_label"] == label["label_id"]
    assert t.node.get_event(again["event"])["reprint"] is True  # type: ignore[index]
    resp = await t.client.get(again["zpl"], headers=t.headers("operator"))
    assert load in (await resp.read()).decode("ascii")

    await t.record("set.dispatched", set=code, to="Bloc J")
    seen.append(await t.status_of(code))
    await t.record("set.used", set=code, patient=patient, room="J Salle 1")
    seen.append(await t.status_of(code))
    assert seen == [
        "unknown",
        "dirty",
        "washing",
        "washed",
        "packed",
        "in_sterilizer",
        "sterilized",
        "sterile",
        "dispatched",
        "used",
    ]

    view = await t.get(f"/api/sets/{q(code)}", "operator")
    assert view["set"] == code
    assert view["type_code"] == type_code
    assert view["type"]["name"] == type_row["name"]
    assert view["contents"]
    assert {row["type_code"] for row in view["contents"]} == {type_code}
    assert view["location"] == "J Salle 1"
    assert view["load"] == load
    assert (view["sterilized_on"], view["expires_on"]) == (TODAY, expires)
    assert view["label"]["label_id"] == again["label_id"]
    assert view["anomalies"] == []
    history = [e["type"] for e in view["history"]]
    assert history == [
        "set.received",
        "wash.loaded",
        "set.inspected",
        "steri.loaded",
        "label.printed",
        "label.printed",
        "set.dispatched",
        "set.used",
    ]

    body = await t.get(f"/api/loads/{load}", "operator")
    assert body["load"] == load
    assert (body["kind"], body["machine"], body["status"], body["safe"]) == (
        "steri",
        "AUTO-1",
        "released",
        True,
    )
    assert body["sets"] == [code]
    assert (body["cycle"]["cycle_no"], body["cycle"]["result"]) == ("00815", "pass")
    assert body["release"]["decision"] == "released"
    assert body["release"]["user"] == "t-releaser"
    assert [lb["label_id"] for lb in body["labels"]] == [label["label_id"], again["label_id"]]
    assert [lb["reprint"] for lb in body["labels"]] == [False, True]
    washed = await t.get(f"/api/loads/{wash['load']}", "operator")
    assert (washed["kind"], washed["status"], washed["cycle"]["cycle_no"]) == (
        "wash",
        "passed",
        "4711",
    )
    status, body = await t.call("GET", "/api/loads/A-261128-999")
    assert_error_shape(status, body, 404)
    assert (await t.get("/api/anomalies"))["anomalies"] == []

    # recall: the lot reaches the set, where it went and the patient
    lot = await t.get(f"/api/recall?lot={load}")
    assert lot["load"]["load"] == load
    assert lot["patients"] == [patient]
    (entry,) = lot["sets"]
    assert entry["set"] == code
    assert [d["to"] for d in entry["dispatches"]] == ["Bloc J"]
    assert [(u["patient"], u["room"]) for u in entry["uses"]] == [(patient, "J Salle 1")]
    assert len(entry["labels"]) == 2
    by_set = await t.get(f"/api/recall?set={q(code)}")
    assert [(x["load"], x["kind"]) for x in by_set["loads"]] == [
        (wash["load"], "wash"),
        (load, "steri"),
    ]
    assert by_set["patients"] == [patient]
    by_patient = await t.get(f"/api/recall?patient={patient}", "releaser")
    assert [(s["set"], s["load"], s["machine"], s["safe"]) for s in by_patient["sets"]] == [
        (code, load, "AUTO-1", True)
    ]
    status, body = await t.call("GET", f"/api/recall?patient={patient}", "operator")
    assert_error_shape(status, body, 403)
    by_machine = await t.get("/api/recall?machine=AUTO-1")
    assert by_machine["last_passed_bi"] is None
    assert [x["load"]["load"] for x in by_machine["loads"]] == [load]
    assert by_machine["patients"] == [patient]
    # an operator follows the lot too, without the patient codes (releaser, head, admin only)
    for path in (f"/api/recall?lot={load}", f"/api/recall?set={q(code)}", "/api/feed"):
        status, seen = await t.call("GET", path, "operator")
        assert status == 200
        assert patient not in json.dumps(seen), path
    seen = await t.get(f"/api/recall?lot={load}", "operator")
    assert [d["to"] for d in seen["sets"][0]["dispatches"]] == ["Bloc J"]
    used = await t.get("/api/events?type=set.used", "operator")
    assert used["events"]
    assert not any("patient" in e for e in used["events"])
    assert (await t.get("/api/events?type=set.used"))["events"][0]["patient"] == patient


async def test_recall_of_a_sterilizer_stops_at_its_last_passed_biological_indicator(
    trace: Trace,
) -> None:
    t = trace
    first, second = t.instance(t.kind(), 0), t.instance(t.kind(), 1)
    load1 = await t.make_sterile([first])
    await t.record("steri.test", machine="AUTO-1", kind="bi", result="pass", lot=load1)
    load2 = await t.make_sterile([second])
    await t.record("set.used", set=second, patient="000123456")
    answer = await t.get("/api/recall?machine=AUTO-1")
    assert answer["last_passed_bi"]["lot"] == load1
    assert [x["load"]["load"] for x in answer["loads"]] == [load2]
    assert answer["patients"] == ["000123456"]
    assert (await t.get("/api/recall?machine=AUTO-9"))["loads"] == []


@pytest.mark.parametrize(
    "query", ["", "?lot=A&set=B", "?lot=", "?colour=red"], ids=["none", "two", "empty", "unknown"]
)
async def test_recall_needs_exactly_one_key(trace: Trace, query: str) -> None:
    status, body = await trace.call("GET", f"/api/recall{query}", "head")
    assert_error_shape(status, body, 400)


async def test_a_set_known_only_to_the_reference_and_an_unknown_one(trace: Trace) -> None:
    code = trace.instance(trace.kind())
    view = await trace.get(f"/api/sets/{q(code)}", "operator")
    assert (view["status"], view["history"], view["type_code"]) == ("unknown", [], trace.kind())
    assert view["location"] == trace.ref.locations[code]
    status, body = await trace.call("GET", "/api/sets/NOPE%23404")
    assert_error_shape(status, body, 404)


async def test_recall_of_an_unknown_lot_is_404(trace: Trace) -> None:
    status, body = await trace.call("GET", "/api/recall?lot=A-261128-999", "head")
    assert_error_shape(status, body, 404)


async def test_a_set_being_reprocessed_is_not_shown_in_its_storage_cabinet(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    cabinet = t.ref.locations[code]
    await t.record("set.received", set=code)
    assert (await t.get(f"/api/sets/{q(code)}"))["location"] != cabinet


# -- what the node refuses ---------------------------------------------------------------


async def test_only_a_releaser_releases_a_load(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    await t.receive_wash_pack([code])
    load = await t.sterilize([code], release=False)
    before = t.count
    for role in ("operator", "head", "admin", "integration"):
        status, body = await t.post_event(
            role, type="load.released", load=load, decision="released"
        )
        assert_error_shape(status, body, 403)
    assert t.count == before
    assert await t.status_of(code) == "sterilized"
    status, body = await t.post_event(
        "releaser", type="load.released", load=load, decision="released"
    )
    assert status == 201, body
    assert await t.status_of(code) == "sterile"
    # released once: a second release is refused, not recorded twice
    status, body = await t.post_event(
        "releaser", type="load.released", load=load, decision="released"
    )
    assert_error_shape(status, body, 422)
    assert "already released" in body["error"]
    assert t.count == before + 1


async def test_a_washer_load_is_not_released(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    load = await t.receive_wash_pack([code])
    before = t.count
    status, body = await t.post_event(
        "releaser", type="load.released", load=load, decision="released"
    )
    assert_error_shape(status, body, 422)
    assert "washer load" in body["error"]
    assert t.count == before
    assert await t.status_of(code) == "packed"


async def test_two_releases_at_once_record_one(trace: Trace) -> None:
    """A double tap, or two releasers: the rule holds while the first is made durable."""
    t = trace
    code = t.instance(t.kind())
    await t.receive_wash_pack([code])
    load = await t.sterilize([code], release=False)
    before = t.count
    answers = await asyncio.gather(
        *(
            t.post_event("releaser", type="load.released", load=load, decision="released")
            for _ in range(2)
        )
    )
    assert sorted(status for status, _ in answers) == [201, 422]
    assert t.count == before + 1


async def test_only_a_releaser_undoes_a_release_decision(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    await t.receive_wash_pack([code])
    load = await t.sterilize([code], release=False)
    rejected = await t.record(
        "load.released", "releaser", load=load, decision="rejected", reason="BI douteux"
    )
    assert await t.status_of(code) == "quarantined"
    before = t.count
    status, body = await t.post_event(type="event.voided", target=rejected["id"], reason="erreur")
    assert_error_shape(status, body, 403)
    assert t.count == before
    assert await t.status_of(code) == "quarantined"
    # a release withdrawn by a releaser stays withdrawn: voiding the void takes the right to
    # release too (it would bring the release back)
    other = t.instance(t.kind(1))
    await t.receive_wash_pack([other])
    load = await t.sterilize([other])  # released
    released = (await t.get(f"/api/loads/{load}", "operator"))["release"]["event"]
    withdrawn = await t.record("event.voided", "releaser", target=released, reason="BI positif")
    assert (await t.get(f"/api/loads/{load}", "operator"))["release"] is None
    before = t.count
    for target in (withdrawn["id"], released):
        status, body = await t.post_event(type="event.voided", target=target, reason="oups")
        assert_error_shape(status, body, 403)
        assert "(release)" in body["error"]
    assert t.count == before
    assert (await t.get(f"/api/loads/{load}", "operator"))["release"] is None
    status, body = await t.post_event(type="event.voided", target="1795869091234-00000-Z")
    assert_error_shape(status, body, 422)


@pytest.mark.parametrize("cycle", ["fail", None], ids=["failed", "missing"])
async def test_releasing_a_load_whose_cycle_failed_or_is_missing_is_refused(
    trace: Trace, cycle: str | None
) -> None:
    t = trace
    code = t.instance(t.kind())
    await t.receive_wash_pack([code])
    await t.record("steri.test", machine="AUTO-1", kind="bowie_dick", result="pass")
    load = (await t.record("steri.loaded", machine="AUTO-1", program="NORMAL 134°", sets=[code]))[
        "load"
    ]
    if cycle is not None:
        await t.record("steri.cycle", machine="AUTO-1", load=load, cycle_no="00901", result=cycle)
    before = t.count
    status, body = await t.post_event(
        "releaser", type="load.released", load=load, decision="released"
    )
    assert_error_shape(status, body, 422)
    reason = "the cycle 00901 of load" if cycle else "has no cycle recorded"
    assert reason in body["error"]
    assert load in body["error"]
    assert t.count == before
    assert (await t.get(f"/api/loads/{load}"))["release"] is None
    # an unknown load cannot be released either; a rejection is always recorded
    status, body = await t.post_event(
        "releaser", type="load.released", load="A-261128-999", decision="released"
    )
    assert_error_shape(status, body, 422)
    assert "unknown load" in body["error"]
    await t.record("load.released", "releaser", load=load, decision="rejected", reason="cycle")
    assert await t.status_of(code) == "quarantined"


async def test_a_label_only_for_a_set_of_a_released_load(trace: Trace) -> None:
    t = trace
    code, other = t.instance(t.kind(), 0), t.instance(t.kind(), 1)
    wash = await t.receive_wash_pack([code, other])
    load = await t.sterilize([code], release=False)
    before = t.count
    cases = [
        ({"set": code, "load": load}, "the load is not released yet"),
        ({"set": other, "load": load}, "this is not the set's latest load"),
        ({"set": other, "load": wash}, "its last load is a washer load"),
        ({"set": code, "load": "A-261128-999"}, "unknown load"),
    ]
    for body, reason in cases:
        status, answer = await t.call("POST", "/api/labels", json=body)
        assert_error_shape(status, answer, 422)
        assert reason in answer["error"], answer
    for bad in ({"set": code}, [code, load], {"set": code, "load": 7}):
        status, answer = await t.call("POST", "/api/labels", json=bad)
        assert_error_shape(status, answer, 422)
    status, answer = await t.call("POST", "/api/labels", "head", json={"set": code, "load": load})
    assert_error_shape(status, answer, 403)
    # label.printed sent as a plain event follows the same rule
    status, answer = await t.post_event(
        type="label.printed", set=code, load=load, lot=load, expires_on="2027-05-27"
    )
    assert_error_shape(status, answer, 422)
    assert t.count == before
    await t.record("load.released", "releaser", load=load, decision="released")
    status, answer = await t.call("POST", "/api/labels", json={"set": code, "load": load})
    assert status == 201, answer
    assert t.count == before + 2
    # one id, one label: a label id given already, or in another node's numbering, is refused
    expires = answer["expires_on"]
    for taken in (answer["label_id"], "LB2611280001"):
        status, body = await t.post_event(
            type="label.printed", set=code, load=load, lot=load, expires_on=expires, label_id=taken
        )
        assert_error_shape(status, body, 422)
        assert "is taken, or in another node's numbering" in body["error"]
    assert t.count == before + 2


@pytest.mark.parametrize("suffix", ["Œ1", "1" * 40])  # not ASCII; too wide for Code 128
async def test_a_label_that_could_not_be_printed_is_refused_before_it_is_recorded(
    trace: Trace, suffix: str
) -> None:
    """A barcode carries printable ASCII, within the label's width: recording a label first
    would leave a label.printed nobody can print, and make the next try a "reprint"."""
    t = trace
    code = f"{t.kind()}#{suffix}"  # an instance the reference does not list, of a known type
    steps: list[dict[str, Any]] = [
        {"type": "set.received", "set": code},
        {"type": "wash.loaded", "machine": "LAV-1", "program": "P", "sets": [code]},
        {"type": "wash.cycle", "machine": "LAV-1", "cycle_no": t.cycle_no(), "result": "pass"},
        {"type": "set.inspected", "set": code, "result": "ok", "packer": "mdupont"},
        {"type": "steri.test", "machine": "AUTO-1", "kind": "bowie_dick", "result": "pass"},
        {"type": "steri.loaded", "machine": "AUTO-1", "program": "P", "sets": [code]},
    ]
    for step in steps:  # recorded, with a warning that the reference does not list it
        status, body = await t.post_event("operator", **step)
        assert status == 201, body
    load = str(body["load"])
    await t.record("steri.cycle", machine="AUTO-1", load=load, cycle_no=t.cycle_no(), result="pass")
    await t.record("load.released", "releaser", load=load, decision="released")
    before = t.count
    status, body = await t.call("POST", "/api/labels", json={"set": code, "load": load})
    assert status == 422, body
    assert "cannot carry" in body["error"]
    assert t.count == before  # nothing recorded
    assert t.node.trace.fold.set_status(code).label is None


async def test_a_first_label_that_fits_is_issued_where_a_reprint_would_not(
    trace: Trace,
) -> None:
    """A reprint carries one more line ("Réimpression"): a label just tall enough for the
    first print must not be refused for the reprint's sake."""
    t = trace
    status, body = await t.call(
        "PUT", "/api/settings/label", "admin", json={"width_mm": 50, "height_mm": 27.5}
    )
    assert status == 200, body
    code = t.instance(t.kind())
    load = await t.make_sterile([code])
    status, first = await t.call("POST", "/api/labels", json={"set": code, "load": load})
    assert status == 201, first
    assert first["reprint"] is False


async def test_using_a_set_that_is_not_sterile_or_is_expired_is_refused(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    before = t.count
    status, body = await t.post_event(type="set.used", set=code, patient="000501492")
    assert_error_shape(status, body, 422)
    assert "is not sterile (status: unknown)" in body["error"]
    assert t.count == before
    await t.receive_wash_pack([code])
    load = await t.sterilize([code], release=False)
    before = t.count
    status, body = await t.post_event(type="set.used", set=code, patient="000501492")
    assert_error_shape(status, body, 422)
    assert "is not sterile (status: sterilized)" in body["error"]
    assert t.count == before
    await t.record("load.released", "releaser", load=load, decision="released")
    status, label = await t.call("POST", "/api/labels", json={"set": code, "load": load})
    assert status == 201
    # the day after its expiry (the node's clock says so), the set may not be used
    days = (date.fromisoformat(label["expires_on"]) - date.fromisoformat(TODAY)).days
    t.clock.now += (days + 1) * 86_400_000
    assert (await t.get(f"/api/sets/{q(code)}"))["status"] == "expired"
    before = t.count
    status, body = await t.post_event(type="set.used", set=code, patient="000501492")
    assert_error_shape(status, body, 422)
    assert f"expired on {label['expires_on']}" in body["error"]
    assert t.count == before
    assert (await t.get(f"/api/recall?set={q(code)}"))["patients"] == []


async def test_stock_from_before_the_outage_is_used_once_its_label_is_recorded(
    trace: Trace,
) -> None:
    t = trace
    code, other = t.instance(t.kind()), t.instance(t.kind(), 1)
    status, body = await t.post_event(type="set.used", set=code, patient="000501492")
    assert_error_shape(status, body, 422)
    assert "since the outage" in body["error"]
    assert "set.stocked" in body["error"]
    lot, expires = "L260914-0042", (date.fromisoformat(TODAY) + timedelta(days=90)).isoformat()
    await t.record("set.stocked", set=code, lot=lot, expires_on=expires)
    await t.record("set.stocked", set=other, lot=lot, expires_on=TODAY)
    view = await t.get(f"/api/sets/{q(code)}")
    assert (view["status"], view["expires_on"], view["stock"]["lot"]) == ("sterile", expires, lot)
    await t.record("set.dispatched", set=code, to="Bloc J")
    await t.record("set.used", set=code, patient="000501492", room="J Salle 3")
    t.clock.now += 86_400_000  # the next day, the other set's label has expired
    before = t.count
    status, body = await t.post_event(type="set.used", set=other, patient="000501493")
    assert_error_shape(status, body, 422)
    assert f"expired on {TODAY}" in body["error"]
    assert t.count == before
    found = await t.get(f"/api/recall?lot={q(lot)}")
    assert (found["load"]["kind"], found["load"]["sets"]) == ("platform", [code, other])
    assert found["patients"] == ["000501492"]
    assert (await t.get("/api/anomalies"))["anomalies"] == []
    before = t.count  # a used set's old label vouches for it no more
    status, body = await t.post_event(type="set.stocked", set=code, lot=lot, expires_on=expires)
    assert_error_shape(status, body, 422)
    assert "was recorded since the outage (status: used)" in body["error"]
    assert t.count == before


async def test_a_label_sent_as_an_event_cannot_choose_its_lot_or_expiry(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    load = await t.make_sterile([code])
    before = t.count
    status, body = await t.post_event(
        type="label.printed", set=code, load=load, lot="AUTRE-LOT", expires_on="2099-01-01"
    )
    assert_error_shape(status, body, 422)
    assert t.count == before


# -- facts of the physical world: recorded, with warnings and anomalies --------------------


async def anomalies(t: Trace, query: str = "") -> list[dict[str, Any]]:
    return list((await t.get(f"/api/anomalies{query}", "operator"))["anomalies"])


async def test_a_set_loaded_while_in_an_open_load_is_recorded_with_an_anomaly(
    trace: Trace,
) -> None:
    t = trace
    code = t.instance(t.kind())
    await t.receive_wash_pack([code])
    await t.record("steri.test", machine="AUTO-1", kind="bowie_dick", result="pass")
    await t.record("steri.test", machine="AUTO-2", kind="bowie_dick", result="pass")
    first = (await t.record("steri.loaded", machine="AUTO-1", program="NORMAL 134°", sets=[code]))[
        "load"
    ]
    before = t.count
    status, body = await t.post_event(
        type="steri.loaded", machine="AUTO-2", program="NORMAL 134°", sets=[code]
    )
    assert status == 201, body
    assert body["warnings"] == [f"set {code} is still in open load {first}"]
    assert t.count == before + 1
    (found,) = await anomalies(t)
    assert found["rule"] == "set_in_two_loads"
    assert found["subject"] == {"set": code, "load": body["load"]}
    assert found["status"] == "open"
    assert found["severity"] == "major"
    assert body["id"] in found["events"]
    assert {"fr", "en"} == set(found["message"])
    view = await t.get(f"/api/sets/{q(code)}")
    assert view["anomalies"] == [found["id"]]
    assert view["load"] == body["load"]


async def test_a_sterilizer_load_without_a_bowie_dick_that_day_is_an_anomaly(
    trace: Trace,
) -> None:
    t = trace
    code = t.instance(t.kind())
    # yesterday's test does not count for today
    t.clock.now -= 86_400_000
    await t.record("steri.test", machine="AUTO-3", kind="bowie_dick", result="pass")
    t.clock.now += 86_400_000
    await t.receive_wash_pack([code])
    status, body = await t.post_event(
        type="steri.loaded", machine="AUTO-3", program="NORMAL 134°", sets=[code]
    )
    assert status == 201, body
    assert body["warnings"] == [f"sterilizer AUTO-3 has no passed Bowie-Dick test on {TODAY}"]
    (found,) = await anomalies(t)
    assert found["rule"] == "no_bowie_dick"
    assert found["subject"] == {"machine": "AUTO-3", "load": body["load"]}
    assert found["day"] == TODAY
    # a failed test of the day is no better (for a set never seen before, too)
    await t.record("steri.test", machine="AUTO-4", kind="bowie_dick", result="fail")
    other = t.instance(t.kind(), 1)
    status, body = await t.post_event(
        type="steri.loaded", machine="AUTO-4", program="NORMAL 134°", sets=[other]
    )
    assert status == 201
    assert "no passed Bowie-Dick" in body["warnings"][0]
    assert [a["rule"] for a in await anomalies(t)] == ["no_bowie_dick", "no_bowie_dick"]


async def test_a_step_out_of_the_usual_order_is_warned_then_recorded(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    await t.record("set.received", set=code)
    before = t.count
    status, body = await t.post_event(type="set.inspected", set=code, result="ok")
    assert status == 201, body
    assert body["warnings"] == [
        f"set.inspected of set {code} is out of the usual order (status: dirty)"
    ]
    assert t.count == before + 1
    (found,) = await anomalies(t)
    assert found["rule"] == "out_of_order"
    assert found["severity"] == "minor"
    assert await t.status_of(code) == "packed"  # the fact is what it is


async def test_anomalies_come_in_pages(trace: Trace) -> None:
    t = trace
    codes = [t.instance(t.kind(n)) for n in range(3)]
    await t.receive_wash_pack(codes)
    for code in codes:  # no Bowie-Dick on AUTO-7 today: one anomaly per load
        status, _ = await t.post_event(
            type="steri.loaded", machine="AUTO-7", program="NORMAL 134°", sets=[code]
        )
        assert status == 201
    every = await anomalies(t)
    assert len(every) == 3
    pages, after = [], ""
    while True:
        page = await t.get(f"/api/anomalies?limit=2{after}", "operator")
        assert page["limit"] == 2
        pages.extend(page["anomalies"])
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    assert pages == every
    # reading the open ones a page at a time while someone resolves the last one read: the
    # next page starts after it all the same
    first = await t.get("/api/anomalies?open=1&limit=1", "operator")
    (read,) = first["anomalies"]
    status, _ = await t.call(
        "POST",
        f"/api/anomalies/{read['id']}/resolve",
        "head",
        json={"decision": "accepted", "comment": "vu"},
    )
    assert status == 201
    rest = await t.get(f"/api/anomalies?open=1&after={read['id']}", "operator")
    assert [a["id"] for a in rest["anomalies"]] == [a["id"] for a in every[1:]]
    status, body = await t.call("GET", "/api/anomalies?after=an-0000000000000000", "operator")
    assert_error_shape(status, body, 400)
    assert body["errors"] == [{"field": "after", "message": "unknown anomaly"}]


async def test_an_anomaly_is_resolved_by_a_releaser_or_a_head_only(trace: Trace) -> None:
    t = trace
    code = t.instance(t.kind())
    await t.receive_wash_pack([code])
    status, _ = await t.post_event(
        type="steri.loaded", machine="AUTO-5", program="NORMAL 134°", sets=[code]
    )
    assert status == 201
    (found,) = await anomalies(t, "?open=1")
    path = f"/api/anomalies/{found['id']}/resolve"
    before = t.count
    for role in ("operator", "admin", "integration"):
        status, body = await t.call("POST", path, role, json={"decision": "accepted"})
        assert_error_shape(status, body, 403)
    status, body = await t.post_event(type="anomaly.resolved", anomaly=found["id"], decision="ok")
    assert_error_shape(status, body, 403)
    status, body = await t.call("POST", path, "head", json={"comment": "no decision"})
    assert_error_shape(status, body, 422)
    assert [(e["field"], e["message"]) for e in body["errors"]] == [("decision", "is required")]
    status, body = await t.call("POST", path, "head", json=["accepted"])
    assert_error_shape(status, body, 422)
    status, body = await t.call(
        "POST", "/api/anomalies/an-0000000000000000/resolve", "head", json={"decision": "accepted"}
    )
    assert_error_shape(status, body, 422)
    assert "no anomaly" in body["error"]
    assert t.count == before
    assert (await anomalies(t))[0]["status"] == "open"

    status, body = await t.call(
        "POST", path, "head", json={"decision": "accepted", "comment": "test BD fait à 7h, oublié"}
    )
    assert status == 201, body
    assert t.count == before + 1
    (resolved,) = await anomalies(t)
    assert resolved["id"] == found["id"]
    assert resolved["status"] == "resolved"
    assert resolved["resolution"]["decision"] == "accepted"
    assert resolved["resolution"]["user"] == "t-head"
    assert resolved["resolution"]["comment"] == "test BD fait à 7h, oublié"
    assert resolved["resolution"]["event"] == body["id"]
    assert await anomalies(t, "?open=1") == []
    event = t.node.get_event(body["id"])
    assert event is not None
    assert (event["type"], event["anomaly"]) == ("anomaly.resolved", found["id"])
    # one decision: another is refused while it stands, and nothing is recorded
    first = body["id"]
    status, body = await t.call("POST", path, "releaser", json={"decision": "load recalled"})
    assert_error_shape(status, body, 422)
    assert f"void that decision ({first})" in body["error"]
    assert t.count == before + 1
    assert (await anomalies(t))[0]["resolution"]["comment"] == "test BD fait à 7h, oublié"
    # voided (by someone who may decide), the anomaly is open again; a releaser decides
    status, body = await t.post_event(
        "releaser", type="event.voided", target=first, reason="erreur"
    )
    assert status == 201, body
    assert (await anomalies(t))[0]["status"] == "open"
    status, body = await t.call("POST", path, "releaser", json={"decision": "load recalled"})
    assert status == 201, body
    assert (await anomalies(t))[0]["resolution"]["user"] == "t-releaser"


# -- readiness -----------------------------------------------------------------------------


async def test_readiness_of_a_planned_day_per_operation_and_per_room(trace: Trace) -> None:
    t = trace
    before = await t.get(f"/api/readiness?date={PLANNED}", "head")
    ops = before["operations"]
    planned = sorted(t.ref.or_planning[PLANNED], key=lambda r: (r["start"], r["room"]))
    assert [(o["room"], o["start"], o["patient_code"]) for o in ops] == [
        (r["room"], r["start"], r["patient_code"]) for r in planned
    ]
    assert before["date"] == PLANNED
    seen = await t.get(f"/api/readiness?date={PLANNED}", "operator")  # without patient codes
    assert [o["start"] for o in seen["operations"]] == [o["start"] for o in ops]
    assert not any("patient_code" in o for o in seen["operations"])
    assert before["reference"] == t.ref.export_id
    assert {o["status"] for o in ops} <= {"short", "no_profile"}  # nothing is sterile yet

    # make the first operation's sets sterile: it is ok, and takes them from the others
    first = ops[0]
    assert first["status"] == "short"
    codes = [t.instance(need["type_code"], n) for need in first["sets"] for n in range(need["qty"])]
    await t.make_sterile(codes)
    after = await t.get(f"/api/readiness?date={PLANNED}", "head")
    ops = after["operations"]
    assert ops[0]["status"] == "ok"
    assert sorted(c for need in ops[0]["sets"] for c in need["assigned"]) == sorted(codes)
    assert all(need["missing"] == 0 for need in ops[0]["sets"])
    taken = {c for op in ops[1:] for need in op["sets"] for c in need["assigned"]}
    assert not taken & set(codes)  # each set goes to one operation only
    for room in after["rooms"]:
        mine = [o for o in ops if o["room"] == room["room"]]
        assert room["total"] == len(mine)
        for status in ("ok", "short", "no_profile"):
            assert room[status] == sum(o["status"] == status for o in mine)
    assert [r["room"] for r in after["rooms"]] == sorted({o["room"] for o in ops})
    assert after["summary"]["total"] == len(ops)
    assert after["summary"]["ok"] == sum(o["status"] == "ok" for o in ops) >= 1
    assert "procedures" in after["endoscopy"]
    # a set back in the dirty zone is no longer available
    await t.record("set.received", set=codes[0])
    again = await t.get(f"/api/readiness?date={PLANNED}", "head")
    assert again["operations"][0]["status"] == "short"


async def test_an_endoscope_scanned_as_model_serial_is_recorded_under_its_serial(
    trace: Trace,
) -> None:
    t = trace
    serial, row = next(iter(t.ref.endoscopes.items()))
    scanned = f"{row['model']}-{serial}"
    reprocessed = await t.record(
        "endo.aer_cycle", endoscope=scanned, machine="LD-1", cycle_no="77", result="pass"
    )
    stored = t.node.get_event(reprocessed["id"])
    assert stored is not None
    assert stored["endoscope"] == serial  # one history, whichever label was scanned
    leak = await t.record("endo.leak_test", endoscope=serial, result="pass")
    state = t.node.trace.fold.endoscope(serial)
    assert state.events == (reprocessed["id"], leak["id"])
    assert t.node.trace.fold.endoscope(scanned) == state  # either code names it
    unknown = await t.record("endo.leak_test", endoscope="XX-9999999", result="pass")
    kept = t.node.get_event(unknown["id"])
    assert kept is not None
    assert kept["endoscope"] == "XX-9999999"  # not in the reference: kept as scanned


async def test_recall_by_endoscope_and_by_its_washer_disinfector(trace: Trace) -> None:
    t = trace
    serial, row = next(iter(t.ref.endoscopes.items()))
    scanned = f"{row['model']}-{serial}"
    await t.record("endo.aer_cycle", endoscope=serial, machine="LD-1", cycle_no="5", result="pass")
    await t.record("endo.used", endoscope=scanned, patient="000501492", room="Endo 1")
    for path in (f"/api/recall?endoscope={q(scanned)}", f"/api/recall?endoscope={serial}"):
        found = await t.get(path, "releaser")
        assert found["endoscope"] == serial  # either code names it
        assert [(u["patient"], u["reprocessing"]["cycle_no"]) for u in found["uses"]] == [
            ("000501492", "5")
        ]
    by_machine = await t.get("/api/recall?machine=LD-1", "head")
    assert [u["patient"] for u in by_machine["endoscope_uses"]] == ["000501492"]
    assert by_machine["patients"] == ["000501492"]
    seen = await t.get(f"/api/recall?endoscope={serial}", "operator")
    assert "000501492" not in json.dumps(seen)  # patient codes: releaser, head, admin only
    status, body = await t.call("GET", f"/api/recall?endoscope={serial}&set=X", "head")
    assert_error_shape(status, body, 400)


async def test_readiness_defaults_to_today_and_checks_its_date(trace: Trace) -> None:
    answer = await trace.get("/api/readiness", "operator")
    assert answer["date"] == TODAY  # a Saturday: nothing planned
    assert answer["operations"] == []
    for bad in ("30-11-2026", "2026-02-30", "tomorrow"):
        status, body = await trace.call("GET", f"/api/readiness?date={bad}")
        assert_error_shape(status, body, 400)
        assert body["errors"][0]["field"] == "date"


async def test_readiness_without_reference_data_is_409(
    tmp_path: Path, aiohttp_client: AClient
) -> None:
    t = await start(new_data_dir(tmp_path), aiohttp_client, StepClock(step=1000))
    try:
        status, body = await t.call("GET", f"/api/readiness?date={PLANNED}")
        assert_error_shape(status, body, 409)
        assert "import" in body["error"]
    finally:
        await t.client.close()
        await t.node.async_close()


# -- the feed --------------------------------------------------------------------------------


async def some_events(t: Trace) -> list[str]:
    """A cycle of one set and two notes (one with accents and a line break); their ids."""
    await t.record("note", text="Panne du laveur LAV-2.\nRetour prévu 14h, équipe stérile.")
    await t.make_sterile([t.instance(t.kind())])
    await t.record("note", text="Fin de journée")
    return [e["id"] for e in t.node.iter_events()]


async def test_the_feed_is_every_event_as_canonical_lines_in_clock_order(trace: Trace) -> None:
    t = trace
    ids = await some_events(t)
    data, headers = await t.feed()
    events = list(t.node.iter_events())
    assert data == cm.feed_bytes(events)
    assert data == b"".join(cm.feed_line(e) for e in events)
    lines = data.split(b"\n")
    assert lines.pop() == b""
    assert [json.loads(line)["id"] for line in lines] == ids == sorted(ids)
    for line, event in zip(lines, events, strict=True):
        assert json.loads(line) == event
        assert line == json.dumps(
            event, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    assert "prévu".encode() in data
    assert headers["Sterimesh-Count"] == str(len(ids))
    assert "Sterimesh-Next-After" not in headers
    # people with the read permission see it too; nobody without a token
    same, _ = await t.feed(role="head")
    assert same == data
    resp = await t.client.get("/api/feed")
    assert_error_shape(resp.status, await resp.json(), 401)


async def test_the_feed_pages_with_after_and_limit(trace: Trace) -> None:
    t = trace
    ids = await some_events(t)
    whole, _ = await t.feed()
    pages: list[bytes] = []
    after = ""
    while True:
        data, headers = await t.feed(f"?limit=4{after}")
        got = [json.loads(line)["id"] for line in data.splitlines()]
        assert headers["Sterimesh-Count"] == str(len(got))
        pages.append(data)
        if "Sterimesh-Next-After" not in headers:
            assert len(got) < 4
            break
        assert len(got) == 4
        assert headers["Sterimesh-Next-After"] == got[-1]
        after = f"&after={got[-1]}"
    assert b"".join(pages) == whole
    assert len(pages) == len(ids) // 4 + 1
    data, _ = await t.feed(f"?after={ids[-1]}")
    assert data == b""
    data, headers = await t.feed(f"?after={ids[2]}&limit=1")
    assert [json.loads(data)["id"]] == [ids[3]]
    assert headers["Sterimesh-Next-After"] == ids[3]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?after=yesterday", "after"),
        ("?after=1795869091234-00000", "after"),
        ("?limit=0", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=abc", "limit"),
        ("?limit=10001", "limit"),
        ("?limit=1.5", "limit"),
    ],
)
async def test_bad_feed_parameters_are_400(trace: Trace, query: str, field: str) -> None:
    status, body = await trace.call("GET", f"/api/feed{query}", "integration")
    assert_error_shape(status, body, 400)
    assert [e["field"] for e in body["errors"]] == [field]


async def test_an_up_to_whose_ack_could_not_be_stored_can_be_sent_again(
    trace: Trace, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = trace
    ids = await some_events(t)
    await t.feed()
    real = t.node.async_ack

    async def storage_failed(*args: Any, **kwargs: Any) -> int:
        raise NodeFailedError("the store failed")

    monkeypatch.setattr(t.node, "async_ack", storage_failed)
    status, body = await t.call("POST", "/api/feed/ack", "integration", json={"up_to": ids[3]})
    assert status >= 500, body
    monkeypatch.setattr(t.node, "async_ack", real)
    status, body = await t.call("POST", "/api/feed/ack", "integration", json={"up_to": ids[3]})
    assert (status, body) == (200, {"acked": 4, "total_acked": 4})
    status, body = await t.call("POST", "/api/feed/ack", "integration", json={"ids": ids[4:]})
    assert status == 200, body
    assert all(not handed for handed in t.node.index.fed.values())  # nothing left to hold


async def test_acknowledged_events_are_left_out_of_the_unacked_feed_even_after_a_restart(
    tmp_path: Path, aiohttp_client: AClient, bundle: Bundle
) -> None:
    data = new_data_dir(tmp_path)
    clock = StepClock(step=1000)
    t = await start(data, aiohttp_client, clock, bundle)
    try:
        ids = await some_events(t)
        whole, _ = await t.feed()
        status, body = await t.call("POST", "/api/feed/ack", "integration", json={"up_to": ids[3]})
        assert status == 200, body
        assert body == {"acked": 4, "total_acked": 4}
        unacked, _ = await t.feed("?unacked=1")
        assert [json.loads(x)["id"] for x in unacked.splitlines()] == ids[4:]
        status, body = await t.call(
            "POST", "/api/feed/ack", "integration", json={"ids": [ids[6], ids[2]]}
        )
        assert body == {"acked": 1, "total_acked": 5}  # ids[2] was acknowledged already
        status, body = await t.call("POST", "/api/feed/ack", "integration", json={"up_to": ids[3]})
        assert body == {"acked": 0, "total_acked": 5}
        expected = [ids[4], ids[5], *ids[7:]]
        unacked, _ = await t.feed("?unacked=1")
        assert [json.loads(x)["id"] for x in unacked.splitlines()] == expected
        data_page, headers = await t.feed("?unacked=1&limit=2")
        assert [json.loads(x)["id"] for x in data_page.splitlines()] == expected[:2]
        data_page, _ = await t.feed(f"?unacked=1&limit=2&after={headers['Sterimesh-Next-After']}")
        assert [json.loads(x)["id"] for x in data_page.splitlines()] == expected[2:4]
        # the whole feed still holds every event: acknowledging hides nothing
        assert (await t.feed())[0] == whole
        # refusals leave the acks as they were
        before = t.count
        for role, body_in, code in [
            ("operator", {"up_to": ids[-1]}, 403),
            ("head", {"up_to": ids[-1]}, 403),
            ("integration", {"up_to": "last"}, 422),
            ("integration", {"ids": ["1795869091234-00000-Z"]}, 422),
            ("integration", {"ids": "all"}, 422),
            ("integration", [ids[-1]], 422),
        ]:
            status, answer = await t.call("POST", "/api/feed/ack", role, json=body_in)
            assert_error_shape(status, answer, code)
        assert t.count == before
        assert len(t.node.trace.acked) == 5
        acks = {
            key
            for name, doc in t.node.docs.items()
            if name.startswith(cm.EVENTS_PREFIX)
            for key in cm.acks_map(doc).keys()  # noqa: SIM118 (pycrdt Map)
        }
        assert acks == {f"{i}/A" for i in [*ids[:4], ids[6]]}
    finally:
        await t.client.close()
        await t.node.async_close()

    # another process opens the same store: the platform resumes where it stopped
    t = await start(data, aiohttp_client, clock)
    try:
        unacked, _ = await t.feed("?unacked=1")
        assert [json.loads(x)["id"] for x in unacked.splitlines()] == expected
        assert (await t.feed())[0] == whole
    finally:
        await t.client.close()
        await t.node.async_close()


async def test_an_id_acknowledged_twice_in_one_request_counts_once(trace: Trace) -> None:
    await trace.record("note", text="une")
    (first,) = [e["id"] for e in trace.node.iter_events()]
    status, body = await trace.call(
        "POST", "/api/feed/ack", "integration", json={"ids": [first, first]}
    )
    assert status == 200
    assert body == {"acked": 1, "total_acked": 1}


# -- two replicas fed in different orders ------------------------------------------------------


async def test_two_replicas_fed_in_different_orders_give_byte_identical_feeds(
    tmp_path: Path, aiohttp_client: AClient, bundle: Bundle
) -> None:
    """Nodes A and B record interleaved and exchange their changes in different orders."""
    # B starts as a copy of A (same cluster, same reference) with its own short code
    data_a = new_data_dir(tmp_path, "a")
    node = await open_node(data_a)
    await node.async_import(bundle)
    await node.async_close()
    data_b = copy_as(data_a, tmp_path / "b", "B", "Poste stérile")
    a = await start(data_a, aiohttp_client, StepClock(BASE_MS, 1000))
    b = await start(data_b, aiohttp_client, StepClock(BASE_MS + 400, 1000))
    outbox: dict[str, list[tuple[str, bytes]]] = {"A": [], "B": []}
    for t in (a, b):

        def keep(name: str, update: bytes, origin: str | None, code: str = t.node.code) -> None:
            if origin is None and name.startswith(cm.EVENTS_PREFIX):
                outbox[code].append((name, update))

        t.node.add_listener(keep)

    async def deliver(target: Trace, updates: list[tuple[str, bytes]]) -> None:
        for name, update in updates:
            await target.node.async_store_remote(name, update, "peer")

    try:
        set_a, set_b = a.instance(a.kind()), b.instance(b.kind(), 1)
        # morning: both record, B hears of A's first changes, newest first
        await a.receive_wash_pack([set_a])
        await b.receive_wash_pack([set_b], washer="LAV-2")
        await b.record("note", text="Laveur LAV-1 lent ce matin")
        await deliver(b, outbox["A"][::-1])
        sent_a = len(outbox["A"])
        load_a = await a.sterilize([set_a], "AUTO-1")
        load_b = await b.sterilize([set_b], "AUTO-2")
        # past midnight UTC: a second events document on both
        for t in (a, b):
            t.clock.now += 14 * 3_600_000
        await a.record("set.dispatched", set=set_a, to="Bloc J")
        await b.record("set.used", set=set_b, patient="000501492")
        await a.record("note", text="Relève de nuit : RAS")
        # the platform reads A's feed; B's events (older ids among them) reach A before the
        # platform acknowledges up to the last id it read: those it never read stay unacked
        taken, _ = await a.feed()
        up_to = json.loads(taken.splitlines()[-1])["id"]
        rest_b = list(outbox["B"])
        random.Random(11).shuffle(rest_b)  # Yjs holds what arrives before what it builds on
        await deliver(a, rest_b)
        assert any(e["node"] == "B" and e["id"] < up_to for e in a.node.iter_events())
        # another reader (a second token, of the same name: a token being replaced) reads it
        # all meanwhile: its read, not the platform's, so the platform's up_to still leaves
        # out what it never read
        other = await a.node.async_create_token("t-integration", "integration", "test")
        resp = await a.client.get("/api/feed", headers={"Authorization": f"Bearer {other}"})
        assert resp.status == 200
        status, _ = await a.call("POST", "/api/feed/ack", "integration", json={"up_to": up_to})
        assert status == 200
        rest_a = outbox["A"][sent_a:]  # the acknowledgement replicates too
        random.Random(7).shuffle(rest_a)
        await deliver(b, rest_a)

        feed_a, _ = await a.feed()
        feed_b, _ = await b.feed()
        assert feed_a == feed_b
        assert feed_a == cm.feed_bytes(list(a.node.iter_events()))
        nodes = {json.loads(line)["node"] for line in feed_a.splitlines()}
        assert nodes == {"A", "B"}
        assert len(a.node.index.days()) == 2
        assert a.count == b.count == len(feed_a.splitlines())
        unacked_a, _ = await a.feed("?unacked=1")
        unacked_b, _ = await b.feed("?unacked=1")
        assert unacked_a == unacked_b
        left = {json.loads(line)["id"] for line in unacked_a.splitlines()}
        assert left == {
            e["id"] for e in a.node.iter_events() if e["id"] > up_to or e["node"] == "B"
        }
        # paged on one, whole on the other: the same bytes again
        pages, after = b"", ""
        while True:
            page, headers = await a.feed(f"?limit=5{after}")
            pages += page
            if "Sterimesh-Next-After" not in headers:
                break
            after = f"&after={headers['Sterimesh-Next-After']}"
        assert pages == feed_b
        # and the same views: loads, sets, anomalies
        for load in (load_a, load_b):
            assert await a.get(f"/api/loads/{load}") == await b.get(f"/api/loads/{load}")
        for code in (set_a, set_b):
            view_a, view_b = (
                await a.get(f"/api/sets/{q(code)}"),
                await b.get(f"/api/sets/{q(code)}"),
            )
            assert view_a == view_b
        assert await a.get("/api/anomalies") == await b.get("/api/anomalies")
        assert (await a.get(f"/api/recall?lot={load_b}"))["patients"] == ["000501492"]
        # a third node that gets each whole document at once, the latest day first
        c = await start(new_data_dir(tmp_path, "c"), aiohttp_client, StepClock(BASE_MS, 1000))
        try:
            for name in sorted(a.node.docs, reverse=True):
                if name.startswith(cm.EVENTS_PREFIX):
                    await c.node.async_store_remote(name, b.node.docs[name].get_update(), "peer")
            assert (await c.feed())[0] == feed_a
            assert (await c.feed("?unacked=1"))[0] == unacked_a
            # a fourth takes them as sync hands them over: checked, then stored with the
            # entries the check read from the update's bytes (compiled), which reach the
            # index and views while pycrdt's observers are paused: the same as the third
            d = await start(new_data_dir(tmp_path, "d"), aiohttp_client, StepClock(BASE_MS, 1000))
            try:
                checker = sync.UpdateChecker()
                for name in sorted(a.node.docs, reverse=True):
                    if name.startswith(cm.EVENTS_PREFIX):
                        update = b.node.docs[name].get_update()
                        checked = checker.check_read(d.node.docs.get(name), name, update)
                        assert checked is not None
                        assert (checked.entries is not None) == cm.reads_bytes()
                        await d.node.async_store_remote(name, checked.change, "peer", checked)
                assert (await d.feed())[0] == feed_a
                assert (await d.feed("?unacked=1"))[0] == unacked_a
                assert d.count == c.count
                assert await d.get("/api/anomalies") == await c.get("/api/anomalies")
                for load in (load_a, load_b):
                    assert await d.get(f"/api/loads/{load}") == await c.get(f"/api/loads/{load}")
                for code in (set_a, set_b):
                    assert await d.get(f"/api/sets/{q(code)}") == await c.get(
                        f"/api/sets/{q(code)}"
                    )
                # and what comes next still reaches the views through the observers
                await d.record("note", text="Relève du matin")
                assert d.count == c.count + 1
            finally:
                await d.client.close()
                await d.node.async_close()
        finally:
            await c.client.close()
            await c.node.async_close()
    finally:
        for t in (a, b):
            await t.client.close()
            await t.node.async_close()


async def test_a_voided_label_or_one_of_a_load_no_longer_safe_is_not_printed(
    trace: Trace,
) -> None:
    t = trace
    codes = [t.instance(t.kind(0), 0), t.instance(t.kind(1), 0)]
    await t.receive_wash_pack(codes)
    load = await t.sterilize(codes, release=False)
    release = await t.record("load.released", "releaser", load=load, decision="released")
    labels = []
    for code in codes:
        status, label = await t.call("POST", "/api/labels", json={"set": code, "load": load})
        assert status == 201, label
        labels.append(label)
    for label in labels:
        resp = await t.client.get(label["pdf"], headers=t.headers("operator"))
        assert resp.status == 200
    # a label printed on the wrong set is voided: it is no label any more
    await t.record("event.voided", "operator", target=labels[0]["event"], reason="mauvais set")
    status, body = await t.call("GET", labels[0]["pdf"])
    assert_error_shape(status, body, 404)
    # the release is withdrawn: no label of that load is printed again
    await t.record("event.voided", "releaser", target=release["id"], reason="libérée trop tôt")
    status, body = await t.call("GET", labels[1]["zpl"])
    assert_error_shape(status, body, 422)
    assert "not released" in body["error"]


async def test_an_admin_sets_a_shelf_life_by_packaging_and_labels_follow_it(
    trace: Trace,
) -> None:
    t = trace
    views = {"shelf_life_by_packaging": {"double sachet": 7}}
    status, body = await t.call("PUT", "/api/settings/views", "operator", json=views)
    assert_error_shape(status, body, 403)
    for bad in (
        {"shelf_life_by_packaging": {"double sachet": 0}},
        {"shelf_life_by_packaging": {"double sachet": "7"}},
        {"shelf_life": {}},
        ["not", "an", "object"],
    ):
        status, body = await t.call("PUT", "/api/settings/views", "admin", json=bad)
        assert_error_shape(status, body, 422)
    status, body = await t.call("PUT", "/api/settings/site", "admin", json={"timezone": "Mars"})
    assert_error_shape(status, body, 422)
    status, body = await t.call("PUT", "/api/settings/nothing", "admin", json={})
    assert_error_shape(status, body, 422)
    assert (await t.get("/api/settings", "admin"))["views"] == {}  # nothing of it kept
    status, body = await t.call("PUT", "/api/settings/views", "admin", json=views)
    assert status == 200, body
    assert (await t.get("/api/settings", "admin"))["views"] == views

    code = t.instance(t.kind())
    await t.record("set.received", set=code, **{"from": "Bloc J Salle 1"})
    await t.record("wash.loaded", machine="LAV-1", program="INSTRU 93°C 3MIN NORMAL", sets=[code])
    await t.record("wash.cycle", machine="LAV-1", cycle_no=t.cycle_no(), result="pass")
    await t.record("set.inspected", set=code, result="ok", packaging="double sachet")
    load = await t.sterilize([code])
    status, label = await t.call("POST", "/api/labels", json={"set": code, "load": load})
    assert status == 201, label
    assert label["expires_on"] == (date.fromisoformat(TODAY) + timedelta(days=7)).isoformat()
