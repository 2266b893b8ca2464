from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc

import crdt_model as cm
from crdt_model import Timestamp


def event(n: int, node: str = "A") -> dict[str, Any]:
    ts = Timestamp(1_795_869_091_234 + n, 0)
    return {
        "type": "note",
        "text": f"note {n}",
        "id": cm.make_event_id(ts, node),
        "hlc": str(ts),
        "at": "2026-11-28T14:11:31.234+01:00",
        "node": node,
        "user": "u",
        "zone": "office",
    }


def test_event_lands_in_the_document_of_its_utc_day() -> None:
    assert cm.events_doc_name(Timestamp(0, 0)) == "events/1970-01-01"
    # 23:30 in Paris on the 28th is 22:30 UTC: still the 28th
    assert cm.events_doc_name(Timestamp(1_795_901_400_000, 0)) == "events/2026-11-28"


def test_an_event_id_is_written_once() -> None:
    doc: Doc[Any] = Doc()
    cm.add_event(doc, event(1))
    with pytest.raises(cm.DocumentError):
        cm.add_event(doc, event(1))
    assert dict(cm.iter_events(doc)) == {event(1)["id"]: event(1)}


def test_reference_round_trip_in_chunks() -> None:
    doc: Doc[Any] = Doc()
    rows = [{"udi": f"01{i:014d}21S{i}", "n": i} for i in range(cm._docs.REF_CHUNK_ROWS * 2 + 7)]
    manifest = {"export_id": "X1", "exported_at": "2026-11-27T22:00:00+01:00"}
    cm.write_reference(doc, manifest, {"instruments": rows, "endoscopes": []})
    replica: Doc[Any] = Doc()
    replica.apply_update(doc.get_update())
    assert cm.read_manifest(replica) == manifest
    assert cm.read_table(replica, "instruments") == rows
    assert cm.read_table(replica, "endoscopes") == []
    with pytest.raises(cm.DocumentError):
        cm.write_reference(replica, manifest, {})


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("cluster", True),
        ("events/2026-11-28", True),
        ("ref/SAMPLE-1", True),
        ("events/today", False),
        ("ref/../x", False),
        ("other", False),
    ],
)
def test_document_names(name: str, ok: bool) -> None:
    assert cm.is_doc_name(name) is ok
