"""The replicated documents: names, layout and the add-only rule for events."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from pycrdt import Doc, Map

from ._codec import CodecError, decode, decode_map, encode
from ._hlc import Timestamp

EVENTS_PREFIX = "events/"
REF_PREFIX = "ref/"
CLUSTER_DOC = "cluster"
REF_CHUNK_ROWS = 2000
"""Rows of a reference table per stored value, to keep each value small."""

CLUSTER_MAPS = ("members", "users", "tokens", "settings", "retired", "invites")

_DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_EXPORT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


class DocumentError(ValueError):
    """A document name or content that breaks the layout."""


def events_doc_name(ts: Timestamp) -> str:
    """The events document holding an event: its clock's UTC day."""
    day = datetime.fromtimestamp(ts.physical / 1000, UTC).date().isoformat()
    return EVENTS_PREFIX + day


def events_day_ms(name: str) -> tuple[int, int]:
    """The clocks (milliseconds) of an events document's day: [first, end); empty when the
    name is of no events document or no real day (no event belongs to it)."""
    text = name.removeprefix(EVENTS_PREFIX)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return 0, 0
    if text == name or day.isoformat() != text:
        return 0, 0
    first = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
    return first, first + 86_400_000


def ref_doc_name(export_id: str) -> str:
    """The document of one imported reference export."""
    if not _EXPORT_ID_RE.match(export_id):
        raise DocumentError(f"not a usable export id: {export_id[:40]!r}")
    return REF_PREFIX + export_id


def is_doc_name(name: str) -> bool:
    """True for a name of the layout: events/<day>, ref/<export_id> or cluster."""
    if name == CLUSTER_DOC:
        return True
    if name.startswith(EVENTS_PREFIX):
        return bool(_DAY_RE.match(name[len(EVENTS_PREFIX) :]))
    if name.startswith(REF_PREFIX):
        return bool(_EXPORT_ID_RE.match(name[len(REF_PREFIX) :]))
    return False


def events_map(doc: Doc[Any]) -> Map[Any]:
    """The add-only map event id -> CBOR event of an events document."""
    events: Map[Any] = doc.get("events", type=Map)
    return events


def acks_map(doc: Doc[Any]) -> Map[Any]:
    """The map event id -> CBOR platform acknowledgement of an events document."""
    acks: Map[Any] = doc.get("acks", type=Map)
    return acks


def add_event(doc: Doc[Any], event: dict[str, Any]) -> None:
    """Store a validated event under its id; an id is written once only."""
    events = events_map(doc)
    if event["id"] in events:
        raise DocumentError(f"event {event['id']} exists already")
    events[event["id"]] = encode(event)


def iter_events(doc: Doc[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (id, event) of an events document, in no particular order."""
    for key, value in events_map(doc).items():
        yield key, decode_map(value)


def write_reference(doc: Doc[Any], manifest: dict[str, Any], tables: dict[str, list[Any]]) -> None:
    """Fill an empty reference document: the manifest and each table in chunks."""
    meta = doc.get("manifest", type=Map)
    rows = doc.get("tables", type=Map)
    if len(meta) or len(rows):
        raise DocumentError("reference document is not empty")
    with doc.transaction():
        meta["manifest"] = encode(manifest)
        meta["tables"] = encode({name: len(table) for name, table in tables.items()})
        for name, table in tables.items():
            for start in range(0, max(len(table), 1), REF_CHUNK_ROWS):
                rows[f"{name}/{start // REF_CHUNK_ROWS:05d}"] = encode(
                    table[start : start + REF_CHUNK_ROWS]
                )


def read_manifest(doc: Doc[Any]) -> dict[str, Any] | None:
    """The manifest of a reference document; None while it has not arrived whole."""
    meta = doc.get("manifest", type=Map)
    if "manifest" not in meta:
        return None
    return decode_map(meta["manifest"])


def table_names(doc: Doc[Any]) -> list[str]:
    """The tables a reference document holds."""
    meta = doc.get("manifest", type=Map)
    return sorted(decode_map(meta["tables"])) if "tables" in meta else []


def read_table(doc: Doc[Any], name: str) -> list[Any]:
    """All rows of one reference table, in their export order."""
    meta = doc.get("manifest", type=Map)
    counts = decode_map(meta["tables"]) if "tables" in meta else {}
    total = counts.get(name, 0)
    rows = doc.get("tables", type=Map)
    out: list[Any] = []
    for chunk in range(0, max(total, 1), REF_CHUNK_ROWS):
        key = f"{name}/{chunk // REF_CHUNK_ROWS:05d}"
        if key not in rows:
            raise DocumentError(f"reference table {name} is incomplete")
        part = decode(rows[key])
        if not isinstance(part, list):
            raise DocumentError(f"reference table {name} is malformed")
        out.extend(part)
    return out


def cluster_map(doc: Doc[Any], name: str) -> Map[Any]:
    """One of the cluster document's maps (members, users, tokens, settings, retired)."""
    if name not in CLUSTER_MAPS:
        raise DocumentError(f"no cluster map {name!r}")
    found: Map[Any] = doc.get(name, type=Map)
    return found


def cluster_get(doc: Doc[Any], name: str, key: str) -> dict[str, Any] | None:
    """One entry of a cluster map, decoded; None when absent (or not an encoded map)."""
    return _entry(cluster_map(doc, name).get(key))


def cluster_put(doc: Doc[Any], name: str, key: str, value: dict[str, Any]) -> None:
    """Set one entry of a cluster map."""
    cluster_map(doc, name)[key] = encode(value)


def cluster_items(doc: Doc[Any], name: str) -> dict[str, dict[str, Any]]:
    """Every entry of a cluster map, decoded (an entry that is not an encoded map is skipped)."""
    found = ((key, _entry(value)) for key, value in cluster_map(doc, name).items())
    return {key: entry for key, entry in found if entry is not None}


def _entry(value: Any) -> dict[str, Any] | None:
    """A cluster entry decoded. Sync refuses any other shape; a reader never fails on one."""
    if not isinstance(value, bytes | bytearray):
        return None
    try:
        return decode_map(value)
    except CodecError:
        return None
