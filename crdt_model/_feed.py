"""The reconciliation feed: canonical JSON lines, CSV per event type, JSON Schemas."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._events import (
    _CODE_RE,
    _COMMON,
    _ID_RE,
    _NODE_CODE_RE,
    _NODE_SET,
    _PATIENT_RE,
    EVENT_TYPES,
    NODE_FIELDS,
    Check,
    check_params,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SCALAR = {"type": ["string", "number", "boolean", "null"]}


_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
"""Characters that many readers (Python's splitlines, JavaScript before ES2019) take for a
line end: escaped, so that one event is one line whatever reads the feed."""


def feed_line(event: Mapping[str, Any]) -> bytes:
    """One event as a feed line: canonical JSON (sorted keys, compact, UTF-8) and a newline."""
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        text = text.translate(_LINE_BREAKS)
    return text.encode("utf-8") + b"\n"


def feed_order(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Events in feed order: (hlc, id), which is the order of their ids."""
    return sorted(events, key=lambda e: str(e["id"]))


def feed_bytes(events: Iterable[Mapping[str, Any]]) -> bytes:
    """The whole feed of a set of events: byte-identical for the same events on every node."""
    return b"".join(feed_line(e) for e in feed_order(events))


def csv_columns(event_type: str) -> tuple[str, ...]:
    """The stable CSV column order of an event type: node fields, zone, station, then its own."""
    kind = EVENT_TYPES[event_type]
    return (*NODE_FIELDS, *_COMMON, *kind.required, *kind.optional)


def feed_csv(events: Iterable[Mapping[str, Any]], event_type: str) -> str:
    """The events of one type as CSV (header, CRLF, in feed order); lists and maps as JSON."""
    columns = csv_columns(event_type)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for event in feed_order(e for e in events if e.get("type") == event_type):
        writer.writerow([_cell(event.get(name)) for name in columns])
    return out.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A text cell a spreadsheet would take for a formula, when it starts with one of these."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        # recorded text goes to people's spreadsheets: never as a formula (=HYPERLINK...)
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- JSON Schemas ----------------------------------------------------------------------


def event_json_schemas() -> dict[str, dict[str, Any]]:
    """A JSON Schema (draft 2020-12) per event type, as stored and fed, from EVENT_TYPES."""
    return {name: event_json_schema(name) for name in sorted(EVENT_TYPES)}


def event_json_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one stored event type."""
    kind = EVENT_TYPES[event_type]
    properties: dict[str, Any] = {"type": {"const": event_type}}
    for fields in (_NODE_SET, _COMMON, kind.required, kind.optional):
        properties.update({name: check_schema(check) for name, check in fields.items()})
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:sterimesh:event:{event_type}",
        "title": event_type,
        "type": "object",
        "properties": properties,
        "required": ["type", *NODE_FIELDS, *kind.required],
        "additionalProperties": False,
    }


def check_schema(check: Check) -> dict[str, Any]:
    """The JSON Schema of the values a field check accepts (after normalisation)."""
    name, params = check_params(check)
    made = _FACTORIES.get(name)
    if made is not None:
        return made(params)
    fixed = _NAMED.get(name)
    if fixed is None:
        raise TypeError(f"no JSON Schema for field check {name}")
    return dict(fixed)


def _ecma(regex: re.Pattern[str]) -> str:
    """A check's pattern as JSON Schema writes it (ECMA-262: `$` is the very end of the text)."""
    return (
        regex.pattern.removesuffix(r"\Z") + "$" if regex.pattern.endswith(r"\Z") else regex.pattern
    )


def _text(p: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": p["max_len"]}


def _code(p: dict[str, Any]) -> dict[str, Any]:
    return {**_text(p), "pattern": _ecma(_CODE_RE)}


def _number(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number"}
    if p["minimum"] is not None:
        out["minimum"] = p["minimum"]
    return out


def _list(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "array",
        "items": check_schema(p["item"]),
        "maxItems": p["max_items"],
    }
    if p["unique"]:
        out["uniqueItems"] = True
    return out


_FACTORIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "text": _text,
    "code": _code,
    "one_of": lambda p: {"enum": list(p["choices"])},
    "number": _number,
    "list_of": _list,
    "non_empty": lambda p: {**check_schema(p["check"]), "minItems": 1},
    "plain_map": lambda p: {
        "type": "object",
        "maxProperties": p["max_items"],
        "additionalProperties": _SCALAR,
    },
}
_NAMED: dict[str, dict[str, Any]] = {
    "cycle_number": {"type": "string", "minLength": 1, "maxLength": 32},
    "boolean": {"type": "boolean"},
    "iso_date": {"type": "string", "format": "date"},
    "iso_datetime": {"type": "string", "format": "date-time"},
    "patient_code": {"type": "string", "pattern": _ecma(_PATIENT_RE)},
    "event_id": {"type": "string", "pattern": _ecma(_ID_RE)},
    "phase": {
        "type": "object",
        "maxProperties": 16,
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1}},
        "additionalProperties": _SCALAR,
    },
    "_node_code": {"type": "string", "pattern": _ecma(_NODE_CODE_RE)},
    "_hlc": {"type": "string", "pattern": r"^[0-9]{13}-[0-9]{5}$"},
}
